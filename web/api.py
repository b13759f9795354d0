"""JSON API v1 for the document system and tooling (bearer-token auth).

Each operation needs a scope of the token (``messages:read``,
``registrations:read``, ``registrations:ack``); a token limited to some
sections sees only their mail and registrations. The OpenAPI document of
these routes is :mod:`.openapi`; a test keeps the two the same.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import jpdates
from ..errors import BadRequest, NotFound
from ..handoff import catalogue, feed, package
from ..handoff.records import registration_record
from ..models import MAX_ROW_ID
from ..people.tokens import TokenInfo
from ..people.visibility import Scope
from ..records.inbox import InboxFilter, InboxRow
from ..records.messages import MAX_PAGE as MESSAGES_MAX
from ..records.messages import STATUSES
from ..services import Services
from . import downloads, openapi
from .downloads import content_disposition


def _path_id(request: Request, name: str) -> int:
    try:
        value = int(request.path_params[name])
    except (KeyError, ValueError) as exc:
        raise BadRequest(f"{name} must be an integer") from exc
    if value < 1:
        raise BadRequest(f"{name} must be positive")
    if value > MAX_ROW_ID:  # beyond any row; PostgreSQL would refuse the number itself
        raise NotFound(f"no such {name.removesuffix('_id')}")
    return value


def _int_param(params: Any, name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise BadRequest(f"{name} must be an integer") from exc


class Api:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.engine = services.engine

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/openapi.json", self.openapi_document),
            Route("/api/v1/schemas/registration-package.json", self.package_schema),
            Route("/api/v1/messages", self.list_messages),
            Route("/api/v1/messages/{message_id}", self.get_message),
            Route("/api/v1/messages/{message_id}/raw", self.get_raw),
            Route("/api/v1/attachments/{attachment_id}", self.get_attachment),
            Route("/api/v1/registrations", self.list_registrations),
            Route("/api/v1/registrations.csv", self.registrations_csv),
            Route("/api/v1/registrations/{registration_id}", self.get_registration),
            Route("/api/v1/registrations/{registration_id}/package", self.get_package),
            Route("/api/v1/registrations/{registration_id}/ack", self.ack, methods=["POST"]),
        ]

    def _token(self, request: Request, scope: str) -> TokenInfo:
        token = self.services.tokens.authenticate(request.headers.get("authorization"))
        token.require(scope)
        return token

    # Sync endpoints: Starlette runs them in its thread pool, so database
    # work never blocks the event loop.
    def openapi_document(self, request: Request) -> Response:
        return JSONResponse(openapi.document())

    def package_schema(self, request: Request) -> Response:
        return JSONResponse(package.schema(), media_type="application/schema+json")

    # -- messages ------------------------------------------------------------------

    def list_messages(self, request: Request) -> Response:
        token = self._token(request, "messages:read")
        page = self.services.inbox.page(Scope(token.section_ids), _message_filter(request.query_params))
        return JSONResponse({"items": [_summary(row) for row in page.rows], "next_cursor": page.next_cursor})

    def get_message(self, request: Request) -> Response:
        token = self._token(request, "messages:read")
        detail: dict[str, Any] = self.services.messages.detail(_path_id(request, "message_id"), token.section_ids)
        return JSONResponse(detail)

    def get_raw(self, request: Request) -> Response:
        token = self._token(request, "messages:read")
        message_id = _path_id(request, "message_id")
        sha, size = self.services.messages.raw_ref(message_id, token.section_ids)
        return downloads.original(self.services.originals, sha, size, f"message-{message_id}.eml")

    def get_attachment(self, request: Request) -> Response:
        token = self._token(request, "messages:read")
        attachment = self.services.messages.attachment(_path_id(request, "attachment_id"), token.section_ids)
        return downloads.attachment(self.services.blobs, attachment)

    # -- registrations (the hand-off) ------------------------------------------------

    def list_registrations(self, request: Request) -> Response:
        token = self._token(request, "registrations:read")
        page = feed.read(
            self.engine,
            request.query_params.get("after"),
            _int_param(request.query_params, "limit", 100),
            token.section_ids,
        )
        return JSONResponse(page.as_json())

    def registrations_csv(self, request: Request) -> Response:
        token = self._token(request, "registrations:read")
        year = _int_param(
            request.query_params, "fiscal_year", jpdates.fiscal_year(jpdates.jst_date(dt.datetime.now(dt.UTC)))
        )
        if not 1989 <= year <= 9999:
            raise BadRequest("fiscal_year must be a year such as 2026")
        encoding = request.query_params.get("encoding") or "utf-8"
        body = catalogue.catalogue_csv(self.engine, year, encoding, token.section_ids)
        return Response(
            body,
            media_type=f"text/csv; charset={'shift_jis' if encoding == 'cp932' else 'utf-8'}",
            headers={"Content-Disposition": content_disposition(f"目録_{year}.csv", f"catalogue-{year}.csv")},
        )

    def get_registration(self, request: Request) -> Response:
        token = self._token(request, "registrations:read")
        record = registration_record(self.engine, _path_id(request, "registration_id"), token.section_ids)
        return JSONResponse(record)

    def get_package(self, request: Request) -> Response:
        token = self._token(request, "registrations:read")
        built = package.build(
            self.engine,
            self.services.blobs,
            self.services.originals,
            _path_id(request, "registration_id"),
            token.section_ids,
        )
        return StreamingResponse(
            iterate_in_threadpool(built.chunks()),
            media_type="application/zip",
            headers={"Content-Disposition": content_disposition(built.filename, "registration.zip")},
        )

    async def ack(self, request: Request) -> Response:
        body = await request.body()
        response: Response = await run_in_threadpool(self._ack, request, body)
        return response

    def _ack(self, request: Request, body: bytes) -> Response:
        token = self._token(request, "registrations:ack")
        event_id = _event_id(body)
        state = feed.ack(self.engine, _path_id(request, "registration_id"), token.name, event_id, token.section_ids)
        return JSONResponse(state)


def _message_filter(params: Any) -> InboxFilter:
    """The API's list parameters: the clerks' listing, with any status by
    default, its address by text and pages of 1 to 200."""
    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
    limit = _int_param(params, "limit", 50)
    if not 1 <= limit <= MESSAGES_MAX:
        raise BadRequest(f"limit must be between 1 and {MESSAGES_MAX}")
    q = (params.get("q") or "").strip()
    if len(q) > 200:
        raise BadRequest("q is longer than 200 characters")
    return InboxFilter(
        status=status,
        address=params.get("address") or None,
        q=q,
        cursor=params.get("cursor") or None,
        limit=limit,
    )


def _summary(row: InboxRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "address": row.address,
        "received_at": row.received_at.isoformat(),
        "from": {"name": row.from_name, "address": row.from_address},
        "subject": row.subject,
        "attachment_count": int(row.attachment_count),
        "status": row.status,
    }


def _event_id(body: bytes) -> int | None:
    """The optional ``{"event_id": N}`` of an acknowledgement."""
    if not body.strip():
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("the body must be JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    event_id = data.get("event_id")
    if event_id is None:
        return None
    if not isinstance(event_id, int) or isinstance(event_id, bool) or not 1 <= event_id < 2**63:
        raise BadRequest("event_id must be a positive integer")
    return event_id
