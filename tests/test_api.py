"""The JSON API the document system consumes."""

from __future__ import annotations

import hashlib
from urllib.parse import unquote

import httpx
import pytest

from mailintake.services import Services
from tests.factories import designate

from .conftest import ServiceThread, wait_for
from .mails import make_message, send


def _send_and_wait(service: ServiceThread, api: httpx.Client, count: int, **kwargs) -> list[dict]:
    for i in range(count):
        send(
            service.smtp_port,
            make_message(
                subject=kwargs.get("subject", f"件名 {i}"), **{k: v for k, v in kwargs.items() if k != "subject"}
            ),
        )
    return wait_for(
        lambda: (r := api.get("/api/v1/messages", params={"limit": 200}).json()["items"]) and len(r) >= count and r,
        timeout=5,
    )


class TestAuthentication:
    def test_no_token_gives_401(self, service: ServiceThread) -> None:
        response = httpx.get(f"{service.base_url}/api/v1/messages")
        assert response.status_code == 401
        assert response.json() == {"error": "missing bearer token"}

    def test_a_wrong_token_gives_401(self, service: ServiceThread) -> None:
        response = httpx.get(f"{service.base_url}/api/v1/messages", headers={"Authorization": "Bearer nope"})
        assert response.status_code == 401

    def test_a_revoked_token_gives_401(self, service: ServiceThread, services: Services) -> None:
        token = services.tokens.create("short-lived")
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{service.base_url}/api/v1/messages", headers=headers).status_code == 200
        services.tokens.revoke("short-lived")
        assert httpx.get(f"{service.base_url}/api/v1/messages", headers=headers).status_code == 401

    def test_every_endpoint_requires_the_token(self, service: ServiceThread, api: httpx.Client) -> None:
        items = _send_and_wait(service, api, 1, attachments=[("a.txt", b"x", "text/plain")])
        detail = api.get(f"/api/v1/messages/{items[0]['id']}").json()
        for path in (
            f"/api/v1/messages/{items[0]['id']}",
            f"/api/v1/messages/{items[0]['id']}/raw",
            f"/api/v1/attachments/{detail['attachments'][0]['id']}",
        ):
            assert httpx.get(service.base_url + path).status_code == 401, path


class TestListing:
    def test_items_have_the_documented_fields_newest_first(self, service: ServiceThread, api: httpx.Client) -> None:
        _send_and_wait(service, api, 3)
        body = api.get("/api/v1/messages").json()
        assert body["next_cursor"] is None
        assert [i["subject"] for i in body["items"]] == ["件名 2", "件名 1", "件名 0"]
        assert set(body["items"][0]) == {
            "id",
            "address",
            "received_at",
            "from",
            "subject",
            "attachment_count",
            "status",
        }

    def test_cursor_pagination_walks_every_message_once(self, service: ServiceThread, api: httpx.Client) -> None:
        _send_and_wait(service, api, 7)
        seen, cursor = [], None
        for _ in range(10):
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            body = api.get("/api/v1/messages", params=params).json()
            seen += [i["id"] for i in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == 7 and len(set(seen)) == 7

    def test_filters_by_address_status_and_text(
        self, service: ServiceThread, api: httpx.Client, services: Services
    ) -> None:
        designate(services, "jinji@city.example.jp", "人事課")
        send(service.smtp_port, make_message(subject="人事異動の内示"), rcpt="jinji@city.example.jp")
        send(service.smtp_port, make_message(subject="予算の照会"))
        wait_for(lambda: len(api.get("/api/v1/messages").json()["items"]) == 2, timeout=5)
        by_address = api.get("/api/v1/messages", params={"address": "JINJI@city.example.jp"}).json()["items"]
        assert [i["subject"] for i in by_address] == ["人事異動の内示"]
        assert [i["subject"] for i in api.get("/api/v1/messages", params={"q": "照会"}).json()["items"]] == [
            "予算の照会"
        ]
        assert len(api.get("/api/v1/messages", params={"status": "new"}).json()["items"]) == 2
        assert api.get("/api/v1/messages", params={"status": "registered"}).json()["items"] == []

    def test_search_finds_either_form_of_route_dependent_characters(
        self, service: ServiceThread, api: httpx.Client
    ) -> None:
        send(service.smtp_port, make_message(subject="受付 9:00〜17:00（気温 −5 度）"))
        wait_for(lambda: api.get("/api/v1/messages").json()["items"], timeout=5)
        for query in ("9:00〜17:00", "9:00～17:00", "−5", "－5"):
            items = api.get("/api/v1/messages", params={"q": query}).json()["items"]
            assert [i["subject"] for i in items] == ["受付 9:00～17:00（気温 －5 度）"], query

    def test_attachment_count_is_listed(self, service: ServiceThread, api: httpx.Client) -> None:
        items = _send_and_wait(
            service, api, 1, attachments=[("a.pdf", b"%PDF", "application/pdf"), ("b.txt", b"b", "text/plain")]
        )
        assert items[0]["attachment_count"] == 2

    @pytest.mark.parametrize(
        "params",
        [{"status": "bogus"}, {"cursor": "!!!"}, {"limit": "0"}, {"limit": "abc"}, {"address": "nobody@example.jp"}],
    )
    def test_bad_parameters_give_400_with_a_json_error(self, api: httpx.Client, params: dict) -> None:
        response = api.get("/api/v1/messages", params=params)
        assert response.status_code == 400
        assert "error" in response.json()


class TestDetailAndFiles:
    def test_detail_has_the_documented_fields(self, service: ServiceThread, api: httpx.Client) -> None:
        items = _send_and_wait(service, api, 1, attachments=[("見積書.pdf", b"%PDF-1.4 quote", "application/pdf")])
        detail = api.get(f"/api/v1/messages/{items[0]['id']}").json()
        assert {
            "id",
            "address",
            "received_at",
            "message_id",
            "from",
            "to",
            "cc",
            "subject",
            "date",
            "text",
            "has_html",
            "attachments",
            "status",
            "problems",
        } <= set(detail)
        assert detail["attachments"] == [
            {
                "id": detail["attachments"][0]["id"],
                "filename": "見積書.pdf",
                "original_filename": "見積書.pdf",
                "content_type": "application/pdf",
                "size": len(b"%PDF-1.4 quote"),
                "sha256": hashlib.sha256(b"%PDF-1.4 quote").hexdigest(),
                "part_of": None,
            }
        ]
        assert detail["has_html"] is False and detail["problems"] == []

    def test_attachment_download_is_exact_with_a_safe_disposition(
        self, service: ServiceThread, api: httpx.Client
    ) -> None:
        data = bytes(range(256)) * 10
        items = _send_and_wait(
            service, api, 1, attachments=[('../../etc/報告"書".bin', data, "application/octet-stream")]
        )
        attachment = api.get(f"/api/v1/messages/{items[0]['id']}").json()["attachments"][0]
        response = api.get(f"/api/v1/attachments/{attachment['id']}")
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["x-content-type-options"] == "nosniff"
        disposition = response.headers["content-disposition"]
        assert disposition.startswith("attachment; ")
        star = disposition.split("filename*=UTF-8''", 1)[1]
        assert "/" not in unquote(star) and "\\" not in unquote(star)
        assert "報告" in unquote(star)

    def test_unknown_ids_give_404(self, api: httpx.Client) -> None:
        for path in ("/api/v1/messages/999999", "/api/v1/messages/999999/raw", "/api/v1/attachments/999999"):
            response = api.get(path)
            assert response.status_code == 404, path
            assert "error" in response.json()

    def test_non_numeric_ids_give_400(self, api: httpx.Client) -> None:
        assert api.get("/api/v1/messages/abc").status_code == 400


class TestHealth:
    def test_healthz_reports_database_spool_and_backlog(self, service: ServiceThread) -> None:
        body = httpx.get(f"{service.base_url}/healthz").json()
        index = body.pop("search_index")
        assert body == {"status": "ok", "database": True, "spool_writable": True, "backlog": 0}
        # Which index searches use: SQLite's FTS5; on PostgreSQL terms and time
        # (newest mail first, tests/test_search_ordered.py).
        assert index == ("fts5" if service.settings.database_url.startswith("sqlite") else "gin+time")

    def test_every_response_carries_security_headers(self, service: ServiceThread) -> None:
        for path in ("/", "/healthz", "/api/v1/messages"):
            headers = httpx.get(service.base_url + path).headers
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"
            assert "default-src 'none'" in headers["content-security-policy"]
