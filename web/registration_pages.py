"""The pages of 収受登録: the registration form (one mail or many, with
一括設定), the page that says what was registered or skipped, 訂正, 取消 and
the 収受簿 with its CSV."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .. import jpdates
from ..errors import BadRequest, NotFound
from ..people.accounts import UserInfo
from ..people.sessions import CSRF_FIELD
from ..records.book import book_csv
from ..records.registrations import RECEIPT_METHODS
from ..records.registry import Amendment, RegistrationRequest
from ..records.spreadsheet import ENCODINGS as CSV_ENCODINGS
from .downloads import content_disposition
from .pages import Handler, client_address, field, form_of, form_text, page, path_int, safe_list_url, session_of
from .ui import PageSet


class RegistrationPages(PageSet):
    def routes(self) -> list[Route]:
        s = self.services

        def get(path: str, handler: Handler, role: str | None = None) -> Route:
            return Route(path, page(s, role=role)(handler), methods=["GET"])

        def post(path: str, handler: Handler, role: str | None = None) -> Route:
            return Route(path, page(s, role=role)(handler), methods=["POST"])

        return [
            get("/register", self.register_form),
            post("/register", self.register),
            get("/registered", self.registered),
            post("/registrations/{registration_id:id}/cancel", self.cancel, role="section_admin"),
            get("/registrations/{registration_id:id}/edit", self.amend_form, role="section_admin"),
            post("/registrations/{registration_id:id}/edit", self.amend, role="section_admin"),
            get("/book", self.book),
            get("/book.csv", self.book_export),
        ]

    def _selected_ids(self, values: list[str]) -> list[int]:
        try:
            ids = [int(v) for v in values]
        except ValueError as exc:
            raise BadRequest("メールの指定が正しくありません") from exc
        if not ids:
            raise BadRequest("収受するメールを一覧で選んでから「収受登録」を押してください")
        if len(ids) > 50:
            raise BadRequest("一度に収受登録できるのは50件までです")
        return list(dict.fromkeys(ids))

    def register_form(self, request: Request) -> Response:
        ids = self._selected_ids(request.query_params.getlist("id"))
        return self._register_page(request, ids)

    def _register_page(
        self,
        request: Request,
        ids: list[int],
        values: dict[str, str] | None = None,
        chosen: set[str] | None = None,
        error: str | None = None,
    ) -> Response:
        """The form for ``ids``; after an error, with everything typed kept."""
        user = session_of(request).user
        # Rows as the list showed them (the selection arrives in list order).
        position = {message_id: n for n, message_id in enumerate(ids)}
        messages = sorted(self.services.inbox.messages(user, ids), key=lambda m: position.get(m.id, len(ids)))
        return self.render(
            request,
            "register.html",
            status_code=400 if error else 200,
            messages=messages,
            senders=self.services.registry.sender_guesses([(m.id, m.from_address, m.from_name) for m in messages]),
            receipt_methods=RECEIPT_METHODS,
            classifications=self.services.registry.classification_choices(),
            sections=user.sections if not user.is_system_admin else self.services.accounts.sections(),
            retention_periods=self.services.settings.retention_periods,
            error=error,
            values=values or {},
            # After an error, the attachment boxes as they were ticked ("attachment_<mail>:<id>").
            chosen=chosen,
            back=safe_list_url((values or {}).get("back") or request.query_params.get("back")),
        )

    def register(self, request: Request) -> Response:
        user = session_of(request).user
        form = form_of(request)
        ids = self._selected_ids([v for v in form.getlist("message_id") if isinstance(v, str)])
        try:
            requests = [self._registration_request(form, message_id) for message_id in self._oldest_first(user, ids)]
            created, taken = self.services.registry.register_available(user, requests, client_address(request))
        except BadRequest as exc:
            typed = [(k, v) for k, v in form.multi_items() if isinstance(v, str) and k != CSRF_FIELD]
            chosen = {f"{k}:{v}" for k, v in typed if k.startswith("attachment_")}
            return self._register_page(request, ids, dict(typed), chosen, str(exc))
        query = [("id", r.id) for r in created] + [("taken", t.message_id) for t in taken]
        query.append(("back", safe_list_url(form_text(form, "back"))))
        return RedirectResponse("/registered?" + urlencode(query), status_code=303)

    def _oldest_first(self, user: UserInfo, ids: list[int]) -> list[int]:
        """収受番号 follow the order the mails came in, whatever the rows' order."""
        received = {m.id: (m.received_at, m.id) for m in self.services.inbox.messages(user, ids)}
        return sorted(ids, key=lambda message_id: received[message_id])

    def _registration_request(self, form: FormData, message_id: int) -> RegistrationRequest:
        def value(name: str) -> str:
            # 一括設定 at the top fills what a row leaves empty.
            return (
                form_text(form, f"{name}_{message_id}")
                or (form_text(form, f"batch_{name}") if name in BATCH else "")
                or ""
            )

        try:
            received_on = dt.date.fromisoformat(value("received_on"))
        except ValueError as exc:
            raise BadRequest("収受日を YYYY-MM-DD で入力してください") from exc
        try:
            attachment_ids = [int(v) for v in form.getlist(f"attachment_{message_id}") if isinstance(v, str)]
        except ValueError as exc:
            raise BadRequest("入力が正しくありません") from exc
        return RegistrationRequest(
            message_id=message_id,
            subject=value("subject"),
            sender=value("sender"),
            received_on=received_on,
            retention=value("retention"),
            classification_id=_optional_id(value("classification")),
            remarks=value("remarks"),
            attachment_ids=attachment_ids,
            section_id=_optional_id(value("section")),
            sender_reference=value("sender_reference"),
            reply_due=_optional_date(value("reply_due"), "回答期限"),
            **_details(value),
        )

    def amend_form(self, request: Request) -> Response:
        registration = self.services.registry.get(session_of(request).user, path_int(request, "registration_id"))
        return self.render(
            request,
            "amend.html",
            r=registration,
            receipt_methods=RECEIPT_METHODS,
            classifications=self.services.registry.classification_choices(),
            retention_periods=self.services.settings.retention_periods,
        )

    def amend(self, request: Request) -> Response:
        form = form_of(request)

        def value(name: str) -> str:
            return form_text(form, name) or ""

        registration = self.services.registry.amend(
            session_of(request).user,
            path_int(request, "registration_id"),
            Amendment(
                subject=value("subject"),
                sender=value("sender"),
                retention=value("retention"),
                classification_id=_optional_id(value("classification")),
                remarks=value("remarks"),
                sender_reference=value("sender_reference"),
                reply_due=_optional_date(value("reply_due"), "回答期限"),
                **_details(value),
            ),
            client_address(request),
        )
        return RedirectResponse(
            f"/book?section={registration.section_id}&year={registration.fiscal_year}&notice=amended",
            status_code=303,
        )

    def registered(self, request: Request) -> Response:
        user = session_of(request).user
        ids = _ids(request.query_params.getlist("id"))
        rows = [self.services.registry.get(user, registration_id) for registration_id in ids]
        # Mails another clerk registered or dismissed meanwhile: named, not registered.
        taken = self.services.inbox.messages(user, _ids(request.query_params.getlist("taken")))
        next_new = self.services.inbox.next_new(user)
        back = safe_list_url(request.query_params.get("back"))
        return self.render(request, "registered.html", registrations=rows, taken=taken, next_new=next_new, back=back)

    def cancel(self, request: Request) -> Response:
        registration = self.services.registry.cancel(
            session_of(request).user,
            path_int(request, "registration_id"),
            field(request, "reason"),
            client_address(request),
        )
        return RedirectResponse(
            f"/book?section={registration.section_id}&year={registration.fiscal_year}&notice=cancelled",
            status_code=303,
        )

    # -- 収受簿 -----------------------------------------------------------------------

    def _book_choice(self, request: Request) -> tuple[list[Any], Any, int]:
        user = session_of(request).user
        sections = self.services.accounts.sections() if user.is_system_admin else list(user.sections)
        if not sections:
            raise NotFound("担当課が設定されていません。システム管理者に連絡してください。")
        wanted = request.query_params.get("section")
        section = next((s for s in sections if str(s.id) == wanted), None) if wanted else sections[0]
        if section is None:
            raise NotFound("この課の収受簿は見られません")
        current = jpdates.fiscal_year(dt.datetime.now(jpdates.JST).date())
        try:
            year = int(request.query_params.get("year") or current)
        except ValueError as exc:
            raise BadRequest("年度の指定が正しくありません") from exc
        return sections, section, year

    def book(self, request: Request) -> Response:
        user = session_of(request).user
        sections, section, year = self._book_choice(request)
        q = (request.query_params.get("q") or "").strip()[:200]
        reply_due_only = request.query_params.get("reply_due") == "1"
        rows = self.services.registry.book(user, section.id, year, q, reply_due_only)
        today = dt.datetime.now(jpdates.JST).date()
        current = jpdates.fiscal_year(today)
        warn_hours = self.services.settings.handoff_ack_warn_hours
        awaiting = (
            self.services.registry.awaiting_handoff(user, section.id, dt.timedelta(hours=warn_hours))
            if user.is_section_admin and warn_hours
            else []
        )
        return self.render(
            request,
            "book.html",
            sections=sections,
            section=section,
            year=year,
            years=list(range(current, current - 6, -1)),
            rows=rows,
            today=today,
            q=q,
            reply_due_only=reply_due_only,
            awaiting=awaiting,
            warn_hours=warn_hours,
        )

    def book_export(self, request: Request) -> Response:
        user = session_of(request).user
        _, section, year = self._book_choice(request)
        encoding = request.query_params.get("encoding", "utf-8")
        if encoding not in CSV_ENCODINGS:
            raise BadRequest("文字コードは utf-8 か cp932 を指定してください")
        rows = self.services.registry.book(user, section.id, year)
        self.services.audit.record(
            user,
            "export_book",
            section_id=section.id,
            detail=f"{year}年度 {encoding}",
            client_address=client_address(request),
        )
        filename = f"収受簿_{section.name}_{jpdates.wareki_fiscal_year(year)}.csv"
        return Response(
            book_csv(rows, encoding),
            media_type=f"text/csv; charset={'shift_jis' if encoding == 'cp932' else 'utf-8'}",
            headers={"Content-Disposition": content_disposition(filename, f"book-{year}.csv")},
        )


# Fields the registration form's 一括設定 may give every row.
BATCH = ("classification", "section", "retention", "receipt_method")


def _details(value: Callable[[str], str]) -> dict[str, Any]:
    """組織名, 文書日付, 受付方法 and 要回答, as the registration and 訂正 forms send them."""
    return {
        "sender_org": value("sender_org"),
        "document_date": _optional_date(value("document_date"), "文書日付"),
        "receipt_method": value("receipt_method") or RECEIPT_METHODS[0],
        "reply_required": value("reply_required") == "1",
    }


def _ids(values: list[str]) -> list[int]:
    try:
        return list(dict.fromkeys(int(v) for v in values))[:50]
    except ValueError as exc:
        raise BadRequest("メールの指定が正しくありません") from exc


def _optional_id(value: str) -> int | None:
    try:
        return int(value) if value else None
    except ValueError as exc:
        raise BadRequest("入力が正しくありません") from exc


def _optional_date(value: str, label: str) -> dt.date | None:
    if not value.strip():
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        raise BadRequest(f"{label}を YYYY-MM-DD で入力してください") from exc
