"""Attachment names: what clerks see and what a download offers.

A name from a mail is only ever *displayed* or *offered* as a download
name; it never takes part in a path on our side (blobs are stored by hash).
"""

from __future__ import annotations

import re
import unicodedata

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
