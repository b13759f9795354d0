"""Hostile and broken mail: no crash, no lost message, bounded time.

Mutations of the corpus are checked in-process (the decoder must never
raise); the bombs go through the real SMTP path and must be stored."""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import pytest

from mailintake.mail.decoding import parse_bytes
from mailintake.mail.parsed import MAX_DEPTH, MAX_PARTS

from .conftest import ServiceThread, wait_for
from .mails import send

CORPUS = sorted((Path(__file__).resolve().parents[1] / "samples" / "corpus").glob("*.eml"))
PER_MESSAGE_SECONDS = 10


def _mutations(raw: bytes, rng: random.Random) -> list[bytes]:
    out = [raw[: rng.randrange(1, len(raw))] for _ in range(3)]
    for _ in range(3):
        data = bytearray(raw)
        for _ in range(max(1, len(data) // 200)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        out.append(bytes(data))
    # Cut in the middle of an escape sequence or encoded word, if any.
    for marker in (b"\x1b$B", b"=?", b"base64\r\n\r\n"):
        at = raw.find(marker)
        if at > 0:
            out.append(raw[: at + len(marker) // 2 + 1])
    return out


@pytest.mark.parametrize("sample", CORPUS, ids=lambda p: p.name)
def test_mutated_samples_never_crash_the_decoder(sample: Path, tmp_path: Path) -> None:
    rng = random.Random(sample.name)
    for mutated in _mutations(sample.read_bytes(), rng):
        started = time.monotonic()
        parsed = parse_bytes(mutated, tmp_path)
        assert time.monotonic() - started < PER_MESSAGE_SECONDS
        assert isinstance(parsed.subject, str) and isinstance(parsed.text_body, str)
        for attachment in parsed.attachments:
            assert (tmp_path / attachment.sha256[:2] / attachment.sha256).stat().st_size == attachment.size


def _nested(depth: int) -> bytes:
    head = "".join(f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n' for i in range(depth))
    tail = "".join(f"--b{i}--\r\n" for i in reversed(range(depth)))
    return (
        'From: bomb@example.jp\r\nSubject: nesting\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n'
        + head
        + f"--b{depth}\r\nContent-Type: text/plain\r\n\r\ndeep\r\n--b{depth}--\r\n"
        + tail
    ).encode()


def _many_parts(count: int) -> bytes:
    parts = "".join(
        f"--p\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=f{i}.bin\r\n\r\n{i}\r\n"
        for i in range(count)
    )
    return (
        "From: bomb@example.jp\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n"
        f"--p\r\nContent-Type: text/plain\r\n\r\nmany parts\r\n{parts}--p--\r\n"
    ).encode()


def _huge_address_header() -> bytes:
    addresses = ", ".join(f'"宛先{i}" <user{i}@example.jp>' for i in range(20000))
    return f"From: a@example.jp\r\nTo: {addresses}\r\nSubject: many recipients\r\n\r\nbody\r\n".encode()


@pytest.mark.parametrize(
    ("raw", "subject", "note"),
    [
        (_nested(3000), "nesting", "入れ子が深すぎる"),
        (_nested(5000), "nesting", "パートが多すぎる"),
        (_nested(MAX_DEPTH + 20), "nesting", f"{MAX_DEPTH} 段"),
        (_many_parts(5000), "parts", f"{MAX_PARTS}"),
        (_many_parts(30000), "parts", "パートが多すぎる"),
        (_huge_address_header(), "many recipients", "To ヘッダーが長すぎる"),
    ],
    ids=["3000-levels", "5000-levels", "past-the-depth-limit", "5000-parts", "30000-parts", "huge-to-header"],
)
def test_bombs_are_stored_in_bounded_time_with_a_note(
    service: ServiceThread, api: httpx.Client, raw: bytes, subject: str, note: str
) -> None:
    started = time.monotonic()
    send(service.smtp_port, raw)
    item = wait_for(lambda: api.get("/api/v1/messages").json()["items"], timeout=60)[0]
    assert time.monotonic() - started < 60
    detail = api.get(f"/api/v1/messages/{item['id']}").json()
    assert detail["subject"] == subject
    assert any(note in p for p in detail["problems"]), detail["problems"]
    assert api.get(f"/api/v1/messages/{item['id']}/raw").content == raw
