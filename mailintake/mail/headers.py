"""Headers as the sender wrote them: encoded words decoded in their own
charset, folding undone and nothing more, addresses, dates, and what the
parser found broken, in words a clerk reads."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import re
from email.message import Message as EmailMessage

from ..texts import DEFECT_FALLBACK, DEFECT_NOTES, DEFECT_WHERE
from . import charsets
from .parsed import MAX_ADDRESS_HEADER, MAX_DEPTH, MAX_HEADER_INPUT, Limits, ParsedMessage

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=")


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
