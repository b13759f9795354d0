"""Hardening against a hostile sender, a hostile mail and a hostile local
user: each test fails if the hole it names opens again."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert
from starlette.routing import Route

from mailintake.config import Settings
from mailintake.errors import AddressError
from mailintake.models import Address
from mailintake.operations import mta_config
from mailintake.services import Services, build_services
from mailintake.web.app import create_app

from .conftest import ServiceThread
from .factories import designate, make_user, stored_message
from .test_cli import run_cli
from .web import PASSWORD, add_user, csrf_token

SOUMU = "soumu@city.example.jp"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"

DANGEROUS_ADDRESSES = [
    "|/bin/sh@city.example.jp",
    "/etc/passwd@city.example.jp",
    ":include:/tmp/x@city.example.jp",
    "a,b@city.example.jp",
    '"quoted"@city.example.jp',
    "soumu@city.example.jp,evil@example.net",
    "soumu@city_example.jp",
    "soumu@-city.example.jp",
    ".soumu@city.example.jp",
]


class TestDesignatedAddressesAreSafeForTheMta:
    @pytest.mark.parametrize("address", DANGEROUS_ADDRESSES)
    def test_the_service_refuses_addresses_outside_the_safe_set(self, services: Services, address: str) -> None:
        with pytest.raises(AddressError, match="収受用アドレスとして使えません"):
            designate(services, address, "総務課")

    def test_ordinary_addresses_are_accepted(self, services: Services) -> None:
        for address in ("soumu@city.example.jp", "kikaku.sei-saku_2+in@xn--u9j.example.lg.jp"):
            designate(services, address, "総務課")

    def test_the_command_line_says_why_in_japanese(self, settings: Settings) -> None:
        refused = run_cli(settings, "address", "add", "|/bin/sh@city.example.jp", "--section", "総務課", check=False)
        assert refused.returncode == 1 and "収受用アドレスとして使えません" in refused.stderr

    def test_the_admin_page_refuses_it_with_the_same_message(
        self, services: Services, service: ServiceThread, browsers: Any
    ) -> None:
        add_user(services, "admin", [], role="system_admin")
        browser = browsers(service.base_url)
        assert browser.login("admin").status_code == 303
        response = browser.post(
            "/admin/addresses", {"address": ":include:/etc/x@city.example.jp", "section": "総務課", "label": ""}
        )
        assert response.status_code == 400 and "収受用アドレスとして使えません" in response.text
        assert [a.address for a in services.addresses.list()] == ["soumu@city.example.jp"]

    @pytest.mark.parametrize("generate", [mta_config.postfix, mta_config.sendmail])
    def test_the_generators_refuse_an_unsafe_address_stored_before_the_rule(
        self, services: Services, generate: Any
    ) -> None:
        with services.engine.begin() as conn:
            conn.execute(insert(Address).values(address="|/bin/sh@city.example.jp", section_id=None, label=""))
        with pytest.raises(AddressError):
            generate(["|/bin/sh@city.example.jp"], "copy", [("127.0.0.1", 2525)], "mailintake.internal")


class TestResponsesAboutMail:
    def test_pages_and_downloads_are_never_cached_but_static_files_may_be(
        self, services: Services, service: ServiceThread, browsers: Any
    ) -> None:
        add_user(services, "sato", ["総務課"])
        message_id = stored_message(services, SOUMU, attachments=(("資料.pdf", PDF, "application/pdf"),))
        browser = browsers(service.base_url)
        assert browser.login("sato").status_code == 303
        for path in ("/messages", f"/messages/{message_id}", f"/messages/{message_id}/original.eml",
                     f"/messages/{message_id}/source", "/login"):  # fmt: skip
            response = browser.get(path)
            assert response.status_code == 200, path
            assert response.headers["cache-control"] == "no-store", path
        assert "no-store" not in browser.get("/static/site.css").headers.get("cache-control", "")

    def test_an_id_beyond_any_row_is_404_with_the_security_headers(
        self, services: Services, service: ServiceThread, browsers: Any, token: str
    ) -> None:
        add_user(services, "sato", ["総務課"])
        browser = browsers(service.base_url)
        assert browser.login("sato").status_code == 303
        for path in ("/messages/123456789012345678901234567890", "/messages/99999999999999999999/source"):
            response = browser.get(path)
            assert response.status_code == 404, path
            assert "default-src 'none'" in response.headers["content-security-policy"]
        api = browser.client.get(
            "/api/v1/messages/123456789012345678901234567890", headers={"Authorization": f"Bearer {token}"}
        )
        assert api.status_code == 404

    def test_even_the_last_resort_error_page_carries_the_security_headers(self, services: Services) -> None:
        app = create_app(services)

        def broken(request: Any) -> Any:
            raise RuntimeError("a bug")

        app.router.routes.append(Route("/broken", broken))

        async def fetch() -> httpx.Response:
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.get("/broken")

        response = asyncio.run(fetch())
        assert response.status_code == 500
        assert response.headers["x-frame-options"] == "DENY" and response.headers["cache-control"] == "no-store"


def vm_peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def parallel_sign_ins(base_url: str, attempts: list[tuple[str, str]]) -> list[int]:
    """Every attempt at once, each through the real login form."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        form = client.get("/login")
        token, cookie = csrf_token(form.text), form.cookies["mailintake_login_csrf"]
    barrier = threading.Barrier(len(attempts))

    def attempt(credentials: tuple[str, str]) -> int:
        with httpx.Client(base_url=base_url, timeout=120, cookies={"mailintake_login_csrf": cookie}) as client:
            barrier.wait()
            data = {"username": credentials[0], "password": credentials[1], "csrf_token": token}
            return client.post("/login", data=data).status_code

    with ThreadPoolExecutor(max_workers=len(attempts)) as pool:
        return list(pool.map(attempt, attempts))


class TestSignIn:
    @pytest.mark.slow
    def test_parallel_wrong_passwords_are_checked_at_most_the_limit_and_memory_stays_bounded(
        self, make_settings: Any, service_process: Any
    ) -> None:
        """GIVEN a running service WHEN 149 wrong passwords and the right one
        for one account arrive at once, and then 120 sign-ins for different
        unknown users THEN at most 5 passwords are tested, the right one is
        refused with the rest, and the server's peak memory grows by less
        than 300 MiB."""
        settings = make_settings()
        services = build_services(settings)
        add_user(services, "sato", ["総務課"])
        proc = service_process(settings)
        base_url = f"http://127.0.0.1:{settings.http_port}"
        before = vm_peak_rss_mib(proc.proc.pid)

        statuses = parallel_sign_ins(base_url, [("sato", f"wrong password {i}") for i in range(149)] + [
            ("sato", PASSWORD)])  # fmt: skip
        checked = [s for s in statuses if s in (401, 303)]
        assert len(checked) <= 5, statuses
        assert statuses.count(429) >= len(statuses) - 5  # everything past the limit is turned away
        assert set(statuses) <= {401, 429, 303}
        failures = [e for e in services.audit.entries(make_user(services, 
            "auditor", password=None, role="system_admin")) if e.action == "login_failed"]  # fmt: skip
        assert len(failures) <= 5

        strangers = parallel_sign_ins(base_url, [(f"nobody{i}", "wrong password") for i in range(120)])
        assert set(strangers) <= {401, 429}
        grown = vm_peak_rss_mib(proc.proc.pid) - before
        print(f"\npeak RSS grew by {grown:.0f} MiB over {before:.0f} MiB")
        assert grown < 300
        services.close()

    def test_a_password_change_ends_every_session_of_that_user(
        self, services: Services, service: ServiceThread, browsers: Any
    ) -> None:
        add_user(services, "sato", ["総務課"])
        first, second = browsers(service.base_url), browsers(service.base_url)
        assert first.login("sato").status_code == 303 and second.login("sato").status_code == 303
        services.accounts.update_user("sato", password="a brand new passphrase")
        assert first.get("/messages").status_code == 303
        assert second.get("/messages").status_code == 303
        assert first.login("sato", "a brand new passphrase").status_code == 303
