"""The groupware's hand-off: a signed value from the office network signs
the clerk in, once; replayed, expired, tampered, unsigned and out-of-network
ones are refused with a page that says what to do, and audited; an access
key is checked with a fake groupware's common API. The unsigned
compatibility mode is flagged to administrators and in the log."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from mailintake.config import Settings
from mailintake.people.directory import DirectoryImport
from mailintake.people.groupware import sign_handoff
from mailintake.services import Services, build_services
from tests.factories import designate
from tests.web import ADMIN_PAGES, add_user

SECRET = "k" * 20 + "-shared-with-the-portal-gateway"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "handoff-secret"
    path.write_text(SECRET + "\n")
    return path


@pytest.fixture
def portal(make_settings: Any, secret_file: Path, start_service: Any):
    """A running service taking signed hand-offs from loopback; returns
    (services, base URL)."""

    def start(**overrides: Any) -> tuple[Services, str]:
        values: dict[str, Any] = {
            "groupware_handoff": "signed",
            "groupware_networks": ["127.0.0.0/8"],
            "groupware_secret_file": str(secret_file),
        }
        values.update(overrides)
        settings: Settings = make_settings(**values)
        services = build_services(settings)
        designate(services, "soumu@city.example.jp", "総務課")
        add_user(services, "tanaka", ["総務課"])
        add_user(services, "kacho", ["総務課"], role="section_admin")
        add_user(services, "admin", [], role="system_admin")
        service = start_service(settings)
        return services, service.base_url

    return start


def hand_off(base_url: str, value: str, **kwargs: Any) -> httpx.Response:
    with httpx.Client(base_url=base_url, follow_redirects=False, **kwargs) as client:
        response = client.get("/sso/groupware", params={"mi_sso": value, "next": "/messages"})
        if response.status_code == 303:
            response = client.get(response.headers["location"])
        return response


def audit_rows(services: Services) -> list[tuple[str, str, str]]:
    admin = services.accounts.by_username("admin")
    return [(e.action, e.username, e.detail) for e in services.audit.entries(admin)]


def test_a_signed_hand_off_signs_the_clerk_in_and_is_audited(portal: Any) -> None:
    services, base = portal()
    response = hand_off(base, sign_handoff(SECRET.encode(), "TANAKA"))
    assert response.status_code == 200 and "受信一覧" in response.text
    assert "tanaka" in response.text
    assert ("login", "tanaka", "グループウェア連携: TANAKA") in audit_rows(services)


def test_a_hand_off_is_taken_once(portal: Any) -> None:
    services, base = portal()
    value = sign_handoff(SECRET.encode(), "tanaka")
    assert hand_off(base, value).status_code == 200
    again = hand_off(base, value)
    assert again.status_code == 403
    assert "使用済み" in again.text and "ポータルのメニューから開き直して" in again.text
    assert ("login_failed", "tanaka", "グループウェア連携: hand-off replayed") in audit_rows(services)


@pytest.mark.parametrize(
    ("value", "says", "reason"),
    [
        (lambda: sign_handoff(SECRET.encode(), "tanaka", issued_at=int(time.time()) - 600), "有効期限", "issued"),
        (lambda: sign_handoff(b"another secret of the same length as ours!!", "tanaka"), "確認できません", "signature"),
        (lambda: "tanaka", "確認できません", "not a signed hand-off"),
        (lambda: "", "届きませんでした", "no hand-off value"),
    ],
    ids=["expired", "wrong-key", "unsigned", "empty"],
)
def test_a_hand_off_that_does_not_verify_is_refused(portal: Any, value: Any, says: str, reason: str) -> None:
    services, base = portal()
    response = hand_off(base, value())
    assert response.status_code == 403
    assert says in response.text and "ログイン画面へ" in response.text
    assert any(action == "login_failed" and reason in detail for action, _, detail in audit_rows(services))
    assert "mailintake_session" not in response.cookies


def test_a_tampered_user_id_breaks_the_signature(portal: Any) -> None:
    services, base = portal()
    version, _, issued, nonce, mac = sign_handoff(SECRET.encode(), "tanaka").split(".")
    forged_user = sign_handoff(SECRET.encode(), "kacho").split(".")[1]
    response = hand_off(base, ".".join([version, forged_user, issued, nonce, mac]))
    assert response.status_code == 403
    assert not any(action == "login" for action, _, _ in audit_rows(services))


def test_a_hand_off_from_outside_the_office_network_is_refused(portal: Any) -> None:
    services, base = portal(groupware_networks=["10.20.0.0/16"])
    response = hand_off(base, sign_handoff(SECRET.encode(), "tanaka"))
    assert response.status_code == 403 and "この端末からは" in response.text
    assert any("outside groupware_networks" in detail for _, _, detail in audit_rows(services))


def test_the_hand_off_may_come_in_a_cookie(portal: Any) -> None:
    _, base = portal(groupware_cookie="neo_mi_sso")
    value = sign_handoff(SECRET.encode(), "tanaka")
    with httpx.Client(base_url=base, cookies={"neo_mi_sso": value}) as client:
        response = client.get("/sso/groupware", params={"next": "/messages"}, follow_redirects=True)
    assert response.status_code == 200 and "受信一覧" in response.text


def test_each_sign_in_gets_a_new_session_and_ends_the_old_one(portal: Any) -> None:
    _, base = portal()
    with httpx.Client(base_url=base) as client:
        client.get("/sso/groupware", params={"mi_sso": sign_handoff(SECRET.encode(), "tanaka")})
        first = client.cookies["mailintake_session"]
        client.get("/sso/groupware", params={"mi_sso": sign_handoff(SECRET.encode(), "tanaka")})
        second = client.cookies["mailintake_session"]
    assert first != second
    with httpx.Client(base_url=base, cookies={"mailintake_session": first}) as old:
        assert old.get("/messages").status_code in (302, 303)


def test_unknown_and_disabled_users_are_refused_with_whom_to_ask(portal: Any) -> None:
    services, base = portal()
    unknown = hand_off(base, sign_handoff(SECRET.encode(), "suzuki"))
    assert unknown.status_code == 403 and "登録されていません" in unknown.text and "システム管理者" in unknown.text
    services.accounts.update_user("tanaka", enabled=False)
    disabled = hand_off(base, sign_handoff(SECRET.encode(), "tanaka"))
    assert disabled.status_code == 403 and "無効" in disabled.text
    reasons = [detail for action, _, detail in audit_rows(services) if action == "login_failed"]
    assert any("unknown user" in r for r in reasons) and any("user disabled" in r for r in reasons)


def test_a_person_of_the_directory_gets_an_account_at_first_sign_in(portal: Any, tmp_path: Path) -> None:
    services, base = portal(signin_create_users=True)
    organisation = tmp_path / "組織マスタ.csv"
    organisation.write_text("所属コード,所属名\n100,総務課\n", encoding="utf-8")
    transfers = tmp_path / "異動情報.csv"
    transfers.write_text("職員番号,氏名,所属コード\nS0042,山田　花子,100\n", encoding="utf-8")
    DirectoryImport(services.engine).import_files([organisation, transfers])
    response = hand_off(base, sign_handoff(SECRET.encode(), "s0042"))
    assert response.status_code == 200, response.text
    user = services.accounts.by_username("S0042")
    assert user.display_name == "山田　花子" and user.section_names == ("総務課",) and user.role == "clerk"
    assert not user.has_password
    assert hand_off(base, sign_handoff(SECRET.encode(), "s0043")).status_code == 403  # not in the directory


def test_the_insecure_mode_is_flagged_on_admin_pages_and_in_the_audit_log(portal: Any) -> None:
    services, base = portal(groupware_handoff="insecure", groupware_secret_file="")
    with httpx.Client(base_url=base) as admin:
        response = admin.get("/sso/groupware", params={"mi_sso": "admin"}, follow_redirects=True)
        assert response.status_code == 200
        for path in ("/messages", "/admin/audit", *ADMIN_PAGES):
            page = admin.get(path)
            assert 'class="insecure"' in page.text and "安全でない設定" in page.text, path
    clerk_page = hand_off(base, "tanaka")
    assert 'class="insecure"' not in clerk_page.text  # a clerk cannot change it
    actions = [(a, u) for a, u, _ in audit_rows(services)]
    assert ("login_insecure", "admin") in actions and ("login_insecure", "tanaka") in actions


def test_the_hand_off_is_off_unless_configured(make_settings: Any, start_service: Any) -> None:
    service = start_service(make_settings())
    response = httpx.get(service.base_url + "/sso/groupware", params={"mi_sso": "tanaka"})
    assert response.status_code == 404


# -- checked with the groupware's common API ---------------------------------------


class FakeGroupware:
    """Stands in for desknet's NEO: a common API module on loopback that
    follows the documented shape (action parameter, access key in
    X-Desknets-Auth or access_key, JSON status ok|ng with errorno and
    errormessage), and a portal page that sets the groupware's cookie."""

    ACTION = "get_login_user"

    def __init__(self, keys: dict[str, str]) -> None:
        fake = self
        self.keys = keys
        self.requests: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                key = self.headers.get("X-Desknets-Auth") or form.get("access_key", "")
                fake.requests.append(dict(form, key=key))
                if self.path != "/cgi-bin/dneo/zrconst.cgi" or form.get("action") != fake.ACTION:
                    self.answer({"status": "ng", "errorno": 2, "errormessage": "不正なリクエストです"})
                elif key not in fake.keys:
                    self.answer({"status": "ng", "errorno": 10, "errormessage": "アクセスキーが正しくありません"})
                else:
                    self.answer({"status": "ok", "user": {"loginid": fake.keys[key], "name": "田中"}})

            def do_GET(self) -> None:  # noqa: N802 - the portal: the groupware's cookie, as after its login
                self.send_response(200)
                self.send_header("Set-Cookie", f"neo_key={next(iter(fake.keys))}; Path=/; HttpOnly")
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write("<a href='#'>メール収受</a>".encode())

            def answer(self, body: dict[str, object]) -> None:
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.api_url = f"{self.base}/cgi-bin/dneo/zrconst.cgi"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def groupware() -> Iterator[FakeGroupware]:
    fake = FakeGroupware({"key-of-tanaka-0123456789": "Tanaka"})
    yield fake
    fake.close()


def api_portal(portal: Any, groupware: FakeGroupware, **overrides: Any) -> tuple[Services, str]:
    return portal(
        groupware_handoff="api",
        groupware_secret_file="",
        groupware_api_url=groupware.api_url,
        groupware_api_action=FakeGroupware.ACTION,
        groupware_api_user_field="user.loginid",
        **overrides,
    )


def test_an_access_key_the_groupware_vouches_for_signs_the_clerk_in(portal: Any, groupware: FakeGroupware) -> None:
    services, base = api_portal(portal, groupware)
    response = hand_off(base, "key-of-tanaka-0123456789")
    assert response.status_code == 200 and "受信一覧" in response.text
    assert groupware.requests[-1] == {"action": "get_login_user", "key": "key-of-tanaka-0123456789"}
    assert ("login", "tanaka", "グループウェア連携: Tanaka") in audit_rows(services)


def test_the_groupware_cookie_reaches_mailintake_on_the_same_host(portal: Any, groupware: FakeGroupware) -> None:
    _, base = api_portal(portal, groupware, groupware_cookie="neo_key")
    with httpx.Client() as browser:
        browser.get(groupware.base + "/portal")  # signed in at the groupware
        response = browser.get(base + "/sso/groupware", params={"next": "/messages"}, follow_redirects=True)
    assert response.status_code == 200 and "受信一覧" in response.text


def test_a_key_the_groupware_does_not_know_is_refused(portal: Any, groupware: FakeGroupware) -> None:
    services, base = api_portal(portal, groupware)
    response = hand_off(base, "key-someone-made-up")
    assert response.status_code == 403 and "確認できません" in response.text
    assert any("answered ng (10 アクセスキーが正しくありません)" in d for _, _, d in audit_rows(services))


def test_an_unreachable_groupware_is_named_and_nobody_signs_in(portal: Any, groupware: FakeGroupware) -> None:
    services, base = api_portal(portal, groupware)
    groupware.close()
    response = hand_off(base, "key-of-tanaka-0123456789")
    assert response.status_code == 403 and "グループウェアに問い合わせできませんでした" in response.text
    assert any("groupware API unreachable" in d for _, _, d in audit_rows(services))
