"""SAML 2.0 sign-in against a real IdP (SimpleSAMLphp on loopback): a clerk
signs in and out (single logout); an unsigned, tampered, replayed,
foreign-audience or expired assertion is refused."""

from __future__ import annotations

import base64
import html
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from mailintake.config import Settings
from mailintake.people.saml import SamlSP
from mailintake.services import Services, build_services
from tests.conftest import ServiceThread, free_port, wait_for
from tests.factories import designate, make_user
from tests.idp import SamlIdP, signin_site, start_saml_idp, stop
from tests.mails import make_message, send

HTTP_PORT = free_port()
BASE = f"http://127.0.0.1:{HTTP_PORT}"
ENTITY_ID = f"{BASE}/sso/saml/metadata"
USERS = {"tanaka": {"password": "pw-tanaka", "uid": "Tanaka", "name": "田中"}}


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SamlIdP]:
    started = start_saml_idp(tmp_path_factory.mktemp("saml"), USERS)
    started.trust_sp(ENTITY_ID, f"{BASE}/sso/saml/acs", f"{BASE}/sso/saml/sls")
    yield started
    stop(started.process)


@pytest.fixture
def site(make_settings: Any, idp: SamlIdP) -> Iterator[tuple[Services, ServiceThread]]:
    settings: Settings = make_settings(
        http_port=HTTP_PORT,
        saml_idp_metadata=str(idp.metadata_file),
        saml_user_attribute="uid",
        portal_url="http://portal.invalid/",
    )
    with signin_site(settings) as started:
        yield started


def follow(client: httpx.Client, response: httpx.Response) -> httpx.Response:
    for _ in range(20):
        if response.status_code not in (301, 302, 303):
            return response
        response = client.get(str(response.url.join(response.headers["location"])))
    raise AssertionError("too many redirects")


def form_of(page: httpx.Response) -> tuple[str, dict[str, str]]:
    action = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    assert action, page.text[:800]
    fields = {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text)
    }
    return html.unescape(action.group(1)), fields


def saml_response(client: httpx.Client, start_url: str) -> dict[str, str]:
    """Runs a sign-in at the IdP up to the form it would post to the SP."""
    page = follow(client, client.get(start_url))
    if 'name="password"' in page.text:
        action, fields = form_of(page)
        fields.update(username="tanaka", password=USERS["tanaka"]["password"])
        page = follow(client, client.post(str(page.url.join(action)), data=fields))
    action, fields = form_of(page)
    assert action.endswith("/sso/saml/acs") and "SAMLResponse" in fields, page.text[:800]
    return fields


def post_to_acs(client: httpx.Client, fields: dict[str, str]) -> httpx.Response:
    return follow(client, client.post(f"{BASE}/sso/saml/acs", data=fields))


def audit_reasons(services: Services) -> list[str]:
    admin = services.accounts.by_username("admin")
    return [e.detail for e in services.audit.entries(admin) if e.action == "login_failed"]


def decoded(fields: dict[str, str]) -> str:
    return base64.b64decode(fields["SAMLResponse"]).decode()


def encoded(fields: dict[str, str], xml: str) -> dict[str, str]:
    return dict(fields, SAMLResponse=base64.b64encode(xml.encode()).decode())


def test_the_sp_metadata_names_our_endpoints(site: Any) -> None:
    metadata = httpx.get(f"{BASE}/sso/saml/metadata")
    assert metadata.status_code == 200
    assert f'entityID="{ENTITY_ID}"' in metadata.text and f"{BASE}/sso/saml/acs" in metadata.text
    assert 'WantAssertionsSigned="true"' in metadata.text


def test_a_clerk_signs_in_through_the_idp_and_out_again(site: Any) -> None:
    services, _ = site
    with httpx.Client() as browser:
        page = post_to_acs(browser, saml_response(browser, f"{BASE}/sso/saml/login?next=/messages"))
        assert page.status_code == 200 and page.url.path == "/messages" and "受信一覧" in page.text
        admin = services.accounts.by_username("admin")
        assert any(e.action == "login" and e.detail == "SAML: Tanaka" for e in services.audit.entries(admin))
        # Single logout: the IdP is told, then the portal.
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        out = browser.post(f"{BASE}/logout", data={"csrf_token": csrf})
        onwards = html.unescape(re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', out.text).group(1))  # type: ignore[union-attr]
        assert out.status_code == 200 and "SingleLogoutService" in onwards
        back = browser.get(onwards)
        # SimpleSAMLphp answers with a redirect to our SLS carrying a LogoutResponse.
        while back.status_code in (302, 303) and not back.headers["location"].startswith("http://portal.invalid"):
            back = browser.get(str(back.url.join(back.headers["location"])))
        assert back.status_code == 303 and back.headers["location"] == "http://portal.invalid/"
        assert browser.get(f"{BASE}/messages").status_code in (302, 303)
        # The IdP's session ended too: it asks for the password again.
        again = follow(browser, browser.get(f"{BASE}/sso/saml/login"))
        assert 'name="password"' in again.text


def test_a_replayed_response_is_refused(site: Any) -> None:
    services, _ = site
    with httpx.Client() as browser:
        fields = saml_response(browser, f"{BASE}/sso/saml/login")
        assert post_to_acs(browser, fields).status_code == 200
        with httpx.Client() as attacker:
            replay = post_to_acs(attacker, fields)
        assert replay.status_code == 403 and "ログインできません" in replay.text
    assert any("unknown, answered or expired request" in r for r in audit_reasons(services))


def test_an_unsigned_assertion_is_refused(site: Any) -> None:
    services, _ = site
    with httpx.Client() as browser:
        fields = saml_response(browser, f"{BASE}/sso/saml/login")
        xml = re.sub(r"<ds:Signature\b.*?</ds:Signature>", "", decoded(fields), flags=re.S)
        assert "Signature" not in xml
        assert post_to_acs(browser, encoded(fields, xml)).status_code == 403
    assert any("not signed" in r.lower() or "signature" in r.lower() for r in audit_reasons(services))


def test_a_tampered_assertion_is_refused(site: Any) -> None:
    services, _ = site
    with httpx.Client() as browser:
        fields = saml_response(browser, f"{BASE}/sso/saml/login")
        xml = decoded(fields)
        assert ">Tanaka<" in xml
        assert post_to_acs(browser, encoded(fields, xml.replace(">Tanaka<", ">admin<"))).status_code == 403
    assert audit_reasons(services), "the refusal is audited"
    assert not [e for e in services.audit.entries(services.accounts.by_username("admin")) if e.action == "login"]


def test_an_assertion_for_another_service_is_refused(site: Any, idp: SamlIdP) -> None:
    """The IdP trusts a second service whose ACS address is ours; its
    assertion, posted here, is for another audience."""
    services, _ = site
    other_entity = f"{BASE}/another-service"
    idp.trust_sp(other_entity, f"{BASE}/sso/saml/acs", f"{BASE}/sso/saml/sls")
    other = SamlSP(BASE, other_entity, idp.metadata_file, "uid", services.sso.once)
    with httpx.Client() as browser:
        fields = saml_response(browser, other.start("/messages"))
        assert post_to_acs(browser, fields).status_code == 403
    assert any("audience" in r.lower() for r in audit_reasons(services))


def test_an_expired_assertion_is_refused(site: Any, idp: SamlIdP) -> None:
    services, _ = site
    idp.trust_sp(ENTITY_ID, f"{BASE}/sso/saml/acs", f"{BASE}/sso/saml/sls", **{"assertion.lifetime": -3600})
    try:
        with httpx.Client() as browser:
            fields = saml_response(browser, f"{BASE}/sso/saml/login")
            assert post_to_acs(browser, fields).status_code == 403
    finally:
        idp.trust_sp(ENTITY_ID, f"{BASE}/sso/saml/acs", f"{BASE}/sso/saml/sls")
    assert any("expired" in r.lower() or "notonorafter" in r.lower() for r in audit_reasons(services))


# -- from the groupware portal, in a real browser ------------------------------------


class Portal:
    """A page on loopback standing in for the groupware portal, with the
    menu link an administrator adds for mailintake (deploy/sso.md)."""

    def __init__(self) -> None:
        page = (
            '<!DOCTYPE html><html lang="ja"><meta charset="utf-8"><title>ポータル</title>'
            f'<h1>ポータル</h1><nav><a href="{BASE}/sso/saml/login?next=/messages">メール収受</a></nav></html>'
        ).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_from_the_portal_menu_through_the_idp_into_the_list_and_back(
    make_settings: Any, idp: SamlIdP, chromium: Any
) -> None:
    portal = Portal()
    settings: Settings = make_settings(
        http_port=HTTP_PORT,
        saml_idp_metadata=str(idp.metadata_file),
        saml_user_attribute="uid",
        portal_url=portal.url,
        password_signin=False,
    )
    services = build_services(settings)
    designate(services, "soumu@city.example.jp", "総務課")
    make_user(services, "tanaka", password=None, sections=["総務課"], display_name="田中")
    service = ServiceThread(settings).start()
    try:
        send(settings.smtp_port, make_message(subject="ポータルから開く会議資料"))
        wait_for(lambda: services.messages.count() >= 1, timeout=30)
        page = chromium.new_page(locale="ja-JP")
        page.goto(portal.url)
        page.get_by_role("link", name="メール収受").click()
        page.fill("input[name=username]", "tanaka")
        page.fill("input[name=password]", USERS["tanaka"]["password"])
        page.keyboard.press("Enter")
        page.wait_for_url(f"{BASE}/messages")
        assert page.get_by_role("heading", name="受信一覧").is_visible()
        assert page.get_by_text("ポータルから開く会議資料").is_visible()
        page.get_by_role("button", name="ログアウト").click()
        page.wait_for_url(portal.url)
        page.goto(f"{BASE}/messages")
        assert "/login" in page.url and page.get_by_role("link", name="組織の認証基盤でログイン（SAML）").is_visible()
        assert page.locator("input[name=password]").count() == 0  # password sign-in is off
    finally:
        service.stop()
        services.close()
        portal.close()
