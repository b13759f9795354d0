"""Every file the web edge sends, in one place: the original of a mail, an
attachment (as a download or, for a preview, inline), and the naming rules
(RFC 6266 Content-Disposition, a content type that cannot smuggle script)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from starlette.concurrency import iterate_in_threadpool
from starlette.responses import FileResponse, Response, StreamingResponse

from ..blobs import BlobStore, OriginalStore
from ..mail.filenames import download_name

_SAFE_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
# A preview (image or PDF) under its own document: no script, no plugins but the PDF viewer.
PREVIEW_POLICY = (
    "default-src 'none'; img-src 'self'; object-src 'self'; plugin-types application/pdf; sandbox allow-same-origin"
)


def content_disposition(filename: str, fallback: str, disposition: str = "attachment") -> str:
    """RFC 6266: an ASCII ``filename`` for old clients and ``filename*``
    (``inline`` too: the browser's viewer then shows the file's name)."""
    name = download_name(filename, fallback)
    ascii_name = "".join(ch if 0x20 < ord(ch) < 0x7F and ch not in '"%;\\' else "_" for ch in name)
    if set(ascii_name) <= {"_", "."}:
        ascii_name = fallback
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def safe_content_type(value: str) -> str:
    value = (value or "").strip().lower()
    return value if _SAFE_CONTENT_TYPE.match(value) else "application/octet-stream"


def original(originals: OriginalStore, sha256: str, size: int, filename: str) -> StreamingResponse:
    """A mail's original bytes, streamed."""
    return StreamingResponse(
        iterate_in_threadpool(originals.chunks(sha256, size)),
        media_type="message/rfc822",
        headers={"Content-Length": str(size), "Content-Disposition": content_disposition(filename, "mail.eml")},
    )


def attachment(blobs: BlobStore, row: Any, preview: bool = False) -> Response:
    """An attachment (a row with id, filename, content_type, sha256): always
    a download, or for a preview inline under :data:`PREVIEW_POLICY`."""
    headers = {
        "Content-Disposition": content_disposition(
            row.filename, f"attachment-{row.id}" + ("" if preview else ".bin"), "inline" if preview else "attachment"
        )
    }
    if preview:
        headers["Content-Security-Policy"] = PREVIEW_POLICY
        headers["X-Frame-Options"] = "SAMEORIGIN"
    media_type = safe_content_type(row.content_type)
    path = blobs.local_path(row.sha256)
    if path is not None:  # a file: ranges and sendfile for free
        return FileResponse(path, media_type=media_type, headers=headers)
    headers["Content-Length"] = str(row.size)
    return StreamingResponse(iterate_in_threadpool(blobs.chunks(row.sha256)), media_type=media_type, headers=headers)
