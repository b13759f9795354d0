"""Decoding speed, memory and correctness against mail-parser alone and the
standard library's ``email`` package, in the same run.

- Throughput: messages/s parsing the Japanese corpus (samples/corpus),
  repeated, with mailintake's decoder and with ``mailparser.parse_from_bytes``
  (touching subject, from, body and attachments so both do the work).
- Correctness: how many corpus expectations (subject, sender name, a body
  phrase, attachment names) each gets right, in all and per class of
  sample (the first word of each sample's ``covers``).
- Memory: peak RSS of a fresh process that parses one 30 MB message
  (22 MiB attachment), for each parser.

    python -m bench.decode [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS_DIR = ROOT / "samples" / "corpus"
EXPECTATIONS = json.loads((ROOT / "samples" / "corpus.json").read_text(encoding="utf-8"))

MEMORY_SCRIPT = """
import sys, tempfile
from pathlib import Path

def hwm():
    # VmHWM belongs to this process image; ru_maxrss would include the
    # parent's peak from before exec.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
path = Path(sys.argv[2])
size = path.stat().st_size
if sys.argv[1] == "mailintake":
    from mailintake.mail.decoding import parse_spooled_message
else:
    import mailparser
before = hwm()
if sys.argv[1] == "mailintake":
    parsed = parse_spooled_message(path, size, Path(tempfile.mkdtemp()))
    assert parsed.attachments[0].size == 22 * 1024 * 1024
else:
    parsed = mailparser.parse_from_file(str(path))
    assert parsed.attachments
peak = hwm()
print(size, before, peak)
"""


def _large_message() -> Path:
    import os
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "a@example.jp"
    msg["To"] = "b@example.jp"
    msg["Subject"] = "大きな添付"
    msg.set_content("本文")
    msg.add_attachment(os.urandom(22 * 1024 * 1024), maintype="application", subtype="octet-stream", filename="big.bin")
    path = Path(tempfile.mkdtemp(prefix="decode-bench-")) / "big.eml"
    path.write_bytes(msg.as_bytes())
    return path


def _ours(raw: bytes, blob_root: Path) -> dict[str, Any]:
    from mailintake.mail.decoding import parse_bytes

    parsed = parse_bytes(raw, blob_root)
    return {
        "subject": parsed.subject,
        "from_name": parsed.from_name,
        "body": parsed.text_body,
        "attachments": [a.filename for a in parsed.attachments],
    }


def _mailparser(raw: bytes) -> dict[str, Any]:
    import mailparser

    parsed = mailparser.parse_from_bytes(raw)
    sender = parsed.from_[0] if parsed.from_ else ("", "")
    return {
        "subject": parsed.subject or "",
        "from_name": sender[0] or "",
        "body": parsed.text_plain[0] if parsed.text_plain else (parsed.body or ""),
        "attachments": [a.get("filename") or "" for a in parsed.attachments],
    }


def _stdlib(raw: bytes) -> dict[str, Any]:
    import email
    from email import policy

    msg = email.message_from_bytes(raw, policy=policy.default)
    sender = msg["from"]
    addresses = getattr(sender, "addresses", ()) if sender is not None else ()
    body = msg.get_body(preferencelist=("plain", "html"))
    return {
        "subject": str(msg.get("subject", "") or ""),
        "from_name": addresses[0].display_name if addresses else "",
        "body": body.get_content() if body is not None else "",
        "attachments": [p.get_filename() or "" for p in msg.walk() if p.is_attachment() or p.get_filename()],
    }


def _score(result: dict[str, Any], entry: dict[str, Any]) -> dict[str, bool]:
    wanted = [a["filename"] for a in entry["attachments"]]
    return {
        "subject": result["subject"] == entry["subject"],
        "from_name": result["from_name"] == entry["from_name"],
        "body": entry["body_contains"] in result["body"],
        "attachment_names": [n for n in result["attachments"] if n in wanted or not wanted] == wanted
        or sorted(result["attachments"]) == sorted(wanted),
    }


def correctness(parse: Any) -> dict[str, Any]:
    totals = {"subject": 0, "from_name": 0, "body": 0, "attachment_names": 0}
    all_right = 0
    by_class: dict[str, list[int]] = {}
    for entry in EXPECTATIONS:
        raw = (CORPUS_DIR / entry["file"]).read_bytes()
        try:
            score = _score(parse(raw), entry)
        except Exception:  # a crash counts as wrong on every point
            score = dict.fromkeys(totals, False)
        for key, ok in score.items():
            totals[key] += ok
        all_right += all(score.values())
        counts = by_class.setdefault(entry["covers"].split()[0], [0, 0])
        counts[0] += 1
        counts[1] += all(score.values())
    return {
        "samples": len(EXPECTATIONS),
        "all_points_right": all_right,
        **totals,
        "by_class": {name: f"{right}/{total}" for name, (total, right) in by_class.items()},
    }


def throughput(parse: Any, rounds: int) -> float:
    raws = [(CORPUS_DIR / e["file"]).read_bytes() for e in EXPECTATIONS]
    started = time.perf_counter()
    count = 0
    for _ in range(rounds):
        for raw in raws:
            try:
                parse(raw)
            except Exception:
                pass
            count += 1
    return count / (time.perf_counter() - started)


def peak_memory(which: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, which, str(path)], check=True, capture_output=True, text=True
    )
    size, before, peak = (int(v) for v in out.stdout.split())
    return {
        "message_mb": round(size / 1e6, 1),
        "rss_before_parse_mb": round(before / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "decode.json")
    args = parser.parse_args()
    blob_root = Path(tempfile.mkdtemp(prefix="decode-bench-"))

    def ours(raw: bytes) -> dict[str, Any]:
        return _ours(raw, blob_root)

    results: dict[str, Any] = {"corpus_samples": len(EXPECTATIONS), "rounds": args.rounds}
    results["correctness"] = {
        "mailintake": correctness(ours),
        "mail_parser": correctness(_mailparser),
        "stdlib_email": correctness(_stdlib),
    }
    baseline = throughput(_mailparser, args.rounds)
    standard = throughput(_stdlib, args.rounds)
    mine = throughput(ours, args.rounds)
    results["throughput_msg_per_s"] = {
        "mail_parser": round(baseline, 1),
        "stdlib_email": round(standard, 1),
        "mailintake": round(mine, 1),
        "ratio": round(mine / baseline, 3),
        "ratio_to_stdlib": round(mine / standard, 3),
    }
    large = _large_message()
    results["memory_30mb"] = {
        "mail_parser": peak_memory("mail_parser", large),
        "mailintake": peak_memory("mailintake", large),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2))
    print(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
