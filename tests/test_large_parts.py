"""A mail's long base64 bodies stay in the file while it is parsed: the
result is the same as parsing the mail whole, and a 30 MB mail costs the
parser a few MB instead of about 80."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tracemalloc
from email import message_from_bytes
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailintake.blobs import FileBlobs
from mailintake.mail.decoding import parse_bytes, parse_spooled_message
from mailintake.mail.elision import ELIDE_AT, Elided

from .mails import make_message


def _spooled(tmp_path: Path, raw: bytes) -> Path:
    """As the spool keeps it: the message, then a record after it."""
    path = tmp_path / "spooled.msg"
    path.write_bytes(raw + b"\r\nspool record that is not part of the mail\r\n")
    return path


def both_ways(tmp_path: Path, raw: bytes) -> tuple[object, object]:
    from_file = parse_spooled_message(_spooled(tmp_path, raw), len(raw), FileBlobs(tmp_path / "a"))
    whole = parse_bytes(raw, tmp_path / "b")
    return from_file, whole


def big_pdf(size: int = 3 * ELIDE_AT) -> bytes:
    return b"%PDF-1.7\n" + os.urandom(size)


def forwarded_with_attachment() -> bytes:
    inner = EmailMessage()
    inner["From"] = "鈴木 <suzuki@example.co.jp>"
    inner["To"] = "kikaku@example.co.jp"
    inner["Subject"] = "転送元の資料"
    inner.set_content("元のメールです。")
    inner.add_attachment(big_pdf(), maintype="application", subtype="pdf", filename="元資料.pdf")
    outer = MIMEMultipart()
    outer["From"] = "kikaku@example.co.jp"
    outer["To"] = "soumu@city.example.jp"
    outer["Subject"] = "転送します"
    outer.attach(MIMEText("転送します。", "plain", "utf-8"))
    outer.attach(MIMEMessage(message_from_bytes(inner.as_bytes())))
    return outer.as_bytes()


def forwarded_written_out_again() -> bytes:
    """A forwarded mail under a transfer encoding that a message/rfc822
    part may not have: not kept byte for byte but written out again."""
    raw = forwarded_with_attachment()
    assert b"Content-Type: message/rfc822\n" in raw
    return raw.replace(
        b"Content-Type: message/rfc822\n", b"Content-Type: message/rfc822\nContent-Transfer-Encoding: x-odd\n"
    )


def base64_looking_text() -> bytes:
    """A text part (7bit) whose lines look like base64: read as text."""
    line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx"
    body = "\r\n".join([line] * (2 * ELIDE_AT // len(line))) + "\r\n"
    outer = MIMEMultipart()
    outer["Subject"] = "鍵の一覧"
    text = MIMEText(body, "plain", "us-ascii")
    outer.attach(text)
    outer.attach(MIMEApplication(big_pdf(), "pdf", Name="資料.pdf"))
    return outer.as_bytes()


def single_part_pdf() -> bytes:
    msg = EmailMessage()
    msg["Subject"] = "本文がPDF"
    msg.set_content(big_pdf(), maintype="application", subtype="pdf", disposition="attachment", filename="本文.pdf")
    return msg.as_bytes()


def lf_only_with_two_attachments() -> bytes:
    raw = make_message(
        subject="改行がLFだけのメール",
        attachments=[
            ("一.pdf", big_pdf(), "application/pdf"),
            ("二.bin", os.urandom(ELIDE_AT), "application/octet-stream"),
        ],
    )
    return raw.replace(b"\r\n", b"\n")


def forged_placeholder() -> bytes:
    """A mail that carries a placeholder-like line of its own."""
    forged = b"\x00elided-0123456789abcdef:0:100\r\n"
    return make_message(subject="偽の置き換え行", attachments=[("x.bin", forged * 20000, "application/octet-stream")])


@pytest.mark.parametrize(
    "make",
    [
        forwarded_with_attachment,
        forwarded_written_out_again,
        base64_looking_text,
        single_part_pdf,
        lf_only_with_two_attachments,
        forged_placeholder,
    ],
)
def test_parsing_from_the_file_gives_what_parsing_the_whole_mail_gives(make, tmp_path: Path) -> None:
    raw = make()
    from_file, whole = both_ways(tmp_path, raw)
    assert from_file == whole
    assert whole.attachments  # type: ignore[attr-defined]
    for attachment in whole.attachments:  # type: ignore[attr-defined]
        stored = (tmp_path / "a" / attachment.sha256[:2] / attachment.sha256).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == attachment.sha256 and len(stored) == attachment.size


def test_a_forwarded_mail_with_a_long_attachment_is_kept_byte_exact(tmp_path: Path) -> None:
    raw = forwarded_with_attachment()
    parsed = parse_spooled_message(_spooled(tmp_path, raw), len(raw), FileBlobs(tmp_path / "a"))
    forwarded = next(a for a in parsed.attachments if a.content_type == "message/rfc822")
    kept = (tmp_path / "a" / forwarded.sha256[:2] / forwarded.sha256).read_bytes()
    assert kept in raw and b"Subject: =?utf-8?b?" in kept
    pdf = next(a for a in parsed.attachments if a.filename == "元資料.pdf")
    assert pdf.size == 9 + 3 * ELIDE_AT and pdf.parent == forwarded.position


def test_a_thirty_megabyte_attachment_costs_the_parser_a_few_megabytes(tmp_path: Path) -> None:
    data = os.urandom(22 * 1024 * 1024)
    raw = make_message(subject="30MB", attachments=[("大きな資料.bin", data, "application/octet-stream")])
    path = _spooled(tmp_path, raw)
    del raw
    tracemalloc.start()
    try:
        parsed = parse_spooled_message(path, path.stat().st_size - 44, FileBlobs(tmp_path / "a"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (attachment,) = parsed.attachments
    assert attachment.sha256 == hashlib.sha256(data).hexdigest() and attachment.size == len(data)
    assert peak < 12 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_the_run_ends_where_the_part_ends(tmp_path: Path) -> None:
    """The last base64 line before a delimiter, with and without padding."""
    for size in (ELIDE_AT, ELIDE_AT + 1, ELIDE_AT + 2):
        data = os.urandom(size)
        raw = make_message(subject="境界", attachments=[("a.bin", data, "application/octet-stream")])
        assert base64.b64encode(data)[-4:] in raw.replace(b"\r\n", b"")
        (tmp_path / str(size)).mkdir()
        from_file, whole = both_ways(tmp_path / str(size), raw)
        assert from_file == whole
        assert whole.attachments[0].sha256 == hashlib.sha256(data).hexdigest()  # type: ignore[attr-defined]


_BASE64_LINE = base64.b64encode(bytes(range(57))) + b"\r\n"
_BLOCKS = st.sampled_from(
    [b"ordinary text, short line\r\n", b"\r\n", b"--boundary\r\n", _BASE64_LINE, _BASE64_LINE.replace(b"\r\n", b"\n")]
)


@settings(max_examples=60, deadline=None)
@given(
    blocks=st.lists(st.tuples(_BLOCKS, st.integers(1, 12_000)), min_size=1, max_size=6),
    chunk=st.integers(1000, 300_000),
    tail=st.sampled_from([b"", b"no newline at the end"]),
)
def test_what_the_parser_is_fed_gives_back_the_file_exactly(blocks, chunk: int, tail: bytes) -> None:
    """Any mix of runs and other lines, cut into chunks anywhere: putting the
    placeholders back gives the file byte for byte."""
    data = b"".join(block * count for block, count in blocks) + tail
    elided = Elided(io.BytesIO(data))
    fed = b"".join(elided.feed(data[i : i + chunk] for i in range(0, len(data), chunk)))
    assert "".join(elided.pieces(fed.decode("ascii", "surrogateescape"))).encode("ascii", "surrogateescape") == data
    assert (elided.count > 0) == (len(fed) < len(data))


def test_a_run_across_many_chunks_reaches_the_parser_as_one_line(tmp_path: Path) -> None:
    data = b"header: x\r\n\r\n" + _BASE64_LINE * 5000 + b"--boundary--\r\n"
    elided = Elided(io.BytesIO(data))
    fed = b"".join(elided.feed(data[i : i + 7000] for i in range(0, len(data), 7000)))
    assert elided.count == 1 and fed.count(b"\n") == 4 and len(fed) < 200
    assert "".join(elided.pieces(fed.decode("ascii", "surrogateescape"))).encode("ascii", "surrogateescape") == data
