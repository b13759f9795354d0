"""Raw message bytes → decoded headers, bodies and attachments.

The standard library's parser (compat32, fed from the spool file in chunks)
gives the MIME tree; everything that turns bytes into text goes through
``charsets`` and the encoded-word decoder below, because the stock decoders
get most Japanese mail wrong. Limits on depth, part count and header size
keep hostile mail bounded; a broken mail yields what can be decoded plus a
problem note. The raw bytes remain the source of truth.

Runs in the ingester process, which a supervisor restarts if a parse runs
too long (see ``ingest_process``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import mmap
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import Message as EmailMessage
from email.parser import BytesFeedParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ..blobs import BlobStore
from ..fsync import read_exactly
from . import charsets
from .filenames import display_name

_FEED_CHUNK = 64 * 1024
MAX_DEPTH = 40
MAX_PARTS = 2000
MAX_ADDRESS_HEADER = 64 * 1024
MAX_PROBLEMS = 30
# Header text kept for display and search (the original keeps all of it);
# longer values are cut, with a note. Read at most this much of one header.
MAX_DISPLAY_CHARS = 4096
MAX_HEADER_INPUT = 64 * 1024
# Lines that may open a MIME part, counted in the raw bytes before parsing:
# the parser builds an object per part whatever MAX_PARTS says, so 5 M empty
# parts would take minutes and gigabytes. Over this, only the headers are
# decoded and the clerk reads the original.
MAX_BOUNDARY_LINES = 4 * MAX_PARTS


@dataclass(frozen=True)
class Limits:
    """The bounds the settings may change (``max_mime_part_lines``,
    ``max_header_display_chars``); the defaults are safe."""

    boundary_lines: int = MAX_BOUNDARY_LINES
    display_chars: int = MAX_DISPLAY_CHARS


TOO_MANY_PARTS_NOTE = (
    "区切り行が {count} 行あり、MIME パートが多すぎるため本文と添付ファイルは解析していません。"
    "原文（.eml）で確認してください。"
)

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=")
_STREAM_THRESHOLD = 1 << 20
_B64_CHUNK = 1 << 20


@dataclass
class ParsedAttachment:
    position: int
    filename: str
    content_type: str
    size: int
    sha256: str
    content_id: str = ""
    disposition: str = "attachment"
    # Position of the attachment this one was found in (a forwarded
    # message or winmail.dat), if any.
    parent: int | None = None


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
    probe_header: str = ""

    def problem(self, note: str) -> None:
        if note not in self.problems and len(self.problems) < MAX_PROBLEMS:
            self.problems.append(note)


def parse_spooled_message(path: Path, size: int, blob_root: Path, limits: Limits = Limits()) -> ParsedMessage:
    """Parse the message held in the first ``size`` bytes of ``path``.

    Attachment bytes go to the blob store; nothing is fsynced here: the
    ingester flushes once per batch. The file is read in chunks, never
    whole; it is memory-mapped only where a forwarded message is kept.
    """
    with open(path, "rb") as fh:
        boundaries = _boundary_lines(read_exactly(fh, size, _HEADER_SCAN))
        fh.seek(0)
        if boundaries > limits.boundary_lines:
            return _set_aside(fh.read(min(size, _HEADER_SCAN)), boundaries, blob_root, limits)
        parser = BytesFeedParser(policy=policy.compat32)
        try:
            for i, chunk in enumerate(read_exactly(fh, size, _HEADER_SCAN)):
                parser.feed(tidy_header_block(chunk) if i == 0 else chunk)
            msg = parser.close()
            if size == 0 or not _has_forwarded(msg):
                return decode_message(msg, BlobStore(blob_root), raw_size=size, limits=limits)
            with mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ) as raw:
                return decode_message(msg, BlobStore(blob_root), raw_size=size, limits=limits, raw=raw)
        except RecursionError:
            fh.seek(0)
            return _headers_only(fh.read(min(size, _HEADER_SCAN)), blob_root, limits=limits)


def parse_bytes(raw: bytes, blob_root: Path, limits: Limits = Limits()) -> ParsedMessage:
    boundaries = _boundary_lines([raw])
    if boundaries > limits.boundary_lines:
        return _set_aside(raw[:_HEADER_SCAN], boundaries, blob_root, limits)
    parser = BytesFeedParser(policy=policy.compat32)
    try:
        parser.feed(tidy_header_block(raw[:_HEADER_SCAN]) + raw[_HEADER_SCAN:])
        msg = parser.close()
        spans = raw if _has_forwarded(msg) else None
        return decode_message(msg, BlobStore(blob_root), raw_size=len(raw), limits=limits, raw=spans)
    except RecursionError:
        return _headers_only(raw[:_HEADER_SCAN], blob_root, limits=limits)


def _boundary_lines(chunks: Iterable[bytes]) -> int:
    """Lines starting with ``--``: a cheap upper bound on the MIME parts,
    taken before the parser allocates any."""
    count = 0
    tail = b"\n"  # the start counts as a line start
    for chunk in chunks:
        count += (tail + chunk).count(b"\n--")
        tail = chunk[-2:]
    return count


def _set_aside(head: bytes, boundaries: int, blob_root: Path, limits: Limits) -> ParsedMessage:
    out = _headers_only(head, blob_root, note=None, limits=limits)
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


def _body_start(raw: bytes | mmap.mmap, start: int, end: int) -> int | None:
    """Where the body begins after the header block that starts at ``start``
    (just past its blank line), or None if there is no blank line."""
    if raw[start : start + 2] == b"\r\n":
        return start + 2
    if raw[start : start + 1] == b"\n":
        return start + 1
    found = [i + n for i, n in ((raw.find(b"\n\r\n", start, end), 3), (raw.find(b"\n\n", start, end), 2)) if i >= 0]
    return min(found) if found else None


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
    head: bytes, blob_root: Path, note: str | None = NESTING_NOTE, limits: Limits = Limits()
) -> ParsedMessage:
    """The headers alone, when the body cannot be parsed within bounds (the
    standard parser recurses once per nesting level, so a nesting bomb
    exhausts the stack)."""
    parser = BytesFeedParser(policy=policy.compat32)
    parser.feed(head.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    out = decode_message(parser.close(), BlobStore(blob_root), body=False, limits=limits)
    if note is not None:
        out.problem(note)
    return out


def decode_message(
    msg: EmailMessage,
    blobs: BlobStore,
    raw_size: int = 0,
    body: bool = True,
    limits: Limits = Limits(),
    raw: bytes | mmap.mmap | None = None,
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
    _Walker(blobs, out, raw_size, _RawSpans(raw, msg) if raw is not None else None).walk(msg)
    if not out.text_body and out.html_body:
        out.text_body = html_to_text(out.html_body)
    _describe_defects(msg, out)
    return out


# -- headers ----------------------------------------------------------------------


def decode_header_value(value: str, problems: list[str] | None = None) -> str:
    """Decode a header as found in the wild: RFC 2047 encoded words (B and
    Q; adjacent words of one charset joined *before* decoding, since older
    Japanese mailers split characters across words), raw 8-bit bytes, and
    raw ISO-2022-JP escape sequences.

    Encoded words are found in the raw form, so raw 8-bit bytes inside a
    word decode in that word's declared charset; only the text between
    words has its charset guessed."""
    pieces: list[str] = []
    pending: list[bytes] = []
    pending_charset: str | None = None
    last_end = 0

    def flush() -> None:
        nonlocal pending_charset
        if pending:
            pieces.append(charsets.decode(b"".join(pending), pending_charset, problems))
            pending.clear()
        pending_charset = None

    for match in _ENCODED_WORD.finditer(value):
        between = _raw_text(value[last_end : match.start()])
        charset = match.group(1).split("*", 1)[0].lower()
        if between.strip() or charset != pending_charset:
            flush()
            if between.strip() or not pieces:
                pieces.append(between)
        pending_charset = charset
        pending.append(_decode_word(match.group(2).upper(), match.group(3)))
        last_end = match.end()
    flush()
    pieces.append(_raw_text(value[last_end:]))
    return charsets.normalize("".join(pieces))


def _decode_word(encoding: str, text: str) -> bytes:
    if encoding == "B":
        cleaned = re.sub(r"[^A-Za-z0-9+/]", "", text)
        if len(cleaned) % 4 == 1:  # a lone trailing character carries no byte
            cleaned = cleaned[:-1]
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4))
    # surrogateescape: raw 8-bit bytes in the word stay the bytes they were.
    return binascii.a2b_qp(text.replace("_", " ").encode("ascii", "surrogateescape"))


def _raw_text(value: str) -> str:
    """compat32 hands raw 8-bit header bytes over as surrogate escapes and
    leaves ISO-2022-JP escapes as they are: decode both from the bytes."""
    if "\x1b" not in value and not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    raw = value.encode("ascii", "surrogateescape")
    return charsets.decode(raw, None, None)


def raw_headers(msg: EmailMessage, name: str) -> list[str]:
    """Header values as parsed, raw 8-bit bytes still surrogate-escaped.

    compat32's ``get()`` wraps such values in a Header that decodes them as
    U+FFFD; the raw form lets ``charsets`` decide what they are.
    """
    wanted = name.lower()
    return [value if isinstance(value, str) else str(value) for key, value in msg.raw_items() if key.lower() == wanted]


_FOLD = re.compile(r"\r?\n[ \t]")
_ASCII_SPACE = " \t"


def _single_line(text: str) -> str:
    """RFC 5322 unfolding and nothing more: a fold (line break + space or
    tab) becomes one space, a stray line break goes; every other character
    is the sender's, U+3000 and repeated spaces included. Normalisation
    belongs to the search index only."""
    text = _FOLD.sub(" ", text)
    return text.replace("\r", "").replace("\n", "").strip(_ASCII_SPACE)


def _displayed(text: str, what: str, out: ParsedMessage, limits: Limits) -> str:
    """Cut what is shown and indexed; the original keeps the whole header."""
    limit = limits.display_chars
    if len(text) <= limit:
        return text
    out.problem(f"{what}が長すぎるため（{len(text)} 文字）、先頭の {limit} 文字だけを表示しています。")
    return text[:limit] + "…"


def _header(msg: EmailMessage, name: str, out: ParsedMessage) -> str:
    values = raw_headers(msg, name)
    if not values:
        return ""
    value = values[0]
    if len(value) > MAX_HEADER_INPUT:
        # Decoding is linear, but a 35 MB header is still not worth it: the
        # displayed part comes from the start anyway.
        # At a fold, so that no character (raw 8-bit or encoded word) is cut.
        cut = value.rfind("\n", 0, MAX_HEADER_INPUT)
        value = value[: cut if cut > 0 else MAX_HEADER_INPUT]
        out.problem(f"{name} ヘッダーが長すぎるため、先頭だけを解析しました。")
    return decode_header_value(value, out.problems)


def _addresses(msg: EmailMessage, name: str, out: ParsedMessage) -> list[dict[str, str]]:
    values = raw_headers(msg, name)
    if not values:
        return []
    if sum(len(v) for v in values) > MAX_ADDRESS_HEADER:
        out.problem(f"{name} ヘッダーが長すぎるため先頭 {MAX_ADDRESS_HEADER} 文字のみ解析しました")
        values = ["\n".join(values)[:MAX_ADDRESS_HEADER]]
    # Split into addresses first, decode each display name after: decoding
    # first would let an encoded comma or quote move the split (and the
    # shown address must be the real one: CVE-2023-27043).
    try:
        pairs = email.utils.getaddresses(values, strict=True)
    except TypeError:  # a Python without strict=
        pairs = email.utils.getaddresses(values)
    result = []
    for display, address in pairs:
        if not display and not address:
            continue
        result.append(
            {
                "name": _single_line(decode_header_value(display, out.problems)),
                "address": _raw_text(address),
            }
        )
    if not result:
        out.problem(f"{name} ヘッダーのアドレスを解析できませんでした")
    return result


def _date(msg: EmailMessage, out: ParsedMessage) -> dt.datetime | None:
    value = msg.get("Date")
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        out.problem(f"Date ヘッダーを解析できませんでした: {str(value)[:80]}")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


# What the standard library's defect classes mean to a clerk; each note ends
# with where to look (see _describe_defects).
DEFECT_NOTES = {
    "CloseBoundaryNotFoundDefect": "メールの終わりの区切りが見つからなかったため、最後の部分は推定で読み取りました",
    "StartBoundaryNotFoundDefect": "本文と添付ファイルの区切りが見つかりませんでした",
    "NoBoundaryInMultipartDefect": "本文と添付ファイルの区切りが指定されていませんでした",
    "MultipartInvariantViolationDefect": "添付ファイル付きの形式なのに、本文と添付ファイルに分かれていませんでした",
    "InvalidBase64CharactersDefect": "添付ファイルの符号化が壊れていたため、一部を復元できませんでした",
    "InvalidBase64PaddingDefect": "添付ファイルの符号化が途中で切れていたため、一部を復元できませんでした",
    "InvalidBase64LengthDefect": "添付ファイルの符号化が途中で切れていたため、一部を復元できませんでした",
    "InvalidMultipartContentTransferEncodingDefect": "添付ファイル付きメールの符号化の指定が正しくありませんでした",
    "MissingHeaderBodySeparatorDefect": "ヘッダーと本文の間の空行がありませんでした",
    "FirstHeaderLineIsContinuationDefect": "ヘッダーの最初の行が正しくありませんでした",
    "MisplacedEnvelopeHeaderDefect": "ヘッダーの途中に配送用の行が混じっていました",
    "UndecodableBytesDefect": "読み取れない文字が含まれていました",
    "InvalidDateDefect": "送信日時の書き方が正しくありませんでした",
}
DEFECT_FALLBACK = "メールの形式に不備がありました"
DEFECT_WHERE = "（原文は「ソースを表示」から確認できます）"


def _describe_defects(msg: EmailMessage, out: ParsedMessage) -> None:
    names: set[str] = set()
    stack = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        names.update(type(defect).__name__ for defect in getattr(part, "defects", []))
        payload = part.get_payload()
        if isinstance(payload, list) and depth < MAX_DEPTH:
            stack.extend((p, depth + 1) for p in payload if isinstance(p, EmailMessage))
    for note in sorted({DEFECT_NOTES.get(name, DEFECT_FALLBACK) for name in names}):
        out.problem(note + DEFECT_WHERE)


# -- the MIME tree ------------------------------------------------------------------


class _RawSpans:
    """Where each part stands in the original bytes, found by the same
    delimiter lines the parser used, so that a forwarded message is kept
    byte for byte (an S/MIME signature inside it still verifies). Where the
    two disagree it gives up quietly and the caller re-serialises."""

    def __init__(self, raw: bytes | mmap.mmap, msg: EmailMessage) -> None:
        self.raw = raw
        self.spans: dict[int, tuple[int, int]] = {id(msg): (0, len(raw))}

    def _delimiters(self, boundary: bytes, start: int, end: int) -> list[tuple[int, int, bool]]:
        """(line start, next line's start, closing?) of each delimiter line."""
        raw, marker, found, pos = self.raw, b"--" + boundary, [], start
        while (k := raw.find(marker, pos, end)) >= 0:
            pos = k + len(marker)
            if k != start and raw[k - 1 : k] != b"\n":
                continue
            line_end = raw.find(b"\n", k, end)
            line_end = end if line_end < 0 else line_end + 1
            rest = raw[pos:line_end].rstrip(b"\r\n \t")
            if rest in (b"", b"--"):
                found.append((k, line_end, rest == b"--"))
                if rest == b"--":
                    break
        return found

    def children(self, part: EmailMessage, payload: Any) -> None:
        span = self.spans.get(id(part))
        boundary = part.get_boundary()
        if span is None or not boundary:
            return
        body = _body_start(self.raw, *span)
        if body is None:
            return
        delimiters = self._delimiters(boundary.encode("utf-8", "surrogateescape"), body, span[1])
        parts = [p for p in payload if isinstance(p, EmailMessage)]
        opening = [i for i, d in enumerate(delimiters) if not d[2]]
        if len(opening) != len(parts):
            return
        for child, i in zip(parts, opening, strict=True):
            start = delimiters[i][1]
            stop = delimiters[i + 1][0] if i + 1 < len(delimiters) else span[1]
            # The line break before a delimiter belongs to the delimiter.
            if self.raw[stop - 2 : stop] == b"\r\n":
                stop -= 2
            elif self.raw[stop - 1 : stop] == b"\n":
                stop -= 1
            self.spans[id(child)] = (start, max(start, stop))

    def embedded(self, part: EmailMessage, inner: EmailMessage) -> bytes | None:
        """The wire bytes of the message a message/rfc822 part carries."""
        span = self.spans.get(id(part))
        encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
        if span is None or encoding not in ("", "7bit", "8bit", "binary"):
            return None
        body = _body_start(self.raw, *span)
        if body is None:
            return None
        self.spans[id(inner)] = (body, span[1])
        return bytes(self.raw[body : span[1]])


# Reports whose parts are header-like fields, not messages.
REPORT_TYPES = frozenset(
    {
        "message/delivery-status",
        "message/global-delivery-status",
        "message/disposition-notification",
        "message/feedback-report",
    }
)
# A name for a part the sender left nameless, where its type says what it is.
UNNAMED = {"text/calendar": "予定.ics"}


class _Walker:
    def __init__(self, blobs: BlobStore, out: ParsedMessage, raw_size: int = 0, spans: _RawSpans | None = None) -> None:
        self.blobs = blobs
        self.out = out
        self.spans = spans
        self.parts = 0
        # Forwarded messages are kept as files of their own, but a message
        # nested inside one is already in its file: without a budget, 40
        # levels of forwarding store the same bytes 40 times. In all they
        # may take as much as the mail itself.
        self.forwarded_budget = raw_size if raw_size > 0 else 1 << 62
        self.forwarded_positions: set[int] = set()

    def walk(self, msg: EmailMessage) -> None:
        # Iterative, depth-first, in document order: nesting bombs cannot
        # exhaust the stack.
        stack: list[tuple[EmailMessage, int, int | None, bool]] = [(msg, 0, None, True)]
        while stack:
            part, depth, parent, in_body = stack.pop()
            self.parts += 1
            if self.parts > MAX_PARTS:
                self.out.problem(f"パートが {MAX_PARTS} を超えるため、残りは原文でのみ確認できます")
                return
            children = self._visit(part, depth, parent, in_body)
            if children:
                if depth + 1 > MAX_DEPTH:
                    self.out.problem(f"入れ子が {MAX_DEPTH} 段を超える部分は原文でのみ確認できます")
                    continue
                stack.extend(reversed(children))

    def _visit(
        self, part: EmailMessage, depth: int, parent: int | None, in_body: bool
    ) -> list[tuple[EmailMessage, int, int | None, bool]]:
        ctype = part.get_content_type()
        if ctype == "message/partial":
            self._partial(part, parent)
            return []
        if ctype in REPORT_TYPES:
            self._report(part, in_body, parent)
            return []
        if ctype == "message/rfc822" or (part.is_multipart() and ctype.startswith("message/")):
            return self._forwarded(part, depth, parent)
        if part.is_multipart():
            payload = part.get_payload()
            if self.spans is not None:
                self.spans.children(part, payload)
            return [(p, depth + 1, parent, in_body) for p in payload if isinstance(p, EmailMessage)]
        if ctype.startswith("multipart/"):
            # Its boundary never appears: what it holds is text, not a
            # container; an empty one is nothing at all.
            self._phantom_container(part, in_body, parent)
            return []
        disposition = (part.get_content_disposition() or "").lower()
        filename = attachment_filename(part, self.out) or UNNAMED.get(ctype, "")
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            if in_body:
                self._body_text(part, ctype)
            return []
        if ctype == "application/pkcs7-mime" or ctype == "application/x-pkcs7-mime":
            self._smime(part)
        position = self._attachment(part, ctype, filename, disposition, parent)
        if ctype == "application/ms-tnef" or filename.lower() == "winmail.dat":
            self._tnef(part, position)
        return []

    def _partial(self, part: EmailMessage, parent: int | None) -> None:
        """One fragment of a mail split by the sender's mailer (RFC 2046
        message/partial): kept as what it is, not read as a forwarded mail."""
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        data = self.spans.embedded(part, inner) if self.spans is not None and isinstance(inner, EmailMessage) else None
        if data is None:
            data = inner.as_bytes(policy=policy.compat32) if isinstance(inner, EmailMessage) else b""
        number, total = _param(part, "number"), _param(part, "total")
        name = f"分割メール（{number}／{total or '?'}）.eml" if number else "分割メール.eml"
        self._add(name, "message/partial", len(data), self.blobs.put_bytes(data), parent, part)
        self.out.problem("送信元で分割されたメールの一部です（message/partial）。全部そろえて開く必要があります。")

    def _report(self, part: EmailMessage, in_body: bool, parent: int | None) -> None:
        """Why a mail bounced, or a read receipt (RFC 3464, 8098): fields for
        the clerk to read, not a forwarded mail."""
        payload = part.get_payload()
        if isinstance(payload, list):
            text = "\n\n".join(
                block.as_string(policy=policy.compat32).strip() for block in payload if isinstance(block, EmailMessage)
            )
        else:
            data = part.get_payload(decode=True)
            text = charsets.decode(data, "utf-8", self.out.problems) if isinstance(data, bytes) else str(payload)
        text = text.replace("\r\n", "\n").strip()
        if in_body:
            self.out.text_body = text if not self.out.text_body else self.out.text_body.rstrip() + "\n\n" + text
        else:
            data = text.encode("utf-8")
            self._add("配信状況.txt", "text/plain", len(data), self.blobs.put_bytes(data), parent, part)

    def _phantom_container(self, part: EmailMessage, in_body: bool, parent: int | None) -> None:
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not payload.strip():
            return
        text = charsets.decode(payload, part.get_content_charset(), self.out.problems)
        self.out.problem("区切り行が見つからないため、メール全体を本文として表示しています。")
        if in_body:
            self.out.text_body = text if not self.out.text_body else self.out.text_body + "\n" + text
        else:
            self._add("本文.txt", "text/plain", len(payload), self.blobs.put_bytes(payload), parent, part)

    def _body_text(self, part: EmailMessage, ctype: str) -> None:
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            return
        text = charsets.decode(payload, part.get_content_charset(), self.out.problems)
        if ctype == "text/html":
            if self.out.html_body is None:
                self.out.html_body = text
            return
        if _param(part, "format") == "flowed":
            text = unflow(text, delsp=_param(part, "delsp") == "yes")
        self.out.text_body = text if not self.out.text_body else self.out.text_body + "\n" + text

    def _attachment(self, part: EmailMessage, ctype: str, filename: str, disposition: str, parent: int | None) -> int:
        sha256, size = _store_payload(part, self.blobs, self.out)
        return self._add(filename, ctype, size, sha256, parent, part, disposition or "attachment")

    def _add(
        self,
        filename: str,
        ctype: str,
        size: int,
        sha256: str,
        parent: int | None,
        part: EmailMessage | None = None,
        disposition: str = "attachment",
    ) -> int:
        position = len(self.out.attachments)
        ctype = re.sub(r"[\x00-\x20\x7f]", "", ctype) or "application/octet-stream"  # never CR, LF or TAB
        content_id = str(part.get("Content-ID", "")).strip().strip("<>") if part is not None else ""
        self.out.attachments.append(
            ParsedAttachment(
                position=position,
                filename=filename,
                content_type=ctype[:255],
                size=size,
                sha256=sha256,
                content_id=content_id[:500],
                disposition=disposition,
                parent=parent,
            )
        )
        return position

    def _forwarded(
        self, part: EmailMessage, depth: int, parent: int | None
    ) -> list[tuple[EmailMessage, int, int | None, bool]]:
        """A forwarded message is kept whole as ``<its subject>.eml``; its
        own attachments are listed too, pointing at it."""
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        if not isinstance(inner, EmailMessage):
            self._attachment(part, "message/rfc822", attachment_filename(part, self.out), "attachment", parent)
            return []
        if parent in self.forwarded_positions:
            # Already inside a kept forwarded message's file: not serialised
            # and stored again (that is what made deep chains slow and big).
            self.out.problem("転送メールの中の転送メールは、外側の転送メール（.eml）を開いて確認してください。")
            return [(inner, depth + 1, parent, False)]
        wire = self.spans.embedded(part, inner) if self.spans is not None else None
        if wire is not None:
            raw = wire
        else:
            try:
                raw = inner.as_bytes(policy=policy.compat32)
            except (ValueError, LookupError, UnicodeError):
                raw = str(inner).encode("utf-8", "surrogateescape")
        subject = _single_line(_header(inner, "Subject", self.out))[:200]
        name = attachment_filename(part, self.out) or f"{subject or '転送メール'}.eml"
        if len(raw) > self.forwarded_budget:
            self.out.problem(
                "入れ子になった転送メールが大きすぎるため、内側の転送メールは外側の転送メール（.eml）の中で確認してください。"
            )
            return [(inner, depth + 1, parent, False)]
        self.forwarded_budget -= len(raw)
        position = self._add(name, "message/rfc822", len(raw), self.blobs.put_bytes(raw), parent, part)
        self.forwarded_positions.add(position)
        return [(inner, depth + 1, position, False)]

    def _smime(self, part: EmailMessage) -> None:
        kind = _param(part, "smime-type")
        if kind == "enveloped-data" or kind == "authenveloped-data":
            self.out.problem("S/MIME で暗号化されたメールです。本文と添付ファイルは復号できないため表示できません。")
        else:
            self.out.problem("S/MIME 署名付き（opaque 形式）のメールです。本文は p7m ファイルの中にあります。")

    def _tnef(self, part: EmailMessage, position: int) -> None:
        """winmail.dat: list the files inside, names in the TNEF code page."""
        from tnefparse.tnef import TNEF

        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            return
        try:
            tnef = TNEF(data)
        except Exception as exc:  # tnefparse raises many kinds on bad input
            self.out.problem(f"winmail.dat を展開できませんでした: {type(exc).__name__}")
            return
        codepage = f"cp{tnef.codepage}" if getattr(tnef, "codepage", None) else "cp1252"
        for attachment in tnef.attachments:
            name = _tnef_name(attachment, codepage)
            payload = attachment.data if isinstance(attachment.data, bytes) else b""
            self._add(name, _guess_type(name), len(payload), self.blobs.put_bytes(payload), position)


def _param(part: EmailMessage, name: str) -> str:
    value = part.get_param(name)
    return value.lower() if isinstance(value, str) else ""


def _tnef_name(attachment: object, codepage: str) -> str:
    # tnefparse decodes the title as UTF-8; Japanese Outlook writes it in
    # the code page (932), so decode the raw bytes ourselves.
    raw = getattr(attachment, "_name", b"")
    if isinstance(raw, bytes) and raw:
        try:
            return display_name(raw.rstrip(b"\0").decode(codepage))
        except (UnicodeDecodeError, LookupError):
            return display_name(charsets.decode(raw.rstrip(b"\0"), None))
    return display_name(str(raw).rstrip("\0"))


def _guess_type(name: str) -> str:
    import mimetypes

    return mimetypes.guess_type(name)[0] or "application/octet-stream"


# -- attachment names -------------------------------------------------------------------

_RAW_PARAM = re.compile(r'(?i)(?:^|;)\s*{name}\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def attachment_filename(part: EmailMessage, out: ParsedMessage) -> str:
    """The name from Content-Disposition ``filename`` or Content-Type
    ``name``: RFC 2231 (with continuations, in any charset), MIME encoded
    words inside the quotes (non-standard, common from Japanese clients),
    raw 8-bit Shift_JIS/UTF-8 or raw ISO-2022-JP."""
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        found = raw_headers(part, header)
        if not found:
            continue
        raw_header = found[0]
        if any("\udc80" <= ch <= "\udcff" for ch in raw_header) or "\x1b" in raw_header:
            # get_param() would turn raw bytes into U+FFFD: read them ourselves.
            match = re.compile(_RAW_PARAM.pattern.format(name=param)).search(raw_header)
            if match:
                return display_name(decode_header_value(match.group(1).strip().strip('"'), out.problems))
        value = part.get_param(param, header=header)
        if value is None:
            continue
        if isinstance(value, tuple):  # RFC 2231: (charset, language, percent-decoded text)
            charset, _language, text = value
            data = text.encode("latin-1", "replace")
            return display_name(charsets.decode(data, charset or None, out.problems))
        return display_name(decode_header_value(str(value), out.problems))
    return ""


# -- payloads -----------------------------------------------------------------------


def _store_payload(part: EmailMessage, blobs: BlobStore, out: ParsedMessage) -> tuple[str, int]:
    """Store a leaf part's decoded bytes; large base64 parts are decoded in
    chunks so that the decoded copy is never held whole in memory."""
    encoded = part.get_payload()
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if isinstance(encoded, str) and cte == "base64" and len(encoded) > _STREAM_THRESHOLD:
        part.set_payload("")  # the encoded text is not needed any more: free it
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
        out.problem(f"base64 の一部を復号できませんでした: {exc}")
        return b""


# -- text renditions ------------------------------------------------------------------------


def unflow(text: str, delsp: bool = False) -> str:
    """RFC 3676 format=flowed → plain paragraphs (soft line breaks joined)."""
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    buffer = ""
    depth_of_buffer = -1
    for line in lines:
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing
        flowed = content.endswith(" ") and content != "-- "
        if buffer and depth != depth_of_buffer:
            out.append(">" * depth_of_buffer + buffer)
            buffer = ""
        if flowed:
            buffer += content[:-1] if delsp else content
            depth_of_buffer = depth
        else:
            out.append(">" * depth + buffer + content)
            buffer = ""
    if buffer:
        out.append(">" * depth_of_buffer + buffer)
    return "\n".join(out)


class _TextExtractor(HTMLParser):
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "pre", "hr"}
    _SKIP = {"script", "style", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skipping += 1
        elif tag in self._BLOCK:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self._BLOCK:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.chunks.append(data)


def html_to_text(html: str) -> str:
    """A plain-text rendition of an HTML body, for search and preview."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # malformed markup: keep what was read
        pass
    text = "".join(parser.chunks)
    # HTML collapses ASCII white space only; U+3000 is text.
    lines = [re.sub(r"[ \t\f\v]+", " ", line).strip(_ASCII_SPACE) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
