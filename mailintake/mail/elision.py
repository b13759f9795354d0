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
_B64_LINE = re.compile(rb"[A-Za-z0-9+/]{40,}={0,2}\r?\n")


class Elided:
    """The runs taken out of one file (``fh``, open while the mail is decoded)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.token = f"\x00elided-{secrets.token_hex(8)}:"
        self._placeholder = re.compile(re.escape(self.token) + r"(\d+):(\d+)(\r?\n)?")
        self.count = 0

    def feed(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """``chunks`` (the file from its start) with each long base64 run
        replaced by its placeholder line."""
        offset = run_start = run_length = 0
        run: list[bytes] = []
        carry = b""
        for chunk in chunks:
            lines = (carry + chunk).splitlines(keepends=True)
            carry = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
            out: list[bytes] = []
            for line in lines:
                if _B64_LINE.fullmatch(line):
                    if not run_length:
                        run_start = offset
                    run_length += len(line)
                    if run_length < ELIDE_AT:
                        run.append(line)
                    else:
                        run.clear()
                elif run_length:
                    out.append(self._end_run(run, run_start, run_length))
                    run, run_length = [], 0
                    out.append(line)
                else:
                    out.append(line)
                offset += len(line)
            yield b"".join(out)
        if run_length:
            yield self._end_run(run, run_start, run_length)
        yield carry

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
