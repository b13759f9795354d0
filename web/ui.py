"""The clerks' web UI: sign-in, 受信一覧, メール詳細, 収受登録, 収受簿 and the
administrators' pages. Server-rendered, in Japanese, usable without script.

Every page goes through :func:`page`, which resolves the session, checks
the role, and on POST checks the CSRF token before the handler runs.
Handlers are sync functions: Starlette runs them in its thread pool, so
database work never blocks the event loop.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import secrets
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from .. import jpdates
from ..errors import Forbidden, NotFound, TooManyAttempts
from ..mail import delivery_route
from ..mail import html as html_view
from ..mail.filenames import display_name
from ..people.sessions import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    ActiveSession,
    LoginThrottle,
    PasswordChecks,
    tokens_match,
)
from ..records.inbox import COUNT_CAP, PAGE_SIZES, InboxFilter
from ..services import Services
from ..texts import NOTICES
from . import downloads
from .downloads import safe_content_type
from .labels import install_filters
from .pages import Handler, client_address, field, form_text, page, path_int, safe_list_url, safe_next, session_of


def login_links(services: Services, next_url: str) -> list[tuple[str, str]]:
    """The single sign-on buttons of the login page, each returning to ``next_url``."""
    target = quote(next_url, safe="/")
    links = []
    if services.sso.saml is not None:
        links.append((f"/sso/saml/login?next={target}", "組織の認証基盤でログイン（SAML）"))
    if services.sso.oidc is not None:
        links.append((f"/sso/oidc/login?next={target}", "組織の認証基盤でログイン（OpenID Connect）"))
    return links


class WebUI:
    def __init__(self, services: Services, templates: Jinja2Templates) -> None:
        self.services = services
        self.templates = templates
        self.throttle = LoginThrottle(services.engine)
        self.password_checks = PasswordChecks()
        install_filters(templates)
        templates.env.globals["insecure_handoff"] = services.sso.insecure

    def routes(self) -> list[Route]:
        s = self.services

        def get(path: str, handler: Handler, role: str | None = None, embeddable: bool = False) -> Route:
            return Route(path, page(s, role=role, embeddable=embeddable)(handler), methods=["GET"])

        def post(path: str, handler: Handler, role: str | None = None) -> Route:
            return Route(path, page(s, role=role)(handler), methods=["POST"])

        return [
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            get("/messages", self.message_list),
            get("/messages/{message_id:id}", self.message_detail),
            get("/messages/{message_id:id}/pane", self.message_pane),  # the list's reading pane
            get("/messages/{message_id:id}/body.html", self.message_html, embeddable=True),  # the body's iframe
            get("/messages/{message_id:id}/source", self.message_source),
            get("/messages/{message_id:id}/original.eml", self.message_original),
            get("/messages/{message_id:id}/attachments/{attachment_id:id}", self.attachment_download),
            get(
                "/messages/{message_id:id}/attachments/{attachment_id:id}/preview",
                self.attachment_preview,
                embeddable=True,  # inline images of the body, the PDF frame
            ),
            post("/messages/{message_id:id}/dismiss", self.dismiss),
            post("/messages/{message_id:id}/undismiss", self.undismiss),
        ]

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        session: ActiveSession | None = getattr(request.state, "session", None)
        context.setdefault("notice", NOTICES.get(request.query_params.get("notice", "")))
        context.setdefault("typed", FormData())  # an add form's values after an error
        return self.templates.TemplateResponse(
            request,
            template,
            {
                "user": session.user if session else None,
                "csrf_token": session.csrf_token if session else "",
                **context,
            },
            status_code=status_code,
        )

    # -- sign-in -------------------------------------------------------------------

    def login_form(self, request: Request, error: str | None = None, status_code: int = 200) -> Response:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        next_url = safe_next(request.query_params.get("next"))
        response = self.render(
            request,
            "login.html",
            status_code=status_code,
            login_token=token,
            next=next_url,
            error=error,
            sso_links=login_links(self.services, next_url),
            password_signin=self.services.settings.password_signin,
        )
        response.set_cookie(
            LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        username = (form_text(form, "username") or "").strip()
        password = form_text(form, "password") or ""
        client = client_address(request)
        if not self.services.settings.password_signin:
            raise Forbidden("パスワードでのログインは使えません。組織の認証基盤からログインしてください。")
        if not tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE, ""), form_text(form, CSRF_FIELD)):
            raise Forbidden("フォームの有効期限が切れました。ページを開き直してからログインしてください。")
        wait = self.throttle.admit(username, client)
        if wait > 0:
            raise TooManyAttempts(
                "ログインの失敗が続いたため、このユーザーIDはしばらく受け付けません。"
                f"約{math.ceil(wait / 60)}分後にお試しいただくか、システム管理者に停止の解除を依頼してください。",
                wait,
            )
        try:
            async with self.password_checks.slot():
                user = await run_in_threadpool(self.services.accounts.authenticate, username, password)
        except TooManyAttempts:
            self.throttle.withdraw(username, client)
            raise
        if user is None:
            await run_in_threadpool(
                self.services.audit.record, None, "login_failed", username=username, client_address=client
            )
            return self.login_form(request, "ユーザーIDまたはパスワードが違います。", status_code=401)
        self.throttle.succeeded(username, client)
        token = await run_in_threadpool(self.services.sessions.start, user, method="password", client_address=client)
        await run_in_threadpool(self.services.audit.record, user, "login", client_address=client)
        response = RedirectResponse(safe_next(form_text(form, "next")), status_code=303)
        self.set_session_cookie(request, response, token)
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    def set_session_cookie(self, request: Request, response: Response, token: str) -> None:
        """The one place a session cookie is issued (password and single sign-on)."""
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(self.services.settings.session_hours * 3600),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )

    # -- 受信一覧 ---------------------------------------------------------------------

    def message_list(self, request: Request) -> Response:
        user = session_of(request).user
        wanted, errors = InboxFilter.from_params(request.query_params)
        list_url = "/messages?" + urlencode(
            [(k, v) for k, v in request.query_params.multi_items() if k not in ("open", "notice")]
        )
        pane = self._opened(request, list_url)  # first: opening marks it read in the list too
        result, counts = self.services.inbox.page_with_counts(user, wanted)
        found = min(counts.of(wanted.status), COUNT_CAP) if wanted.q else None
        params = {k: v for k, v in request.query_params.items() if k not in ("cursor", "open", "notice")}
        today = dt.datetime.now(jpdates.JST).date()
        return self.render(
            request,
            "messages.html",
            page=result,
            filter=wanted,
            addresses=self.services.inbox.addresses(user),
            page_sizes=PAGE_SIZES,
            next_url=("/messages?" + urlencode({**params, "cursor": result.next_cursor}))
            if result.next_cursor
            else None,
            first_url=("/messages?" + urlencode(params)) if wanted.cursor else None,
            today=today,
            errors=errors,
            found=found,
            list_url=list_url,
            pane=pane,
            counts=counts,
            quick=self._quick_filters(user, wanted, params, today),
            count_cap=COUNT_CAP,
            all_statuses_url="/messages?" + urlencode({**params, "status": "all"}),
            all_dates_url="/messages?" + urlencode({k: v for k, v in params.items() if k not in ("from", "to")}),
        )

    def _quick_filters(
        self, user: Any, wanted: InboxFilter, params: dict[str, str], today: dt.date
    ) -> list[tuple[str, str, bool, int | None]]:
        """今日, 昨日, 今週 (Monday to today, Japan time) as (label, url,
        chosen, count), keeping every other filter; counted when no search
        words are given (a search counts its own matches)."""
        ranges = {
            "今日": (today, today),
            "昨日": (today - dt.timedelta(days=1), today - dt.timedelta(days=1)),
            "今週": (today - dt.timedelta(days=today.weekday()), today),
        }
        out = []
        for label, (start, end) in ranges.items():
            url = "/messages?" + urlencode({**params, "from": start.isoformat(), "to": end.isoformat()})
            chosen = params.get("from") == start.isoformat() and params.get("to") == end.isoformat()
            count = (
                None
                if wanted.q
                else self.services.inbox.count_of(user, dataclasses.replace(wanted, date_from=start, date_to=end))
            )
            out.append((label, url, chosen, count))
        return out

    def _opened(self, request: Request, list_url: str) -> dict[str, Any] | None:
        """The mail named by ``open=`` for the reading pane (the list without
        script: after 対象外 the next mail opens there)."""
        try:
            message_id = int(request.query_params.get("open", ""))
        except ValueError:
            return None
        try:
            return self._mail(request, message_id, list_url)
        except NotFound:
            return None

    # -- メール詳細 -------------------------------------------------------------------

    def message_detail(self, request: Request) -> Response:
        back = safe_list_url(request.query_params.get("back"))
        mail = self._mail(request, path_int(request, "message_id"), back)
        # The full page offers the next 未処理 mail; in the list, the pane's next row is it.
        mail["next_new"] = self.services.inbox.next_new(session_of(request).user, mail["message"])
        return self.render(request, "message.html", **mail)

    def message_pane(self, request: Request) -> Response:
        """The reading pane's content, fetched by the list's script."""
        back = safe_list_url(request.query_params.get("back"))
        response = self.render(request, "_pane.html", **self._mail(request, path_int(request, "message_id"), back))
        response.headers["Cache-Control"] = "no-store"
        return response

    def _mail(self, request: Request, message_id: int, back: str) -> dict[str, Any]:
        """What the mail's page and the reading pane show (opening it marks it read)."""
        user = session_of(request).user
        message = self.services.inbox.message(user, message_id)
        remote = request.query_params.get("remote") == "1"
        safe = (
            html_view.sanitize(message.html_body, message.id, message.attachments)
            if message.html_body is not None
            else None
        )
        return dict(
            message=message,
            safe_html=safe,
            allow_remote=remote,
            registrations=self.services.registry.for_message(user, message.id),
            preview_types=html_view.PREVIEW_TYPES,
            route=self._delivery_route(message),
            back=back,
            next_new=None,
        )

    def _delivery_route(self, message: Any) -> list[delivery_route.Hop]:
        size = min(int(message.raw_size), delivery_route.MAX_HEADER_BYTES)
        try:
            head = delivery_route.header_block(self.services.originals.chunks(message.raw_sha256, size))
        except OSError:  # the original is missing: the page still shows the mail
            return []
        return delivery_route.hops(head)

    def message_html(self, request: Request) -> Response:
        user = session_of(request).user
        message = self.services.inbox.message(user, path_int(request, "message_id"), mark_read=False)
        if message.html_body is None:
            raise NotFound("HTML本文はありません")
        safe = html_view.sanitize(message.html_body, message.id, message.attachments)
        allow_remote = request.query_params.get("remote") == "1"
        return HTMLResponse(
            html_view.document(safe),
            headers={
                "Content-Security-Policy": html_view.content_security_policy(
                    allow_remote, origin=f"{request.url.scheme}://{request.url.netloc}", safe=safe
                ),
                "X-Frame-Options": "SAMEORIGIN",
                "Cache-Control": "no-store",
            },
        )

    def message_source(self, request: Request) -> Response:
        user = session_of(request).user
        message = self.services.inbox.message(user, path_int(request, "message_id"), mark_read=False)
        sha, size = message.raw_sha256, int(message.raw_size)
        limit = 2 * 1024 * 1024
        data = b"".join(self.services.originals.chunks(sha, min(size, limit)))
        self._audit(request, "view_source", message)
        return self.render(
            request,
            "source.html",
            message=message,
            source=data.decode("utf-8", errors="replace"),
            truncated=size > limit,
        )

    def message_original(self, request: Request) -> Response:
        user = session_of(request).user
        message = self.services.inbox.message(user, path_int(request, "message_id"), mark_read=False)
        self._audit(request, "download_original", message)
        return downloads.original(
            self.services.originals, message.raw_sha256, int(message.raw_size), f"mail-{message.id}.eml"
        )

    def attachment_download(self, request: Request) -> Response:
        user = session_of(request).user
        message_id = path_int(request, "message_id")
        attachment = self.services.inbox.attachment(user, message_id, path_int(request, "attachment_id"))
        self._audit(request, "download_attachment", attachment.message, display_name(attachment.filename))
        return downloads.attachment(self.services.blobs, attachment)

    def attachment_preview(self, request: Request) -> Response:
        """Images and PDF only, shown inline; never HTML or SVG, which could
        carry script."""
        user = session_of(request).user
        message_id = path_int(request, "message_id")
        attachment = self.services.inbox.attachment(user, message_id, path_int(request, "attachment_id"))
        content_type = safe_content_type(attachment.content_type)
        if content_type not in html_view.PREVIEW_TYPES:
            raise NotFound("この形式はプレビューできません。ダウンロードしてください。")
        if content_type not in html_view.INLINE_IMAGE_TYPES:
            # A PDF opened to read is as much a look at the document as a
            # download; the body's inline images are not (they come with it).
            self._audit(request, "preview_attachment", attachment.message, display_name(attachment.filename))
        return downloads.attachment(self.services.blobs, attachment, preview=True)

    def _audit(self, request: Request, action: str, message: Any, detail: str = "") -> None:
        self.services.audit.record(
            session_of(request).user,
            action,
            message_id=message.id,
            section_id=message.address.section_id,
            detail=detail,
            client_address=client_address(request),
        )

    # -- 対象外 ------------------------------------------------------------------------

    def dismiss(self, request: Request) -> Response:
        message_id = path_int(request, "message_id")
        user = session_of(request).user
        self.services.registry.dismiss(user, message_id, field(request, "reason"), client_address(request))
        back = field(request, "back")
        if back:  # from the reading pane: back to the list, the next new mail open
            url = safe_list_url(back)
            following = self.services.inbox.next_new(
                user, self.services.inbox.message(user, message_id, mark_read=False)
            )
            extra = {"notice": "dismissed", **({"open": str(following.id)} if following else {})}
            return RedirectResponse(url + ("&" if "?" in url else "?") + urlencode(extra), status_code=303)
        return RedirectResponse(f"/messages/{message_id}?notice=dismissed", status_code=303)

    def undismiss(self, request: Request) -> Response:
        message_id = path_int(request, "message_id")
        self.services.registry.undismiss(session_of(request).user, message_id, client_address(request))
        return RedirectResponse(f"/messages/{message_id}?notice=undismissed", status_code=303)

    # -- 収受登録 ---------------------------------------------------------------------


class PageSet:
    """A group of pages beside the clerks' (administration, registration,
    sign-in): the same services, the same rendering."""

    def __init__(self, ui: WebUI) -> None:
        self.ui = ui
        self.services = ui.services
        self.render = ui.render
