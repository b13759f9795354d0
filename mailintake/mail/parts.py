"""The MIME tree: bodies, attachments (stored by hash, streamed), forwarded
mail kept byte for byte, winmail.dat opened, reports read, and the names of
attachments as the sender wrote them."""

from __future__ import annotations

import mmap
import re
from email import policy
from email.message import Message as EmailMessage
from typing import Any

from ..blobs import BlobStore
from . import charsets
from .elision import Elided
from .filenames import attachment_filename, display_name
from .headers import _header, _single_line
from .parsed import MAX_DEPTH, MAX_PARTS, ParsedAttachment, ParsedMessage
from .payloads import store_payload, streamed
from .text import unflow


def _body_start(raw: bytes | mmap.mmap, start: int, end: int) -> int | None:
    """Where the body begins after the header block that starts at ``start``
    (just past its blank line), or None if there is no blank line."""
    if raw[start : start + 2] == b"\r\n":
        return start + 2
    if raw[start : start + 1] == b"\n":
        return start + 1
    found = [i + n for i, n in ((raw.find(b"\n\r\n", start, end), 3), (raw.find(b"\n\n", start, end), 2)) if i >= 0]
    return min(found) if found else None


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
    def __init__(
        self,
        blobs: BlobStore,
        out: ParsedMessage,
        raw_size: int = 0,
        spans: _RawSpans | None = None,
        elided: Elided | None = None,
    ) -> None:
        self.blobs = blobs
        self.out = out
        self.spans = spans
        self.elided = elided
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
        if self.elided is not None and not streamed(ctype):
            self.elided.restore(part)  # read as text: its whole text back
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
        if data is None and isinstance(inner, EmailMessage) and self.elided is not None:
            self.elided.restore_all(inner)
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
        sha256, size = store_payload(part, self.blobs, self.out, self.elided)
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
            if self.elided is not None:
                self.elided.restore_all(inner)  # written out again: every byte back first
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

        if self.elided is not None:
            self.elided.restore(part)
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
