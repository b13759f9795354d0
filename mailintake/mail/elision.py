"""Large base64 bodies stay in the file while the parser reads the mail.

The standard parser keeps every body line of a part as a string and then
joins them: a 30 MB attachment costs it about 80 MB. Here a run of base64
lines longer than :data:`ELIDE_AT` is fed to the parser as one line naming
where the run stands in the file (behind a token drawn for this parse, so a
mail cannot forge one); an attachment's bytes are then decoded straight
from the file in pieces, and any other part that holds such a line gets its
text back before it is read.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from email.message import Message as EmailMessage
from typing import BinaryIO

ELIDE_AT = 256 * 1024
_PIECE = 1 << 20
_B64_LINE = rb"[A-Za-z0-9+/]{40,}={0,2}\r?\n"
_RUN = re.compile(rb"(?:" + _B64_LINE + rb")+")
# Where a run worth looking at starts: sixteen such lines. Searched for
# after a line break (a literal the engine finds fast), or at the start.
_RUN_HEAD = re.compile(rb"(?:" + _B64_LINE + rb"){16}")
_RUN_START = re.compile(rb"\n(?:" + _B64_LINE + rb"){16}")


class Elided:
    """The runs taken out of one file (``fh``, open while the mail is decoded)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.token = f"\x00elided-{secrets.token_hex(8)}:"
        self._placeholder = re.compile(re.escape(self.token) + r"(\d+):(\d+)(\r?\n)?")
        self.count = 0

    def feed(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """``chunks`` (the file from its start) with each long base64 run
        replaced by its placeholder line. Runs are found by regular
        expressions over whole chunks, not line by line: ordinary text
        passes at the speed of a search."""
        offset = 0  # the file offset of buffer[0]
        buffer = b""
        in_run, run_start, run_length = False, 0, 0
        run: list[bytes] = []
        for chunk in chunks:
            buffer += chunk
            end = buffer.rfind(b"\n") + 1  # complete lines only
            out: list[bytes] = []
            pos = 0
            while pos < end:
                if not in_run:
                    found = _run_start(buffer, pos, end)
                    if found is None:
                        out.append(buffer[pos:end])
                        pos = end
                        break
                    out.append(buffer[pos:found])
                    in_run, run_start, run_length, pos = True, offset + found, 0, found
                lines = _RUN.match(buffer, pos, end)
                if lines is not None:
                    if run_length < ELIDE_AT:
                        run.append(buffer[pos : lines.end()])
                    run_length += lines.end() - pos
                    pos = lines.end()
                    if pos == end:
                        break  # the run may go on in the next chunk
                out.append(self._end_run(run, run_start, run_length))
                in_run, run, run_length = False, [], 0
            yield b"".join(out)
            offset += end
            buffer = buffer[end:]
        if in_run:
            yield self._end_run(run, run_start, run_length)
        yield buffer

    def _end_run(self, run: list[bytes], start: int, length: int) -> bytes:
        if length < ELIDE_AT:
            return b"".join(run)
        self.count += 1
        return f"{self.token}{start}:{length}\r\n".encode("ascii")

    def held(self, part: EmailMessage) -> str | None:
        """The part's payload if it holds placeholders, else None."""
        payload = part.get_payload()
        return payload if self.count and isinstance(payload, str) and self.token in payload else None

    def pieces(self, text: str) -> Iterator[str]:
        """``text`` (a payload) with its placeholders read back from the
        file, in pieces of at most about 1 MiB."""
        position = 0
        for found in self._placeholder.finditer(text):
            yield text[position : found.start()]
            start, length = int(found.group(1)), int(found.group(2))
            yield from self._read(start, length, keep_last_newline=found.group(3) is not None)
            position = found.end()
        yield text[position:]

    def restore(self, part: EmailMessage) -> None:
        """Give a part its whole text back (a part read as text, not streamed)."""
        text = self.held(part)
        if text is not None:
            part.set_payload("".join(self.pieces(text)))

    def restore_all(self, message: EmailMessage) -> None:
        """Every part's text back, before a message is written out again."""
        if self.count:
            for part in message.walk():
                self.restore(part)

    def _read(self, start: int, length: int, keep_last_newline: bool) -> Iterator[str]:
        self.fh.seek(start)
        left = length
        while left > 0:
            data = self.fh.read(min(_PIECE, left))
            if not data:
                return
            left -= len(data)
            if left == 0 and not keep_last_newline:
                # The parser gave the line break before a delimiter to the
                # delimiter; so does the text put back.
                data = data.rstrip(b"\r\n")
            yield data.decode("ascii", "surrogateescape")


def _run_start(buffer: bytes, pos: int, end: int) -> int | None:
    """Where the next run starts at or after ``pos`` (a line start)."""
    if _RUN_HEAD.match(buffer, pos, end):
        return pos
    found = _RUN_START.search(buffer, pos, end)
    return found.start() + 1 if found else None
