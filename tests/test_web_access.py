"""Who may see and do what in the web UI: sign-in, sessions, section
boundaries, CSRF on every form, and the security headers."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.routing import Route

from mailintake.config import Settings
from mailintake.models import Message
from mailintake.records.registry import RegistrationRequest
from mailintake.services import Services
from mailintake.web.app import create_app

from .conftest import ServiceThread
from .factories import designate, make_user, stored_message
from .web import PASSWORD, Browser, add_user, csrf_token

SOUMU = "soumu@city.example.jp"
ZAISEI = "zaisei@city.example.jp"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
def web(services: Services, service: ServiceThread, browsers: Any) -> Iterator[dict[str, Any]]:
    designate(services, ZAISEI, "財政課")
    add_user(services, "sato", ["総務課"])
    add_user(services, "tanaka", ["財政課"])
    add_user(services, "admin", [], role="system_admin")
    ours = stored_message(services, SOUMU, subject="総務課あて", attachments=(("資料.pdf", PDF, "application/pdf"),))
    theirs = stored_message(services, ZAISEI, subject="財政課あて", attachments=(("予算.pdf", PDF, "application/pdf"),))
    browser = browsers(service.base_url)
    assert browser.login("sato").status_code == 303
    yield {"browser": browser, "ours": ours, "theirs": theirs, "base_url": service.base_url, "open": browsers}


def attachment_id(services: Services, message_id: int) -> int:
    with Session(services.engine) as session:
        message = session.get(Message, message_id)
        assert message is not None
        return message.attachments[0].id


class TestSignIn:
    def test_pages_need_a_sign_in(self, service: ServiceThread, browsers: Any) -> None:
        browser = browsers(service.base_url)
        response = browser.get("/messages")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")

    def test_the_session_cookie_is_httponly_and_samesite(
        self, services: Services, service: ServiceThread, browsers: Any
    ) -> None:
        add_user(services, "sato", ["総務課"])
        browser = browsers(service.base_url)
        response = browser.login("sato")
        cookie = response.headers["set-cookie"]
        assert "mailintake_session=" in cookie
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
        assert browser.get("/messages").status_code == 200

    def test_a_wrong_password_is_refused_and_repeated_failures_are_throttled(
        self, services: Services, service: ServiceThread, browsers: Any
    ) -> None:
        add_user(services, "sato", ["総務課"])
        browser = browsers(service.base_url)
        statuses = [browser.login("sato", "wrong password!").status_code for _ in range(6)]
        assert statuses == [401] * 5 + [429]
        throttled = browser.login("sato")  # even the right password waits now
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
        assert "しばらく" in throttled.text

    def test_a_disabled_users_session_ends_at_once(self, services: Services, web: dict[str, Any]) -> None:
        browser: Browser = web["browser"]
        services.accounts.update_user("sato", enabled=False)
        assert browser.get("/messages").status_code == 303

    def test_logout_ends_the_session(self, web: dict[str, Any]) -> None:
        browser: Browser = web["browser"]
        assert browser.post("/logout").status_code == 303
        assert browser.get("/messages").status_code == 303


class TestSectionBoundaries:
    def test_the_list_shows_only_the_users_sections(self, web: dict[str, Any]) -> None:
        page = web["browser"].get("/messages").text
        assert "総務課あて" in page and "財政課あて" not in page

    def test_another_sections_mail_attachment_and_raw_urls_are_404(
        self, services: Services, web: dict[str, Any]
    ) -> None:
        browser: Browser = web["browser"]
        theirs, ours = web["theirs"], web["ours"]
        for message_id in (theirs, ours):
            attachment = attachment_id(services, message_id)
            paths = [
                f"/messages/{message_id}",
                f"/messages/{message_id}/source",
                f"/messages/{message_id}/original.eml",
                f"/messages/{message_id}/attachments/{attachment}",
                f"/messages/{message_id}/attachments/{attachment}/preview",
                f"/register?id={message_id}",
            ]
            expected = 404 if message_id == theirs else 200
            for path in paths:
                assert browser.get(path).status_code == expected, path
        # Our message id with their attachment id is no way around it.
        assert browser.get(f"/messages/{ours}/attachments/{attachment_id(services, theirs)}").status_code == 404

    def test_another_sections_mail_cannot_be_registered_or_dismissed(
        self, services: Services, web: dict[str, Any]
    ) -> None:
        browser: Browser = web["browser"]
        theirs = web["theirs"]
        register = browser.post(
            "/register",
            {
                "message_id": theirs,
                f"subject_{theirs}": "x",
                f"sender_{theirs}": "x",
                f"received_on_{theirs}": "2026-11-20",
                f"retention_{theirs}": "5年",
            },
        )
        assert register.status_code == 404
        assert browser.post(f"/messages/{theirs}/dismiss", {"reason": "x"}).status_code == 404
        with Session(services.engine) as session:
            assert session.scalar(select(Message.status).where(Message.id == theirs)) == "new"

    def test_admin_pages_are_not_there_for_clerks(self, web: dict[str, Any]) -> None:
        for path in ("/admin/users", "/admin/addresses", "/admin/mta-config", "/admin/classifications", "/admin/audit"):
            assert web["browser"].get(path).status_code == 404, path


def _post_routes(services: Services) -> list[str]:
    """Every form a signed-in browser posts (the API takes a bearer token,
    which no browser sends by itself, so it has no CSRF token; the IdP posts
    SAML assertions, proven by their signature and our request's ID)."""
    app = create_app(services)
    return [
        r.path
        for r in app.routes
        if isinstance(r, Route) and "POST" in (r.methods or set()) and not r.path.startswith(("/api/", "/sso/"))
    ]


class TestCsrf:
    def test_every_form_refuses_a_request_without_a_valid_token(self, services: Services, web: dict[str, Any]) -> None:
        browser: Browser = web["browser"]
        admin = web["open"](web["base_url"])
        admin.login("admin")
        section_id = services.accounts.section_id("総務課")
        user_id = services.accounts.by_username("sato").id
        registered = services.registry.register(
            services.accounts.by_username("admin"),
            [
                RegistrationRequest(
                    message_id=stored_message(services, SOUMU),
                    subject="s",
                    sender="s",
                    received_on=dt.date(2026, 11, 20),
                    retention="5年",
                )
            ],
        )[0]
        ids = {
            "message_id": web["ours"],
            "registration_id": registered.id,
            "user_id": user_id,
            "section_id": section_id,
            "classification_id": services.registry.add_classification("総務"),
        }
        routes = _post_routes(services)
        assert len(routes) >= 16, routes
        for template in routes:
            path = re.sub(r"\{(\w+):id\}", lambda m: str(ids[m.group(1)]), template)
            client = admin if template.startswith(("/admin", "/registrations")) else browser
            for token in (None, "forged-token", csrf_token(browser.get("/messages").text) + "x"):
                data = {
                    "reason": "x",
                    "name": "分類",
                    "symbol": "X",
                    "username": "newuser",
                    "password": PASSWORD,
                    "address": SOUMU,
                    "section": "総務課",
                    "via": "127.0.0.1:1",
                }
                if token is not None:
                    data["csrf_token"] = token
                response = client.client.post(path, data=data)
                assert response.status_code == 403, (path, token, response.status_code)
        # Nothing changed.
        assert services.registry.get(services.accounts.by_username("admin"), registered.id).status == "active"
        with Session(services.engine) as session:
            assert session.scalar(select(Message.status).where(Message.id == web["ours"])) == "new"
        assert [u.username for u in services.accounts.list_users()] == ["admin", "sato", "tanaka"]
        assert [(a.address, a.enabled) for a in services.addresses.list()] == [(SOUMU, True), (ZAISEI, True)]

    def test_the_token_of_another_session_does_not_work(self, services: Services, web: dict[str, Any]) -> None:
        other = web["open"](web["base_url"])
        other.login("tanaka")
        browser: Browser = web["browser"]
        response = browser.client.post(
            f"/messages/{web['ours']}/dismiss", data={"reason": "x", "csrf_token": other.csrf}
        )
        assert response.status_code == 403

    def test_the_login_form_needs_its_token_too(
        self, services: Services, service: ServiceThread, browsers: Any
    ) -> None:
        add_user(services, "sato", ["総務課"])
        browser = browsers(service.base_url)
        response = browser.client.post("/login", data={"username": "sato", "password": PASSWORD})
        assert response.status_code == 403


class TestHeaders:
    def test_every_page_carries_security_headers(self, services: Services, web: dict[str, Any]) -> None:
        browser: Browser = web["browser"]
        for path in ("/login", "/messages", f"/messages/{web['ours']}", "/book", "/messages/999999"):
            headers = browser.get(path).headers
            assert headers["x-content-type-options"] == "nosniff", path
            assert headers["x-frame-options"] == "DENY", path
            policy = headers["content-security-policy"]
            assert "default-src 'none'" in policy and "script-src 'self'" in policy, path
            assert "unsafe-inline" not in policy, path


class TestAudit:
    def test_source_views_and_downloads_are_logged_and_admins_can_export_them(
        self, services: Services, web: dict[str, Any]
    ) -> None:
        browser: Browser = web["browser"]
        ours = web["ours"]
        attachment = attachment_id(services, ours)
        for path in (
            f"/messages/{ours}/source",
            f"/messages/{ours}/original.eml",
            f"/messages/{ours}/attachments/{attachment}",
        ):
            assert browser.get(path).status_code == 200
        admin = web["open"](web["base_url"])
        admin.login("admin")
        exported = admin.get("/admin/audit.csv")
        assert exported.status_code == 200 and exported.content.startswith(b"\xef\xbb\xbf")
        rows = [line.split(",") for line in exported.content.decode("utf-8-sig").splitlines()[1:]]
        logged = [(r[1], r[2], r[3], r[4]) for r in reversed(rows) if r[2] != "ログイン"]
        assert logged == [
            ("sato", "ソース表示", str(ours), "総務課"),
            ("sato", "原本ダウンロード", str(ours), "総務課"),
            ("sato", "添付ダウンロード", str(ours), "総務課"),
        ]
        assert "資料.pdf" in exported.content.decode("utf-8-sig")
        page = admin.get("/admin/audit").text
        assert page.count("ソース表示") == 1


class TestAttachmentPreview:
    def test_html_and_svg_attachments_are_never_shown_inline(self, services: Services, web: dict[str, Any]) -> None:
        svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
        message = stored_message(
            services,
            SOUMU,
            attachments=(("図.svg", svg, "image/svg+xml"), ("案内.html", b"<script>alert(1)</script>", "text/html")),
        )
        browser: Browser = web["browser"]
        with Session(services.engine) as session:
            stored = session.get(Message, message)
            assert stored is not None
            ids = [a.id for a in stored.attachments]
        for attachment in ids:
            assert browser.get(f"/messages/{message}/attachments/{attachment}/preview").status_code == 404
            download = browser.get(f"/messages/{message}/attachments/{attachment}")
            assert download.headers["content-disposition"].startswith("attachment;")
            assert download.headers["x-content-type-options"] == "nosniff"


class TestBehindTheProxy:
    """Forwarded headers are believed only from the configured trusted_proxies."""

    @pytest.fixture
    def settings(self, make_settings: Any, database_url: str) -> Settings:
        return make_settings(database_url=database_url, trusted_proxies=["127.0.0.1"])

    def test_behind_the_trusted_tls_proxy_the_cookies_are_secure_and_the_audit_names_the_client(
        self, services: Services, service: ServiceThread, browsers: Any
    ) -> None:
        add_user(services, "sato", ["総務課"])
        auditor = make_user(services, "auditor", password=None, role="system_admin")
        client = browsers(service.base_url).client
        proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.1.2.3"}
        form = client.get("/login", headers=proxied)
        assert "secure" in form.headers["set-cookie"].lower()
        # httpx, like a browser, keeps Secure cookies off plain http: hand it over.
        login_cookie = form.cookies["mailintake_login_csrf"]
        response = client.post(
            "/login",
            data={"username": "sato", "password": PASSWORD, "csrf_token": csrf_token(form.text)},
            headers={**proxied, "Cookie": f"mailintake_login_csrf={login_cookie}"},
        )
        assert response.status_code == 303
        assert "secure" in response.headers["set-cookie"].lower()
        # The audit log names the clerk's machine, not the proxy.
        logins = [e for e in services.audit.entries(auditor) if e.action == "login"]
        assert [(e.username, e.client_address) for e in logins] == [("sato", "10.1.2.3")]


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    """GIVEN no trusted_proxies (the default) WHEN a local process sends
    X-Forwarded-For/-Proto THEN the client is the connecting address and
    the cookie is not marked as sent over TLS."""
    add_user(services, "sato", ["総務課"])
    auditor = make_user(services, "auditor", password=None, role="system_admin")
    client = browsers(service.base_url).client
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.9.9.9"}
    form = client.get("/login", headers=forged)
    assert "secure" not in form.headers["set-cookie"].lower()
    response = client.post(
        "/login",
        data={"username": "sato", "password": PASSWORD, "csrf_token": csrf_token(form.text)},
        headers=forged,
    )
    assert response.status_code == 303
    logins = [e for e in services.audit.entries(auditor) if e.action == "login"]
    assert [(e.username, e.client_address) for e in logins] == [("sato", "127.0.0.1")]


class TestStatusAndPreview:
    def test_the_status_page_needs_a_system_administrator_and_shows_the_menu(
        self, services: Services, web: dict[str, Any]
    ) -> None:
        anonymous = web["open"](web["base_url"])
        assert anonymous.get("/status").status_code == 303
        assert web["browser"].get("/status").status_code == 404  # a clerk
        admin = web["open"](web["base_url"])
        assert admin.login("admin").status_code == 303
        page = admin.get("/status")
        assert page.status_code == 200 and "稼働状況" in page.text and 'aria-label="メインメニュー"' in page.text

    def test_a_pdf_preview_names_the_file_and_is_audited(self, services: Services, web: dict[str, Any]) -> None:
        ours = web["ours"]
        attachment = attachment_id(services, ours)
        response = web["browser"].get(f"/messages/{ours}/attachments/{attachment}/preview")
        assert response.status_code == 200
        disposition = response.headers["content-disposition"]
        assert disposition.startswith("inline;") and "filename*=UTF-8''%E8%B3%87%E6%96%99.pdf" in disposition
        auditor = services.accounts.by_username("admin")
        previews = [e for e in services.audit.entries(auditor) if e.action == "preview_attachment"]
        assert [(e.username, e.message_id, e.detail) for e in previews] == [("sato", ours, "資料.pdf")]
