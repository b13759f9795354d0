"""A signed-in browser session over HTTP, for the web UI's tests."""

from __future__ import annotations

import re
from typing import Any

import httpx

from mailintake.services import Services
from tests.factories import make_user

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"


def csrf_token(html: str) -> str:
    match = CSRF.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


class Browser:
    """httpx with cookies, which signs in through the real login form."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
        self.csrf = ""

    def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        form = self.client.get("/login")
        response = self.client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": csrf_token(form.text), "next": "/messages"},
        )
        if response.status_code == 303:
            self.csrf = csrf_token(self.client.get("/messages").text)
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict[str, Any] | list[tuple[str, Any]] | None = None) -> httpx.Response:
        items = list(data.items()) if isinstance(data, dict) else list(data or [])
        form: dict[str, list[Any]] = {"csrf_token": [self.csrf]}
        for key, value in items:
            form.setdefault(key, []).append(value)
        return self.client.post(path, data=form)

    def close(self) -> None:
        self.client.close()


def add_user(services: Services, username: str, sections: list[str], role: str = "clerk") -> None:
    make_user(services, username, password=PASSWORD, role=role, sections=sections, display_name=username)


# Every page of the administrators' side, for the checks that read them all.
ADMIN_PAGES = (
    "/admin/users",
    "/admin/sections",
    "/admin/classifications",
    "/admin/audit",
    "/admin/addresses",
    "/admin/mta-config",
    "/admin/filelink",
    "/status",
)
