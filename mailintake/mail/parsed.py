"""What decoding produces, and the bounds that keep hostile mail small."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

FEED_CHUNK = 64 * 1024
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


DEFAULT_LIMITS = Limits()

TOO_MANY_PARTS_NOTE = (
    "区切り行が {count} 行あり、パートが多すぎるため本文と添付ファイルは解析していません。"
    "原文（.eml）で確認してください。"
)


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
