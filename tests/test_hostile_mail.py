"""Hostile mail stays within bounds: a mail of endless empty parts, a
forwarding chain 40 deep and a megabyte-long Subject are each stored, with
a note to the clerk, in bounded time and storage, and never stop other mail."""

from __future__ import annotations

from pathlib import Path

import httpx

from mailintake.mail.decoding import parse_bytes
from mailintake.mail.parsed import MAX_DISPLAY_CHARS, Limits

from .conftest import ServiceThread, wait_for
from .hostile_mails import huge_subject, many_empty_parts, nested_forwards
from .mails import make_message, send


def blob_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_a_mail_of_countless_empty_parts_is_kept_with_its_headers_and_a_note(tmp_path: Path) -> None:
    # (bench/hostile.py measures the time and memory at full size.)
    parsed = parse_bytes(many_empty_parts(200_000), tmp_path)
    assert parsed.subject == "空のパートだらけ"
    assert parsed.attachments == []
    assert any("パートが多すぎる" in p and "原文" in p for p in parsed.problems)


def test_an_ordinary_multipart_mail_is_not_mistaken_for_one(tmp_path: Path) -> None:
    parsed = parse_bytes(many_empty_parts(500), tmp_path)
    assert not any("パートが多すぎる" in p for p in parsed.problems)


def test_a_deep_forwarding_chain_is_stored_about_once_not_once_per_level(tmp_path: Path) -> None:
    raw = nested_forwards(depth=40, payload_bytes=150_000)
    parsed = parse_bytes(raw, tmp_path)
    stored = blob_bytes(tmp_path)
    # Naively each of the 40 levels is stored again (about 40 × the mail).
    assert stored < 3 * len(raw), (stored, len(raw))
    assert [a.content_type for a in parsed.attachments] == ["message/rfc822"]  # the outermost, whole
    assert any("転送メール" in p for p in parsed.problems)


def test_within_the_depth_limit_the_attachment_at_the_core_is_still_listed(tmp_path: Path) -> None:
    raw = nested_forwards(depth=8, payload_bytes=150_000)
    parsed = parse_bytes(raw, tmp_path)
    assert any(a.filename == "x.bin" and a.size == 150_000 for a in parsed.attachments)
    assert blob_bytes(tmp_path) < 3 * len(raw)


def test_a_huge_subject_is_cut_for_display_and_noted(tmp_path: Path) -> None:
    parsed = parse_bytes(huge_subject(1_000_000), tmp_path)
    assert len(parsed.subject) == MAX_DISPLAY_CHARS + 1 and parsed.subject.startswith("長い件名長い件名")
    assert any("件名が長すぎる" in p for p in parsed.problems)


def test_hostile_mail_is_stored_and_ordinary_mail_keeps_flowing(service: ServiceThread, api: httpx.Client) -> None:
    for raw in (many_empty_parts(100_000), nested_forwards(40, 50_000), huge_subject(300_000)):
        send(service.smtp_port, raw)
    send(service.smtp_port, make_message(subject="普通のメール"))
    items = wait_for(lambda: (i := api.get("/api/v1/messages").json()["items"]) and len(i) == 4 and i, 60)
    assert "普通のメール" in [item["subject"] for item in items]
    listing = api.get("/api/v1/messages")
    assert len(listing.content) < 200_000  # a list page never carries a megabyte subject


def test_the_limits_follow_the_settings(tmp_path: Path) -> None:
    tight = Limits(boundary_lines=400, display_chars=300)
    assert len(parse_bytes(huge_subject(10_000), tmp_path, tight).subject) == 301
    assert any("パートが多すぎる" in p for p in parse_bytes(many_empty_parts(500), tmp_path, tight).problems)
    assert not any("パートが多すぎる" in p for p in parse_bytes(many_empty_parts(500), tmp_path).problems)
