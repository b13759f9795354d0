"""Hostile mail against an ordinary mail of the same size, in the same run.

Each mail is parsed by the ingester's own function
(``decoding.parse_spooled_message``) in a fresh process, which reports its
wall time, its peak RSS (VmHWM) and the bytes it stored as attachment files:

- baseline: an ordinary mail with one attachment, about 50 MB;
- 5.8 M empty MIME parts (about 52 MB);
- a forwarding chain 40 deep around a 6.8 MB mail;
- a 35 MB folded Subject.

    python -m bench.hostile [--scale 1.0]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile_mails import huge_subject, many_empty_parts, nested_forwards  # noqa: E402

PARSE = """
import json, sys, time
from pathlib import Path
from mailintake.mail.decoding import parse_spooled_message
path, blobs = Path(sys.argv[1]), Path(sys.argv[2])
started = time.monotonic()
parsed = parse_spooled_message(path, path.stat().st_size, blobs)
seconds = time.monotonic() - started
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
stored = sum(p.stat().st_size for p in blobs.rglob("*") if p.is_file())
print(json.dumps({"seconds": seconds, "peak_rss_mib": hwm / 1024, "stored_mib": stored / 2**20,
                  "subject_chars": len(parsed.subject), "attachments": len(parsed.attachments),
                  "notes": len(parsed.problems)}))
"""


def ordinary(size: int) -> bytes:
    data = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (
        b"From: a@example.jp\r\nTo: soumu@city.example.jp\r\nSubject: ordinary\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--b\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + data
        + b"--b--\r\n"
    )


def measure(raw: bytes) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mail.eml"
        path.write_bytes(raw)
        done = subprocess.run(
            [sys.executable, "-c", PARSE, str(path), str(Path(folder) / "blobs")],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout)
    result["mail_mib"] = len(raw) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor (0.1 for a quick look)")
    args = parser.parse_args()
    mails = {
        "baseline: ordinary 50 MB": ordinary(int(50 * 2**20 * args.scale)),
        "5.8 M empty parts": many_empty_parts(int(5_800_000 * args.scale)),
        "forwarding 40 deep": nested_forwards(40, int(5 * 2**20 * args.scale)),
        "35 MB Subject": huge_subject(int(12_000_000 * args.scale)),
    }
    results = {name: measure(raw) for name, raw in mails.items()}
    base = results["baseline: ordinary 50 MB"]
    print(f"{'mail':28} {'MiB':>6} {'s':>7} {'× base':>7} {'peak RSS MiB':>13} {'stored MiB':>11}")
    for name, r in results.items():
        print(
            f"{name:28} {r['mail_mib']:6.1f} {r['seconds']:7.2f} {r['seconds'] / base['seconds']:7.2f} "
            f"{r['peak_rss_mib']:13.0f} {r['stored_mib']:11.1f}"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "hostile.json").write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
