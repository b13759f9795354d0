"""OpenID Connect sign-in against a real provider (oidc-provider on
loopback): a clerk signs in and out; a tampered, expired, foreign-audience
or wrong-nonce ID token and a replayed authorization code are refused."""

from __future__ import annotations

import base64
import html
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt

from mailintake.config import Settings
from mailintake.people.oidc import OidcClient
from mailintake.people.signin import SignInRefused
from mailintake.services import Services
from tests.conftest import ServiceThread, free_port
from tests.idp import OidcProvider, signin_site, start_oidc_provider, stop

HTTP_PORT = free_port()  # one address for the whole module: the provider knows it
BASE = f"http://127.0.0.1:{HTTP_PORT}"
USERS = {"tanaka": {"login": "Tanaka", "name": "田中"}, "suzuki": {"login": "suzuki", "name": "鈴木"}}


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    started = start_oidc_provider(tmp_path_factory.mktemp("oidc"), BASE, USERS)
    yield started
    stop(started.process)


@pytest.fixture
def site(make_settings: Any, provider: OidcProvider, tmp_path: Path) -> Iterator[tuple[Services, ServiceThread]]:
    secret = tmp_path / "oidc-secret"
    secret.write_text(provider.clients["mailintake"] + "\n")
    settings: Settings = make_settings(
        http_port=HTTP_PORT,
        oidc_issuer=provider.issuer,
        oidc_client_id="mailintake",
        oidc_client_secret_file=str(secret),
    )
    with signin_site(settings) as started:
        yield started


def follow(client: httpx.Client, response: httpx.Response, until: str | None = None) -> httpx.Response:
    """Follows redirects (across mailintake and the provider); stops before
    a URL starting with ``until``."""
    for _ in range(20):
        if response.status_code not in (302, 303):
            return response
        location = str(response.url.join(response.headers["location"]))
        if until and location.startswith(until):
            return response
        response = client.get(location)
    raise AssertionError("too many redirects")


def provider_login(client: httpx.Client, page: httpx.Response, login: str) -> httpx.Response:
    """Fills in the provider's login form."""
    action = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    assert action, page.text[:500]
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    return client.post(str(page.url.join(action.group(1))), data={**hidden, "login": login, "password": login})


def sign_in(client: httpx.Client, login: str = "tanaka", until: str | None = None) -> httpx.Response:
    page = follow(client, client.get(f"{BASE}/sso/oidc/login", params={"next": "/messages"}), until=until)
    if page.status_code == 200 and page.url.port != HTTP_PORT:  # the provider asks who it is
        page = follow(client, provider_login(client, page, login), until=until)
    return page


def audit(services: Services) -> list[tuple[str, str, str]]:
    admin = services.accounts.by_username("admin")
    return [(e.action, e.username, e.detail) for e in services.audit.entries(admin)]


def test_a_clerk_signs_in_through_the_provider_and_lands_in_the_list(site: Any) -> None:
    services, _ = site
    with httpx.Client() as browser:
        page = sign_in(browser)
        assert page.status_code == 200 and page.url.path == "/messages" and "受信一覧" in page.text, audit(services)
    # preferred_username "Tanaka" is the local user tanaka
    assert ("login", "tanaka", "OpenID Connect: Tanaka") in audit(services)


def test_sign_out_ends_both_sessions(site: Any) -> None:
    with httpx.Client() as browser:
        page = sign_in(browser)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        out = browser.post(f"{BASE}/logout", data={"csrf_token": csrf})
        # A page of ours leads on to the provider's sign-out.
        onwards = html.unescape(re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', out.text).group(1))  # type: ignore[union-attr]
        assert out.status_code == 200 and "/session/end" in onwards and "id_token_hint=" in onwards
        assert "mailintake_session" not in browser.cookies
        confirm = browser.get(onwards)
        # The provider's sign-out form (submitted by script in a browser).
        form = re.search(r'<form[^>]*action="([^"]+)"', confirm.text)
        assert form
        fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', confirm.text))
        done = follow(browser, browser.post(str(confirm.url.join(form.group(1))), data={**fields, "logout": "yes"}))
        assert done.url.path == "/login" and "ログアウトしました" in done.text
        assert browser.get(f"{BASE}/messages").status_code in (302, 303)
        # The provider's session is gone too: it asks for the login again.
        again = follow(browser, browser.get(f"{BASE}/sso/oidc/login"))
        assert again.url.port != HTTP_PORT and "<form" in again.text


def test_a_replayed_authorization_code_is_refused(site: Any) -> None:
    services, _ = site
    with httpx.Client() as browser:
        at_callback = sign_in(browser, until=f"{BASE}/sso/oidc/callback")
        callback = str(at_callback.url.join(at_callback.headers["location"]))
        assert browser.get(callback).status_code == 303  # signed in
        replay = browser.get(callback)
        assert replay.status_code == 403 and "ログインできません" in replay.text
        # The same code under a fresh state of this browser: the provider refuses it.
        fresh = sign_in(browser, until=f"{BASE}/sso/oidc/callback")
        state = re.search(r"state=([^&]+)", fresh.headers["location"]).group(1)  # type: ignore[union-attr]
        code = re.search(r"code=([^&]+)", callback).group(1)  # type: ignore[union-attr]
        stolen = browser.get(f"{BASE}/sso/oidc/callback", params={"code": code, "state": state})
        assert stolen.status_code == 403
    reasons = [detail for action, _, detail in audit(services) if action == "login_failed"]
    assert any("unknown, used or expired state" in r for r in reasons)
    assert any("code not redeemed: invalid_grant" in r for r in reasons)


def test_a_callback_from_another_browser_is_refused(site: Any) -> None:
    with httpx.Client() as victim, httpx.Client() as attacker:
        at_callback = sign_in(attacker, until=f"{BASE}/sso/oidc/callback")
        planted = victim.get(str(at_callback.url.join(at_callback.headers["location"])))
        assert planted.status_code == 403 and "mailintake_session" not in planted.cookies


def test_an_unknown_user_is_refused_with_whom_to_ask(site: Any) -> None:
    with httpx.Client() as browser:
        page = sign_in(browser, login="suzuki")
    assert page.status_code == 403 and "登録されていません" in page.text


# -- ID tokens, checked one claim at a time ------------------------------------------


def refusal(attempt: Any) -> str:
    """The audited reason of a refused sign-in (the clerk reads a plain message)."""
    with pytest.raises(SignInRefused) as refused:
        attempt()
    assert "システム管理者" in str(refused.value)
    return refused.value.reason


def real_id_token(services: Services, client: OidcClient | None = None) -> tuple[str, str]:
    """An ID token the provider issued for ``client`` (ours by default), and its nonce."""
    client = client or services.sso.oidc
    assert client is not None
    with httpx.Client() as browser:
        redirect = client.start("/messages")
        page = follow(browser, browser.get(redirect.url))
        if "<form" in page.text:
            page = follow(browser, provider_login(browser, page, "tanaka"), until=f"{BASE}/sso/oidc/callback")
        callback = httpx.URL(str(page.url.join(page.headers["location"])))
        identity, _ = client.finish(dict(callback.params), redirect.browser_binding)
    payload = identity.signout_hint.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return identity.signout_hint, claims["nonce"]


def test_a_genuine_id_token_passes(site: Any) -> None:
    services, _ = site
    token, nonce = real_id_token(services)
    claims = services.sso.oidc.verify_id_token(token, nonce)
    assert claims["sub"] == "tanaka" and claims["aud"] == "mailintake"


def test_a_tampered_id_token_is_refused(site: Any) -> None:
    services, _ = site
    token, nonce = real_id_token(services)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert "signature" in refusal(lambda: services.sso.oidc.verify_id_token(f"{header}.{forged}.{signature}", nonce))


def test_an_id_token_with_another_nonce_is_refused(site: Any) -> None:
    services, _ = site
    token, _ = real_id_token(services)
    assert "nonce" in refusal(lambda: services.sso.oidc.verify_id_token(token, "the nonce of another sign-in"))


def test_an_id_token_for_another_client_is_refused(site: Any, provider: OidcProvider) -> None:
    services, _ = site
    ours = services.sso.oidc
    other = OidcClient(
        issuer=ours.issuer,
        client_id="other-rp",
        client_secret=provider.clients["other-rp"],
        redirect_uri=ours.redirect_uri,
        user_claim=ours.user_claim,
        scopes=ours.scopes,
        once=ours.once,
    )
    token, nonce = real_id_token(services, other)
    assert other.verify_id_token(token, nonce)["aud"] == "other-rp"
    assert "aud" in refusal(lambda: ours.verify_id_token(token, nonce))


def test_an_expired_id_token_is_refused(site: Any, provider: OidcProvider) -> None:
    services, _ = site
    token, nonce = real_id_token(services)
    claims = jwt.decode(token, provider.keys).claims
    # Signed with the provider's own key: only the time is wrong.
    stale = dict(claims, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    expired = jwt.encode({"alg": "RS256", "kid": "test-signing"}, stale, provider.keys)
    assert "exp" in refusal(lambda: services.sso.oidc.verify_id_token(expired, nonce))
