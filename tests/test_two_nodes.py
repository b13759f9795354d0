"""Web on any node: two nodes (each its own data folder and processes) on
one PostgreSQL database. A clerk signed in through one is signed in through
the other, a form from one is accepted by the other, and the sign-in
throttle counts across both."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailintake.config import Settings
from mailintake.services import build_services

from .factories import designate, stored_message
from .web import add_user

pytestmark = pytest.mark.postgresql


@pytest.fixture
def nodes(
    postgres_url: str, make_settings: Callable[..., Settings], tmp_path: Path, start_service: Any
) -> tuple[Any, Any, Any]:
    settings_a = make_settings(database_url=postgres_url, data_dir=tmp_path / "node-a")
    settings_b = make_settings(database_url=postgres_url, data_dir=tmp_path / "node-b")
    services = build_services(settings_a)
    designate(services, "soumu@city.example.jp", "総務課")
    add_user(services, "sato", ["総務課"])
    add_user(services, "kanri", ["総務課"], role="system_admin")
    node_a, node_b = start_service(settings_a), start_service(settings_b)
    yield services, node_a, node_b
    services.close()


def test_a_session_and_its_forms_work_on_either_node(nodes: Any, browsers: Any) -> None:
    services, node_a, node_b = nodes
    message_id = stored_message(services, "soumu@city.example.jp", subject="どちらのノードでも")
    clerk = browsers(node_a.base_url)
    assert clerk.login("sato").status_code == 303
    # The same cookie and CSRF token, sent to node B by the proxy.
    on_b = httpx.Client(base_url=node_b.base_url, cookies=clerk.client.cookies, follow_redirects=False)
    try:
        assert "どちらのノードでも" in on_b.get("/messages").text
        done = on_b.post(f"/messages/{message_id}/dismiss", data={"csrf_token": clerk.csrf, "reason": "重複"})
        assert done.status_code == 303
    finally:
        on_b.close()
    clerk_user = services.accounts.by_username("sato")
    assert services.inbox.message(clerk_user, message_id, mark_read=False).status == "dismissed"


def test_wrong_passwords_on_one_node_lock_the_account_on_the_other(nodes: Any, browsers: Any) -> None:
    _, node_a, node_b = nodes
    on_a, on_b = browsers(node_a.base_url), browsers(node_b.base_url)
    for _ in range(5):
        assert on_a.login("sato", "wrong password").status_code == 401
    refused = on_b.login("sato")
    assert refused.status_code == 429 and "しばらく" in refused.text
    admin = browsers(node_a.base_url)
    assert admin.login("kanri").status_code == 303  # another account, same address: not locked
    # Node A's administrator page shows it and lifts it; node B lets the clerk in.
    assert "ログインの失敗が続いたため停止中" in admin.get("/admin/users").text
    users = admin.get("/admin/users").text
    assert "sato のログイン停止を解除" in users
    action = re.search(r'<form method="post" action="(/admin/users/[^"]+/unlock)"', users)
    assert action is not None
    assert admin.post(action.group(1)).status_code == 303
    assert on_b.login("sato").status_code == 303


def test_an_address_added_through_one_node_is_accepted_by_the_other_nodes_relay(nodes: Any, browsers: Any) -> None:
    import smtplib

    from .conftest import wait_for

    services, node_a, node_b = nodes
    admin = browsers(node_a.base_url)
    admin.login("kanri")
    section_id = next(s.id for s in services.accounts.sections() if s.name == "総務課")
    added = admin.post("/admin/addresses", {"address": "jinji@city.example.jp", "section": str(section_id)})
    assert added.status_code == 303

    def accepted_by_b() -> bool:
        with smtplib.SMTP("127.0.0.1", node_b.smtp_port, timeout=10) as client:
            client.ehlo()
            client.mail("mta@city.example.jp")
            return client.rcpt("jinji@city.example.jp")[0] == 250

    wait_for(accepted_by_b, 15)  # node B's ingester refreshes its relay's snapshot


def test_a_mail_the_mta_sends_to_both_nodes_is_stored_once(nodes: Any) -> None:
    """After a lost 250 the MTA sends the same mail again, maybe to the
    other node: the same bytes for the same address are one mail."""
    from .conftest import wait_for
    from .mails import make_message, send

    services, node_a, node_b = nodes
    raw = make_message(subject="二度届いたメール")
    send(node_a.smtp_port, raw)
    send(node_b.smtp_port, raw)
    from mailintake.intake.spool import Spool

    def both_ingested() -> bool:
        return all(Spool(node.settings.spool_dir).backlog() == 0 for node in (node_a, node_b))

    wait_for(lambda: services.messages.count() >= 1 and both_ingested(), 20)
    assert services.messages.count() == 1
