"""Turning raw message bytes into decoded headers, bodies and attachments.

The raw bytes stay the source of truth; what is produced here can be
recomputed from them. Runs in a worker process (see ``ingest``), so a
message that makes the parser misbehave costs a worker, not the service.
"""

from __future__ import annotations

import binascii
import codecs
import datetime as dt
import email.utils
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header
from email.message import Message as EmailMessage
from email.parser import BytesFeedParser
from pathlib import Path

from .blobs import BlobStore
from .spool import read_exactly

_FEED_CHUNK = 64 * 1024

# Labels under which Shift_JIS text travels; Windows clients mean CP932.
_CHARSET_ALIASES = {
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "windows-31j": "cp932",
    "csshiftjis": "cp932",
    "x-ms-cp932": "cp932",
}


@dataclass
class ParsedAttachment:
    position: int
    filename: str
    content_type: str
    size: int
    sha256: str
    content_id: str = ""
    disposition: str = "attachment"


@dataclass
class ParsedMessage:
    message_id: str = ""
    from_name: str = ""
    from_address: str = ""
    to: list[dict[str, str]] = field(default_factory=list)
    cc: list[dict[str, str]] = field(default_factory=list)
    subject: str = ""
    date: dt.datetime | None = None
    text_body: str = ""
    html_body: str | None = None
    attachments: list[ParsedAttachment] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse_spooled_message(path: Path, size: int, blob_root: Path) -> ParsedMessage:
    """Parse the message held in the first ``size`` bytes of ``path``.

    Attachment bytes go to the blob store; nothing is fsynced here: the
    ingester flushes once per batch.
    """
    parser = BytesFeedParser(policy=policy.compat32)
    with open(path, "rb") as fh:
        for chunk in read_exactly(fh, size, _FEED_CHUNK):
            parser.feed(chunk)
    return _decode(parser.close(), BlobStore(blob_root))


def _decode(msg: EmailMessage, blobs: BlobStore) -> ParsedMessage:
    out = ParsedMessage()
    out.problems.extend(_describe_defects(msg))
    out.message_id = _header_text(msg, "Message-ID", out).strip()
    out.subject = _header_text(msg, "Subject", out)
    senders = _addresses(msg, "From", out)
    if senders:
        out.from_name, out.from_address = senders[0]["name"], senders[0]["address"]
    out.to = _addresses(msg, "To", out)
    out.cc = _addresses(msg, "Cc", out)
    out.date = _date(msg, out)
    _walk_parts(msg, blobs, out)
    return out


def _describe_defects(msg: EmailMessage) -> list[str]:
    problems = []
    for part in msg.walk():
        for defect in getattr(part, "defects", []):
            problems.append(f"MIME structure: {type(defect).__name__}")
    # Keep the note readable when a broken mail has thousands of defects.
    unique = sorted(set(problems))
    return unique[:20]


def decode_header_value(value: str, problems: list[str] | None = None) -> str:
    """Decode RFC 2047 encoded words and raw 8-bit header bytes."""
    try:
        parts = decode_header(value)
    except Exception as exc:  # malformed encoded words: keep the text as is
        if problems is not None:
            problems.append(f"header decoding failed: {exc}")
        return _from_surrogates(value)
    pieces = []
    for data, charset in parts:
        if isinstance(data, str):
            pieces.append(_from_surrogates(data))
        else:
            pieces.append(decode_bytes(data, charset, problems))
    return "".join(pieces)


def _from_surrogates(text: str) -> str:
    """compat32 keeps raw 8-bit header bytes as surrogate escapes."""
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    raw = text.encode("ascii", "surrogateescape")
    return decode_bytes(raw, None, None)


def decode_bytes(data: bytes, charset: str | None, problems: list[str] | None) -> str:
    """Decode with the declared charset, then UTF-8, then CP932."""
    candidates = []
    if charset:
        candidates.append(_codec_name(charset))
    candidates += ["utf-8", "cp932"]
    for name in candidates:
        if name is None:
            continue
        try:
            return data.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
    if problems is not None:
        problems.append(f"undecodable bytes in charset {charset or 'unknown'}")
    return data.decode(candidates[0] or "utf-8", errors="replace")


def _codec_name(charset: str) -> str | None:
    label = charset.strip().strip('"').lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def _header_text(msg: EmailMessage, name: str, out: ParsedMessage) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    text = decode_header_value(str(value), out.problems)
    return " ".join(text.split()) if name == "Subject" else text


def _addresses(msg: EmailMessage, name: str, out: ParsedMessage) -> list[dict[str, str]]:
    values = msg.get_all(name) or []
    if not values:
        return []
    # Parse first, decode each display name after: decoding before parsing
    # would let an encoded comma or quote change where addresses split.
    try:
        pairs = email.utils.getaddresses([str(v) for v in values], strict=True)
    except TypeError:  # older Pythons without strict=
        pairs = email.utils.getaddresses([str(v) for v in values])
    result = []
    for display, address in pairs:
        if not display and not address:
            continue
        result.append(
            {"name": decode_header_value(display, out.problems).strip(), "address": _from_surrogates(address)}
        )
    if not result:
        out.problems.append(f"{name}: no address could be parsed")
    return result


def _date(msg: EmailMessage, out: ParsedMessage) -> dt.datetime | None:
    value = msg.get("Date")
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        out.problems.append(f"unparseable Date header: {str(value)[:80]}")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def _walk_parts(msg: EmailMessage, blobs: BlobStore, out: ParsedMessage) -> None:
    position = 0
    for part in msg.walk():
        if part.is_multipart():
            continue
        content_type = part.get_content_type()[:255]
        disposition = (part.get_content_disposition() or "").lower()
        filename = _filename(part, out)
        is_body_text = content_type in ("text/plain", "text/html") and disposition != "attachment" and not filename
        if is_body_text:
            text = _part_text(part, out)
            if content_type == "text/plain":
                out.text_body = text if not out.text_body else out.text_body + "\n" + text
            elif out.html_body is None:
                out.html_body = text
            continue
        sha256, size = _store_payload(part, blobs, out)
        out.attachments.append(
            ParsedAttachment(
                position=position,
                filename=filename,
                content_type=content_type,
                size=size,
                sha256=sha256,
                content_id=str(part.get("Content-ID", "")).strip().strip("<>"),
                disposition=disposition or "attachment",
            )
        )
        position += 1


def _filename(part: EmailMessage, out: ParsedMessage) -> str:
    name = part.get_filename()
    if not name:
        return ""
    return decode_header_value(str(name), out.problems)


def _part_text(part: EmailMessage, out: ParsedMessage) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return decode_bytes(payload, part.get_content_charset(), out.problems)


_STREAM_THRESHOLD = 1 << 20
_B64_CHUNK = 1 << 20


def _store_payload(part: EmailMessage, blobs: BlobStore, out: ParsedMessage) -> tuple[str, int]:
    """Store a leaf part's decoded bytes; large base64 parts are decoded in
    chunks so that the decoded copy is never held whole in memory."""
    encoded = part.get_payload()
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if isinstance(encoded, str) and cte == "base64" and len(encoded) > _STREAM_THRESHOLD:
        # The encoded text is no longer needed once decoded: free it early.
        part.set_payload("")
        return blobs.put_stream(_base64_chunks(encoded, out))
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = b""
    return blobs.put_bytes(payload), len(payload)


def _base64_chunks(encoded: str, out: ParsedMessage) -> Iterator[bytes]:
    carry = ""
    for start in range(0, len(encoded), _B64_CHUNK):
        text = carry + "".join(encoded[start : start + _B64_CHUNK].split())
        cut = len(text) // 4 * 4
        carry = text[cut:]
        if cut:
            yield _b64decode(text[:cut], out)
    if carry:
        yield _b64decode(carry + "=" * (-len(carry) % 4), out)


def _b64decode(text: str, out: ParsedMessage) -> bytes:
    try:
        return binascii.a2b_base64(text.encode("ascii", "replace"))
    except binascii.Error as exc:
        note = f"base64 could not be fully decoded: {exc}"
        if note not in out.problems:
            out.problems.append(note)
        return b""
