"""Text renditions: format=flowed undone, and HTML read as text for the
list, search and the document system."""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Only ASCII white space is trimmed: U+3000 is the sender's.
_ASCII_SPACE = " \t"


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
