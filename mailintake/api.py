"""JSON API v1 for the document system and tooling (bearer-token auth)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .blobs import BlobStore, OriginalStore
from .errors import BadRequest, NotFound
from .filenames import download_name
from .messages import MessageQuery, MessageStore
from .tokens import TokenService

_SAFE_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


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


def _path_id(request: Request, name: str) -> int:
    try:
        value = int(request.path_params[name])
    except (KeyError, ValueError) as exc:
        raise BadRequest(f"{name} must be an integer") from exc
    if value < 1:
        raise BadRequest(f"{name} must be positive")
    if value >= 2**63:  # beyond any row; the database would refuse the number itself
        raise NotFound(f"no such {name.removesuffix('_id')}")
    return value


class Api:
    def __init__(self, store: MessageStore, blobs: BlobStore, originals: OriginalStore, tokens: TokenService) -> None:
        self.store = store
        self.blobs = blobs
        self.originals = originals
        self.tokens = tokens

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/messages", self.list_messages),
            Route("/api/v1/messages/{message_id}", self.get_message),
            Route("/api/v1/messages/{message_id}/raw", self.get_raw),
            Route("/api/v1/attachments/{attachment_id}", self.get_attachment),
        ]

    def _authenticate(self, request: Request) -> str:
        return self.tokens.authenticate(request.headers.get("authorization"))

    # Sync endpoints: Starlette runs them in its thread pool, so database
    # work never blocks the event loop.
    def list_messages(self, request: Request) -> Response:
        self._authenticate(request)
        items, next_cursor = self.store.list(MessageQuery.from_params(request.query_params))
        return JSONResponse({"items": items, "next_cursor": next_cursor})

    def get_message(self, request: Request) -> Response:
        self._authenticate(request)
        detail: dict[str, Any] = self.store.detail(_path_id(request, "message_id"))
        return JSONResponse(detail)

    def get_raw(self, request: Request) -> Response:
        self._authenticate(request)
        message_id = _path_id(request, "message_id")
        sha, size = self.store.raw_ref(message_id)
        return StreamingResponse(
            iterate_in_threadpool(self.originals.chunks(sha, size)),
            media_type="message/rfc822",
            headers={
                "Content-Length": str(size),
                "Content-Disposition": content_disposition(f"message-{message_id}.eml", "message.eml"),
            },
        )

    def get_attachment(self, request: Request) -> Response:
        self._authenticate(request)
        attachment = self.store.attachment(_path_id(request, "attachment_id"))
        return FileResponse(
            self.blobs.path_for(attachment.sha256),
            media_type=safe_content_type(attachment.content_type),
            headers={
                "Content-Disposition": content_disposition(attachment.filename, f"attachment-{attachment.id}.bin")
            },
        )
