"""Raw message bytes → decoded headers, bodies and attachments: the entry
points, with the parts in their own modules — ``headers`` (encoded words,
addresses, dates, defects in plain words), ``parts`` (the MIME tree:
bodies, attachments, forwarded mail, winmail.dat, reports), ``filenames``,
``text`` (format=flowed, HTML as text) and ``parsed`` (what comes out, and
the bounds).

The standard library's parser (compat32, fed from the spool file in chunks)
gives the MIME tree; everything that turns bytes into text goes through
``charsets`` and the encoded-word decoder, because the stock decoders get
most Japanese mail wrong. Limits on depth, part count and header size keep
hostile mail bounded; a broken mail yields what can be decoded plus a
problem note. The raw bytes remain the source of truth.

Runs in the parser process, which a supervisor restarts if a parse runs too
long (see ``intake/worker.py``).
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Iterable
from email import policy
from email.message import Message as EmailMessage
from email.parser import BytesFeedParser
from pathlib import Path

from ..blobs import BlobStore, FileBlobs
from ..fsync import read_exactly
from .elision import Elided
from .headers import (
    _addresses,
    _date,
    _describe_defects,
    _displayed,
    _header,
    _single_line,
    decode_header_value,
    raw_headers,
)
from .parsed import DEFAULT_LIMITS, TOO_MANY_PARTS_NOTE, Limits, ParsedMessage
from .parts import _body_start, _RawSpans, _Walker
from .text import html_to_text


def parse_spooled_message(path: Path, size: int, blobs: BlobStore, limits: Limits = DEFAULT_LIMITS) -> ParsedMessage:
    """Parse the message held in the first ``size`` bytes of ``path``.

    Attachment bytes go to ``blobs``; nothing is flushed here: the
    ingester flushes once per batch. The file is read in chunks, never
    whole; it is memory-mapped only where a forwarded message is kept.
    """
    with open(path, "rb") as fh:
        boundaries = _boundary_lines(read_exactly(fh, size, _HEADER_SCAN))
        fh.seek(0)
        if boundaries > limits.boundary_lines:
            return _set_aside(fh.read(min(size, _HEADER_SCAN)), boundaries, blobs, limits)
        parser = BytesFeedParser(policy=policy.compat32)
        elided = Elided(fh)
        try:
            for i, chunk in enumerate(elided.feed(read_exactly(fh, size, _HEADER_SCAN))):
                parser.feed(tidy_header_block(chunk) if i == 0 else chunk)
            msg = parser.close()
            if size == 0 or not _has_forwarded(msg):
                return decode_message(msg, blobs, raw_size=size, limits=limits, elided=elided)
            with mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ) as raw:
                return decode_message(msg, blobs, raw_size=size, limits=limits, raw=raw, elided=elided)
        except RecursionError:
            fh.seek(0)
            return _headers_only(fh.read(min(size, _HEADER_SCAN)), blobs, limits=limits)


def parse_bytes(raw: bytes, blob_root: Path, limits: Limits = DEFAULT_LIMITS) -> ParsedMessage:
    """Parse a message held in memory, its attachments into a files store
    at ``blob_root`` (tools and tests)."""
    blobs = FileBlobs(blob_root)
    boundaries = _boundary_lines([raw])
    if boundaries > limits.boundary_lines:
        return _set_aside(raw[:_HEADER_SCAN], boundaries, blobs, limits)
    parser = BytesFeedParser(policy=policy.compat32)
    try:
        parser.feed(tidy_header_block(raw[:_HEADER_SCAN]) + raw[_HEADER_SCAN:])
        msg = parser.close()
        spans = raw if _has_forwarded(msg) else None
        return decode_message(msg, blobs, raw_size=len(raw), limits=limits, raw=spans)
    except RecursionError:
        return _headers_only(raw[:_HEADER_SCAN], blobs, limits=limits)


def _boundary_lines(chunks: Iterable[bytes]) -> int:
    """Lines starting with ``--``: a cheap upper bound on the MIME parts,
    taken before the parser allocates any."""
    count = 0
    tail = b"\n"  # the start counts as a line start
    for chunk in chunks:
        count += (tail + chunk).count(b"\n--")
        tail = chunk[-2:]
    return count


def _set_aside(head: bytes, boundaries: int, blobs: BlobStore, limits: Limits) -> ParsedMessage:
    out = _headers_only(head, blobs, note=None, limits=limits)
    out.problem(TOO_MANY_PARTS_NOTE.format(count=boundaries))
    return out


def _has_forwarded(msg: EmailMessage) -> bool:
    """Whether any part carries a message (only then are the original's
    bytes looked at again)."""
    return any(part.get_content_maintype() == "message" for part in msg.walk())


_HEADER_SCAN = 1 << 20
# Obsolete syntax (RFC 5322 §4.5): white space between a field name and its
# colon. The standard parser would end the header block there.
_SPACE_BEFORE_COLON = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]+:")
_TYPE_WITHOUT_SEMICOLON = re.compile(rb"(?i)^(content-type:[ \t]*[\w.+-]+/[\w.+-]+)[ \t]+(?=[\w-]+[ \t]*=)")


def tidy_header_block(head: bytes) -> bytes:
    """Leniency for the top-level header block, as mature parsers have it:
    ``Subject : hi`` is a header; Content-Type is unfolded (a quoted
    boundary folded across lines is one value) and gets the ``;`` a sender
    left out before its parameters. The stored original is untouched."""
    cut = _body_start(head, 0, len(head))
    if cut is None:
        return head
    lines = head[:cut].split(b"\n")
    out: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and out:
            if out[-1].lower().startswith(b"content-type:"):
                out[-1] = out[-1].rstrip(b"\r") + b" " + line.lstrip(b" \t")
                continue
            out.append(line)
            continue
        out.append(_SPACE_BEFORE_COLON.sub(rb"\1:", line))
    out = [_TYPE_WITHOUT_SEMICOLON.sub(rb"\1; ", line) for line in out]
    return b"\n".join(out) + head[cut:]


NESTING_NOTE = "MIME の入れ子が深すぎるため、本文と添付ファイルは原文でのみ確認できます。"


def _headers_only(
    head: bytes, blobs: BlobStore, note: str | None = NESTING_NOTE, limits: Limits = DEFAULT_LIMITS
) -> ParsedMessage:
    """The headers alone, when the body cannot be parsed within bounds (the
    standard parser recurses once per nesting level, so a nesting bomb
    exhausts the stack)."""
    parser = BytesFeedParser(policy=policy.compat32)
    parser.feed(head.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    out = decode_message(parser.close(), blobs, body=False, limits=limits)
    if note is not None:
        out.problem(note)
    return out


def decode_message(
    msg: EmailMessage,
    blobs: BlobStore,
    raw_size: int = 0,
    body: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    raw: bytes | mmap.mmap | None = None,
    elided: Elided | None = None,
) -> ParsedMessage:
    out = ParsedMessage()
    out.message_id = _header(msg, "Message-ID", out).strip()[:998]
    out.subject = _displayed(_single_line(_header(msg, "Subject", out)), "件名", out, limits)
    senders = _addresses(msg, "From", out)
    if senders:
        out.from_name = _displayed(senders[0]["name"], "差出人の名前", out, limits)
        out.from_address = _displayed(senders[0]["address"], "差出人のアドレス", out, limits)
    out.to = _addresses(msg, "To", out)
    out.cc = _addresses(msg, "Cc", out)
    out.date = _date(msg, out)
    probe = raw_headers(msg, "X-Mailintake-Probe")
    out.probe_header = "".join(decode_header_value(probe[0]).split())[:200] if probe else ""
    if not body:
        return out
    _Walker(blobs, out, raw_size, _RawSpans(raw, msg) if raw is not None else None, elided).walk(msg)
    if not out.text_body and out.html_body:
        out.text_body = html_to_text(out.html_body)
    _describe_defects(msg, out)
    return out
