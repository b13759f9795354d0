"""Attachment names: what clerks see and what a download offers.

A name from a mail is only ever *displayed* or *offered* as a download
name; it never takes part in a path on our side (blobs are stored by hash).
"""

from __future__ import annotations

import re
import unicodedata
from email.message import Message as EmailMessage

from . import charsets
from .headers import decode_header_value, raw_headers
from .parsed import ParsedMessage

_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
_MAX_DOWNLOAD_CHARS = 120


def display_name(name: str) -> str:
    """The decoded name with control and format characters (NUL, CR, LF,
    bidi overrides that disguise ``exe``) replaced by spaces; otherwise
    exactly what the sender wrote."""
    return "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in name)


def download_name(name: str, fallback: str) -> str:
    """A name safe to offer on every desktop: no directories, no reserved
    device names, no trailing dots or spaces, not too long."""
    name = display_name(name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]  # no directory part, either convention
    name = re.sub(r'[<>:"|?*]', "_", name)
    name = name.strip(" .")
    if not name:
        return fallback
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    if stem.lower() in _RESERVED or name.lower() in _RESERVED:
        stem = "_" + stem
    if len(ext) > 16:
        stem, ext = name, ""
    stem = stem[: _MAX_DOWNLOAD_CHARS - len(ext) - 1].rstrip(" .") or "_"
    return f"{stem}.{ext}" if ext else stem


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
