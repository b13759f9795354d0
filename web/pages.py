"""Every page of the web edge goes through :func:`page`: it resolves the
session, checks the role, checks the CSRF token on POST and refuses being
embedded unless allowed, before the handler runs in the thread pool. The
small readers of a request the handlers share live here too."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..errors import Forbidden, NotFound
from ..models import ROLES
from ..people.sessions import CSRF_FIELD, SESSION_COOKIE, ActiveSession, tokens_match
from ..services import Services

Handler = Callable[[Request], Response]


def safe_next(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/messages"


def safe_list_url(value: str | None) -> str:
    """The list the clerk came from (filters, search words, page), or the plain list."""
    url = safe_next(value)
    return url if url.startswith("/messages?") or url == "/messages" else "/messages"


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def session_of(request: Request) -> ActiveSession:
    session: ActiveSession = request.state.session
    return session


# What a browser says it fetches (Sec-Fetch-Dest) when a page is opened or
# script fetches it; anything else (an image, a style sheet, a font…) is a
# resource embedded somewhere, e.g. a CSS url() in a hostile mail, which
# must not download, audit or mark read in the clerk's name.
NAVIGATION_DESTS = frozenset({"document", "empty"})


def page(
    services: Services, *, role: str | None = None, embeddable: bool = False
) -> Callable[[Handler], Callable[[Request], Any]]:
    """Wraps a sync handler: sign-in required, ``role`` or above, CSRF on
    POST, and (unless ``embeddable``) only navigations or fetches."""
    minimum = ROLES.index(role) if role else 0

    def decorate(handler: Handler) -> Callable[[Request], Any]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            dest = request.headers.get("sec-fetch-dest")
            if not embeddable and dest is not None and dest not in NAVIGATION_DESTS:
                raise Forbidden("このページは埋め込んで開くことはできません。")
            token = request.cookies.get(SESSION_COOKIE)
            session = await run_in_threadpool(services.sessions.resolve, token)
            if session is None:
                if request.method != "GET":
                    raise Forbidden("ログインの有効期限が切れました。もう一度ログインしてください。")
                return RedirectResponse("/login?" + urlencode({"next": request.url.path}), status_code=303)
            if ROLES.index(session.user.role) < minimum:
                raise NotFound("このページはありません")
            request.state.session = session
            if request.method == "POST":
                form = await request.form()
                if not tokens_match(session.csrf_token, form_text(form, CSRF_FIELD)):
                    raise Forbidden("フォームの有効期限が切れました。ページを開き直してから操作してください。")
                request.state.form = form
            return await run_in_threadpool(handler, request)

        return endpoint

    return decorate


def form_text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def form_of(request: Request) -> FormData:
    form: FormData = request.state.form
    return form


def field(request: Request, name: str, default: str = "") -> str:
    return form_text(form_of(request), name) or default


def path_int(request: Request, name: str) -> int:
    try:
        return int(request.path_params[name])
    except (KeyError, ValueError) as exc:
        raise NotFound("このページはありません") from exc
