"""A leaf part's bytes into the blob store: decoded in pieces when large,
from the file itself when the parser never saw them (:mod:`.elision`)."""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Iterator
from email.message import Message as EmailMessage

from ..blobs import BlobStore
from .elision import Elided
from .parsed import ParsedMessage

_STREAM_THRESHOLD = 1 << 20
_B64_CHUNK = 1 << 20


def streamed(ctype: str) -> bool:
    """Whether a part of this type is only stored, never read as text (so a
    long base64 body may stay in the file, see :mod:`.elision`)."""
    return ctype.split("/", 1)[0] not in ("text", "message", "multipart") and ctype not in (
        "application/pkcs7-mime",
        "application/x-pkcs7-mime",
    )


def store_payload(
    part: EmailMessage, blobs: BlobStore, out: ParsedMessage, elided: Elided | None = None
) -> tuple[str, int]:
    """Store a leaf part's decoded bytes; large base64 parts are decoded in
    chunks so that the decoded copy is never held whole in memory (read
    from the file when the parser never saw them)."""
    encoded = part.get_payload()
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if elided is not None and (held := elided.held(part)) is not None:
        if cte == "base64":
            return blobs.put_stream(_base64_chunks(elided.pieces(held), out))
        elided.restore(part)  # base64-looking lines that are not base64: as they are
        encoded = part.get_payload()
    if isinstance(encoded, str) and cte == "base64" and len(encoded) > _STREAM_THRESHOLD:
        part.set_payload("")  # the encoded text is not needed any more: free it
        return blobs.put_stream(_base64_chunks([encoded], out))
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = b""
    return blobs.put_bytes(payload), len(payload)


def _base64_chunks(pieces: Iterable[str], out: ParsedMessage) -> Iterator[bytes]:
    carry = ""
    for encoded in pieces:
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
