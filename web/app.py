"""The ASGI application: JSON API, health check and web pages."""

from __future__ import annotations

import logging
from typing import Any

import jinja2
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import address_in
from ..db import database_reachable
from ..errors import MailintakeError, TooManyAttempts
from ..models import MAX_ROW_ID
from ..operations.metrics import render as render_metrics
from ..people.sessions import SESSION_COOKIE, ActiveSession
from ..records import search
from ..services import Services
from . import STATIC_DIR, TEMPLATE_DIR
from .admin_ui import AdminUI
from .api import Api
from .pages import page
from .registration_pages import RegistrationPages
from .signin_pages import SignInPages
from .ui import WebUI

log = logging.getLogger(__name__)

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; frame-src 'self'; connect-src 'self'; "
        b"form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
]


# Pages and files here are one person's view of personal data: no browser
# or proxy cache may keep them. Static files are the exception.
NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    """Adds the security headers to every HTTP response, the last-resort
    500 page included (it wraps Starlette's ServerErrorMiddleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                if b"cache-control" not in present and not scope["path"].startswith("/static/"):
                    extra.append(NO_STORE)
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


def health(services: Services) -> dict[str, Any]:
    backlog = services.spool.backlog()
    return {
        "database": database_reachable(services.engine),
        "spool_writable": services.spool.writable(),
        "backlog": backlog,
        "search_index": _search_index(services),
    }


def _search_index(services: Services) -> str:
    """fts5 (SQLite), gin+time (PostgreSQL, newest mail searched first) or gin."""
    try:
        with services.engine.connect() as conn:
            return search.index_kind(conn)
    except SQLAlchemyError:
        return "unknown"


def create_app(services: Services) -> Starlette:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True, undefined=jinja2.StrictUndefined
    )
    templates = Jinja2Templates(env=environment)
    ui = WebUI(services, templates)
    site = _Site(services, ui)
    errors = _Errors(templates)
    routes = [
        Route("/", site.index),
        # System administrators only, with the menu: it names the database and backlog.
        Route("/status", page(services, role="system_admin")(site.status_page), methods=["GET"]),
        Route("/healthz", site.healthz),
        Route("/metrics", site.metrics),
        *Api(services).routes(),
        *ui.routes(),
        *RegistrationPages(ui).routes(),
        *SignInPages(ui).routes(),
        *AdminUI(ui).routes(),
        Mount("/static", app=StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]
    return _App(
        routes=routes,
        exception_handlers={
            MailintakeError: errors.mailintake_error,
            HTTPException: errors.http_error,
            SQLAlchemyError: errors.database_error,
        },
    )


class _Site:
    """The pages outside the clerks' and administrators' sets: the root,
    health, metrics and the status page."""

    def __init__(self, services: Services, ui: WebUI) -> None:
        self.services = services
        self.ui = ui

    def healthz(self, request: Request) -> Response:
        state = health(self.services)
        ok = state["database"] and state["spool_writable"]
        return JSONResponse(dict(state, status="ok" if ok else "degraded"), status_code=200 if ok else 503)

    def metrics(self, request: Request) -> Response:
        settings = self.services.settings
        if not _client_in(request, settings.metrics_allow):
            return JSONResponse({"error": "not allowed (metrics_allow)"}, status_code=403)
        body = render_metrics(
            settings.data_dir, self.services.spool.backlog, self.services.engine, settings.handoff_ack_warn_hours
        )
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def index(self, request: Request) -> Response:
        return RedirectResponse("/messages" if request.cookies.get(SESSION_COOKIE) else "/login", status_code=303)

    def status_page(self, request: Request) -> Response:
        state = health(self.services)
        try:
            count = self.services.messages.count() if state["database"] else None
        except SQLAlchemyError:
            count = None
        return self.ui.render(request, "index.html", health=state, message_count=count)


class _Errors:
    """Errors mapped once for the whole edge: JSON for the API, health and
    metrics; a page in Japanese for people."""

    def __init__(self, templates: Jinja2Templates) -> None:
        self.templates = templates

    def page(self, request: Request, exc: MailintakeError) -> Response:
        """The error page people read, in the session's frame when there is one."""
        session: ActiveSession | None = getattr(request.state, "session", None)
        headers = {"Retry-After": str(int(exc.retry_after) + 1)} if isinstance(exc, TooManyAttempts) else {}
        return self.templates.TemplateResponse(
            request,
            "error.html",
            {
                "user": session.user if session else None,
                "csrf_token": session.csrf_token if session else "",
                "message": str(exc) if exc.http_status != 404 else "お探しのページまたはメールは見つかりません。",
                "status": exc.http_status,
                "notice": None,
            },
            status_code=exc.http_status,
            headers=headers,
        )

    @staticmethod
    def wants_json(request: Request) -> bool:
        return request.url.path.startswith(("/api/", "/healthz", "/metrics"))

    async def mailintake_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MailintakeError)
        if self.wants_json(request):
            return JSONResponse({"error": str(exc)}, status_code=exc.http_status)
        return self.page(request, exc)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if self.wants_json(request):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        message = "お探しのページは見つかりません。" if exc.status_code == 404 else str(exc.detail)
        return self.page(request, _HttpError(message, exc.status_code))

    async def database_error(self, request: Request, exc: Exception) -> Response:
        log.error("database error on %s %s: %s", request.method, request.url.path, exc)
        if self.wants_json(request):
            return JSONResponse({"error": "database unavailable"}, status_code=503)
        return self.page(request, _HttpError("データベースに接続できません。しばらく後にお試しください。", 503))


class _App(Starlette):
    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


class _RowId(Convertor[int]):
    """Database ids in paths: a number too large for any row is no route
    (404), not a database error."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        number = int(value)
        return number if number <= MAX_ROW_ID else 0  # 0 is no row: the page answers 404

    def to_string(self, value: int) -> str:
        return str(value)


# `{message_id:id}` in the routes of the web UI and the API.
register_url_convertor("id", _RowId())


def _client_in(request: Request, networks: tuple[Any, ...]) -> bool:
    return address_in(request.client.host if request.client else "", networks)


class _HttpError(MailintakeError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.http_status = status
