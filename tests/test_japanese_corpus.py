"""Real Japanese mail, end to end: every sample in samples/corpus goes
through the SMTP relay and is checked through the messages API against
samples/corpus.json (expectations written from the source text)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from .conftest import ServiceThread, wait_for
from .mails import send

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
CORPUS = json.loads((SAMPLES / "corpus.json").read_text(encoding="utf-8"))


@pytest.fixture
def delivered(service: ServiceThread, api: httpx.Client) -> dict[str, dict]:
    """Every sample delivered over SMTP; its API detail by file name."""
    for entry in CORPUS:
        raw = (SAMPLES / "corpus" / entry["file"]).read_bytes()
        send(service.smtp_port, raw)
    items = wait_for(
        lambda: len(r := api.get("/api/v1/messages", params={"limit": 200}).json()["items"]) == len(CORPUS) and r,
        timeout=30,
    )
    # Subjects repeat across samples; the bytes do not.
    by_sha = {hashlib.sha256((SAMPLES / "corpus" / e["file"]).read_bytes()).hexdigest(): e["file"] for e in CORPUS}
    details = {}
    for item in items:
        detail = api.get(f"/api/v1/messages/{item['id']}").json()
        details[by_sha[detail["raw_sha256"]]] = detail
    return details


def test_the_corpus_covers_every_point_of_the_decoding_issue() -> None:
    covered = {entry["covers"].split()[0] for entry in CORPUS}
    assert covered >= {str(n) for n in range(1, 12)}


def test_every_sample_decodes_as_expected(delivered: dict[str, dict], api: httpx.Client) -> None:
    failures = []
    for entry in CORPUS:
        detail = delivered[entry["file"]]
        problems = _compare(entry, detail, api)
        failures += [f"{entry['file']}: {p}" for p in problems]
    assert failures == []


def _compare(entry: dict, detail: dict, api: httpx.Client) -> list[str]:
    problems = []
    for field, got in (
        ("subject", detail["subject"]),
        ("from_name", detail["from"]["name"]),
        ("from_address", detail["from"]["address"]),
    ):
        if got != entry[field]:
            problems.append(f"{field} {got!r} != {entry[field]!r}")
    if entry["body_contains"] not in detail["text"]:
        problems.append(f"body lacks {entry['body_contains']!r}: {detail['text'][:200]!r}")
    if "\ufffd" in detail["subject"] + detail["text"] + detail["from"]["name"]:
        problems.append("U+FFFD stored where the bytes were decodable")
    got = detail["attachments"]
    if len(got) != len(entry["attachments"]):
        problems.append(f"{len(got)} attachments, expected {len(entry['attachments'])}")
    names_by_id = {a["id"]: a["original_filename"] for a in got}
    for want, have in zip(entry["attachments"], got, strict=False):  # counts compared above
        if have["original_filename"] != want["filename"]:
            problems.append(f"attachment name {have['original_filename']!r} != {want['filename']!r}")
        if "sha256" in want:
            if (have["sha256"], have["size"]) != (want["sha256"], want["size"]):
                problems.append(f"attachment {want['filename']!r} bytes differ")
            elif hashlib.sha256(api.get(f"/api/v1/attachments/{have['id']}").content).hexdigest() != want["sha256"]:
                problems.append(f"attachment {want['filename']!r} download differs")
        if names_by_id.get(have["part_of"]) != want.get("part_of"):
            problems.append(f"attachment {want['filename']!r} part_of {names_by_id.get(have['part_of'])!r}")
    if "problem_contains" in entry and not any(entry["problem_contains"] in p for p in detail["problems"]):
        problems.append(f"no problem note with {entry['problem_contains']!r}: {detail['problems']}")
    return problems


def test_hostile_names_are_offered_safely_for_download(delivered: dict[str, dict], api: httpx.Client) -> None:
    from urllib.parse import unquote

    detail = delivered["18-hostile-filenames.eml"]
    for attachment in detail["attachments"]:
        disposition = api.get(f"/api/v1/attachments/{attachment['id']}").headers["content-disposition"]
        offered = unquote(disposition.split("filename*=UTF-8''", 1)[1])
        assert "/" not in offered and "\\" not in offered and ":" not in offered, offered
        assert not offered.endswith((".", " ")), offered
        assert offered.split(".")[0].lower() not in {"con", "nul", "prn", "aux"}, offered
        assert "\r" not in offered and "\n" not in offered and "\x00" not in offered
        assert len(offered) <= 120
