"""The administrators' pages: users, sections and their 文書記号, the 文書分類
tree, the audit log, and the designated addresses with their generated MTA
configuration and a probe through the organisation's MTA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..errors import BadRequest, MailintakeError, NotFound
from ..models import ROLES
from ..operations import mta_config
from ..operations.probing import probe_progress, send_probe
from ..records import audit as audit_module
from .downloads import content_disposition
from .pages import Handler, client_address, field, form_of, page, path_int, session_of
from .ui import PageSet

PROBE_TIMEOUT = 30.0
DAILY_DAYS = 7


class AdminUI(PageSet):
    def routes(self) -> list[Route]:
        s = self.services

        def get(path: str, handler: Handler, role: str = "system_admin") -> Route:
            return Route(path, page(s, role=role)(handler), methods=["GET"])

        def post(path: str, handler: Handler, role: str = "system_admin") -> Route:
            return Route(path, page(s, role=role)(handler), methods=["POST"])

        return [
            get("/admin/users", self.admin_users),
            post("/admin/users", self.admin_add_user),
            post("/admin/users/{user_id:id}", self.admin_update_user),
            post("/admin/users/{user_id:id}/unlock", self.admin_unlock_user),
            get("/admin/sections", self.admin_sections),
            post("/admin/sections", self.admin_add_section),
            post("/admin/sections/{section_id:id}", self.admin_update_section),
            get("/admin/classifications", self.admin_classifications),
            post("/admin/classifications", self.admin_add_classification),
            post("/admin/classifications/{classification_id:id}", self.admin_describe_classification),
            get("/admin/audit", self.admin_audit, role="section_admin"),
            get("/admin/audit.csv", self.admin_audit_export, role="section_admin"),
            get("/admin/addresses", self.addresses),
            post("/admin/addresses", self.add_address),
            post("/admin/addresses/update", self.update_address),
            post("/admin/addresses/enable", self.enable_address),
            post("/admin/addresses/disable", self.disable_address),
            post("/admin/addresses/delete", self.delete_address),
            post("/admin/addresses/probe", self.probe_address),
            get("/admin/probes/{probe_id}", self.probe_page),
            get("/admin/probes/{probe_id}/progress", self.probe_state),
            get("/admin/mta-config", self.mta_config_page),
            get("/admin/filelink", self.filelink_status),
        ]

    # -- designated addresses ----------------------------------------------------

    def addresses(
        self, request: Request, error: str | None = None, status_code: int = 200, typed: Any = None
    ) -> Response:
        infos = self.services.addresses.list()
        daily = {info.address: self.services.addresses.daily_counts(info.address, DAILY_DAYS) for info in infos}
        settings = self.services.settings
        return self.render(
            request,
            "admin_addresses.html",
            status_code=status_code,
            addresses=infos,
            daily=daily,
            days=[day for day, _ in next(iter(daily.values()), [])],
            sections=self.services.accounts.sections(),
            error=error,
            typed=typed or FormData(),
            # Through the MTA: a probe sent to the relay itself proves nothing
            # about the forwarding.
            default_via=settings.probe_via,
            relay=_relay(settings),
        )

    def _address_action(
        self, request: Request, action: Any, notice: str = "saved", keep_typed: bool = False
    ) -> Response:
        try:
            action()
        except MailintakeError as exc:
            if isinstance(exc, NotFound):
                raise
            return self.addresses(
                request, str(exc), status_code=exc.http_status, typed=form_of(request) if keep_typed else None
            )
        return RedirectResponse(f"/admin/addresses?notice={notice}", status_code=303)

    def add_address(self, request: Request) -> Response:
        return self._address_action(
            request,
            lambda: self.services.addresses.add(field(request, "address"), _section(request), field(request, "label")),
            "address_added",
            keep_typed=True,
        )

    def update_address(self, request: Request) -> Response:
        return self._address_action(
            request,
            lambda: self.services.addresses.update(
                field(request, "address"), section=_section(request), label=field(request, "label")
            ),
        )

    def enable_address(self, request: Request) -> Response:
        return self._address_action(
            request, lambda: self.services.addresses.set_enabled(field(request, "address"), True), "address_enabled"
        )

    def disable_address(self, request: Request) -> Response:
        return self._address_action(
            request, lambda: self.services.addresses.set_enabled(field(request, "address"), False), "address_disabled"
        )

    def delete_address(self, request: Request) -> Response:
        return self._address_action(
            request, lambda: self.services.addresses.delete(field(request, "address")), "address_deleted"
        )

    def probe_address(self, request: Request) -> Response:
        """Send a probe through the MTA at ``via``; its page follows the
        arrival in the background."""
        address = self.services.addresses.get(field(request, "address"))
        if not address.enabled:
            return self.addresses(request, f"{address.address} は無効です。有効にしてから確認してください。", 400)
        host, port = mta_config.host_port(field(request, "via"))
        try:
            probe_id = send_probe(self.services, address.address, host, port, f"mailintake-probe@{host}")
        except MailintakeError as exc:
            return self.addresses(request, f"疎通確認を送れませんでした。{exc}", 502)
        return RedirectResponse(f"/admin/probes/{probe_id}?" + urlencode({"via": f"{host}:{port}"}), status_code=303)

    def probe_page(self, request: Request) -> Response:
        progress = probe_progress(self.services, request.path_params["probe_id"], PROBE_TIMEOUT)
        via = request.query_params.get("via", "")
        direct = via in (_relay(self.services.settings), f"localhost:{self.services.settings.smtp_port}")
        return self.render(request, "admin_probe.html", progress=progress, via=via, direct=direct)

    def probe_state(self, request: Request) -> Response:
        """The progress alone, for the page's script to refresh."""
        progress = probe_progress(self.services, request.path_params["probe_id"], PROBE_TIMEOUT)
        response = self.render(request, "_probe_progress.html", progress=progress)
        response.headers["Cache-Control"] = "no-store"
        return response

    def mta_config_page(self, request: Request) -> Response:
        settings = self.services.settings
        mta = request.query_params.get("mta", "postfix")
        mode = request.query_params.get("mode", "divert")
        if mta not in ("postfix", "sendmail") or mode not in mta_config.MODES:
            raise BadRequest("MTA は postfix か sendmail、方式は copy か divert を指定してください")
        relay = request.query_params.get("relay") or f"{settings.smtp_host}:{settings.smtp_port}"
        relays = mta_config.relay_list(relay)
        enabled = [info.address for info in self.services.addresses.list() if info.enabled]
        build = mta_config.postfix if mta == "postfix" else mta_config.sendmail
        config = build(enabled, mode, relays, settings.copy_route_suffix)
        return self.render(
            request, "admin_mta_config.html", config=config, mta=mta, mode=mode, relay=relay, addresses=enabled
        )

    def filelink_status(self, request: Request) -> Response:
        """The linkage engine's own status file, read as it is."""
        document, problem = _read_status(self.services.settings.filelink_status)
        return self.render(request, "admin_filelink.html", document=document, problem=problem)

    # -- users, sections, classifications, audit ---------------------------------

    def admin_users(
        self, request: Request, error: str | None = None, status_code: int = 200, typed: Any = None
    ) -> Response:
        return self.render(
            request,
            "admin_users.html",
            status_code=status_code,
            typed=typed or FormData(),
            users=(users := self.services.accounts.list_users()),
            sections=self.services.accounts.sections(),
            roles=ROLES,
            error=error,
            locked={u.username: wait for u in users if (wait := self.ui.throttle.locked_for(u.username)) > 0},
        )

    def admin_unlock_user(self, request: Request) -> Response:
        target = self.services.accounts.get(path_int(request, "user_id"))
        if target is None:
            raise NotFound("そのユーザーはいません")
        self.ui.throttle.unlock(target.username)
        self.services.audit.record(
            session_of(request).user, "unlock_login", detail=target.username, client_address=client_address(request)
        )
        return RedirectResponse("/admin/users?notice=unlocked", status_code=303)

    def admin_add_user(self, request: Request) -> Response:
        form = form_of(request)
        try:
            self.services.accounts.add_user(
                field(request, "username"),
                password=field(request, "password") or None,
                role=field(request, "role", "clerk"),
                sections=[v for v in form.getlist("sections") if isinstance(v, str)],
                display_name=field(request, "display_name"),
            )
        except BadRequest as exc:
            return self.admin_users(request, str(exc), status_code=400, typed=form)
        return RedirectResponse("/admin/users?notice=saved", status_code=303)

    def admin_update_user(self, request: Request) -> Response:
        user_id = path_int(request, "user_id")
        target = self.services.accounts.get(user_id)
        if target is None:
            raise NotFound("そのユーザーはいません")
        form = form_of(request)
        enabled = field(request, "enabled") == "1"
        if target.id == session_of(request).user.id and not enabled:
            return self.admin_users(request, "自分自身は無効にできません", status_code=400)
        self.services.accounts.update_user(
            target.username,
            role=field(request, "role", target.role),
            sections=[v for v in form.getlist("sections") if isinstance(v, str)],
            enabled=enabled,
        )
        return RedirectResponse("/admin/users?notice=saved", status_code=303)

    def admin_sections(self, request: Request) -> Response:
        return self.render(request, "admin_sections.html", sections=self.services.accounts.sections(), error=None)

    def admin_add_section(self, request: Request) -> Response:
        try:
            self.services.accounts.add_section(field(request, "name"), field(request, "symbol"))
        except BadRequest as exc:
            return self.render(
                request,
                "admin_sections.html",
                status_code=400,
                sections=self.services.accounts.sections(),
                error=str(exc),
                typed=form_of(request),
            )
        return RedirectResponse("/admin/sections?notice=section_added", status_code=303)

    def admin_update_section(self, request: Request) -> Response:
        self.services.accounts.set_symbol(path_int(request, "section_id"), field(request, "symbol"))
        return RedirectResponse("/admin/sections?notice=saved", status_code=303)

    def admin_classifications(self, request: Request, error: str | None = None, typed: Any = None) -> Response:
        return self.render(
            request,
            "admin_classifications.html",
            status_code=400 if error else 200,
            classifications=self.services.registry.classification_choices(),
            retention_periods=self.services.settings.retention_periods,
            error=error,
            typed=typed or FormData(),
        )

    def admin_add_classification(self, request: Request) -> Response:
        try:
            parent_id = _optional_int(field(request, "parent_id"), "上位の分類の指定が正しくありません")
            self.services.registry.add_classification(
                field(request, "name"), parent_id, field(request, "code"), field(request, "retention")
            )
        except BadRequest as exc:
            return self.admin_classifications(request, str(exc), form_of(request))
        return RedirectResponse("/admin/classifications?notice=classification_added", status_code=303)

    def admin_describe_classification(self, request: Request) -> Response:
        try:
            self.services.registry.describe_classification(
                path_int(request, "classification_id"), field(request, "code"), field(request, "retention")
            )
        except BadRequest as exc:
            return self.admin_classifications(request, str(exc))
        return RedirectResponse("/admin/classifications?notice=saved", status_code=303)

    def admin_audit(self, request: Request) -> Response:
        before = request.query_params.get("before")
        entries = self.services.audit.entries(
            session_of(request).user, limit=200, before_id=int(before) if before and before.isdigit() else None
        )
        return self.render(request, "audit.html", entries=entries)

    def admin_audit_export(self, request: Request) -> Response:
        entries = self.services.audit.entries(session_of(request).user, limit=1_000_000)
        return Response(
            audit_module.entries_csv(entries),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": content_disposition("監査ログ.csv", "audit.csv")},
        )


def _read_status(path: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    if path is None:
        return None, "連携状況ファイル（filelink_status）が設定されていません。"
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, f"{path} がありません。連携エンジン（filelink run）が動いているか確認してください。"
    except PermissionError:
        return None, f"{path} を読む権限がありません。サービスのアカウントに読み取りを許可してください。"
    except (OSError, ValueError):
        return None, f"{path} を読めません（壊れているか、書き込み中です）。しばらくしてから開き直してください。"


def _section(request: Request) -> str | int:
    """The 担当課 chosen: a section's id from the list, or a name typed."""
    value = field(request, "section").strip()
    return int(value) if value.isdigit() else value


def _optional_int(value: str, problem: str) -> int | None:
    try:
        return int(value) if value else None
    except ValueError as exc:
        raise BadRequest(problem) from exc


def _relay(settings: Any) -> str:
    """The relay's own address as a probe's ``via`` would name it."""
    host = "127.0.0.1" if settings.smtp_host in ("", "0.0.0.0", "::") else settings.smtp_host
    return f"{host}:{settings.smtp_port}"
