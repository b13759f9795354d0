"""配送経路: the Received: headers read by mail-parser into hops, shown on
the mail's page with the time the organisation's own server received it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mailintake.mail.delivery_route import header_block, hops
from mailintake.services import Services

from .conftest import ServiceThread, wait_for
from .mails import make_message, send
from .web import add_user

TWO_HOPS = (
    b"Received: from mail.city.example.jp (mail.city.example.jp [10.0.0.5])\r\n"
    b"\tby intake.city.example.jp (Postfix) with ESMTPS id 4AB12\r\n"
    b"\tfor <soumu@city.example.jp>; Fri, 20 Nov 2026 09:31:02 +0900 (JST)\r\n"
    b"Received: from mx.example.co.jp (mx.example.co.jp [203.0.113.7])\r\n"
    b"\tby mail.city.example.jp (Postfix) with ESMTP id 99F\r\n"
    b"\tfor <soumu@city.example.jp>; Fri, 20 Nov 2026 09:30:40 +0900 (JST)\r\n"
)


def test_received_headers_become_hops_oldest_first_with_their_times_and_delay() -> None:
    route = hops(header_block([TWO_HOPS + b"Subject: x\r\n\r\nbody\r\n"]))
    assert [(h.number, h.receiver.split()[0], h.sender.split()[0], h.protocol) for h in route] == [
        (1, "mail.city.example.jp", "mx.example.co.jp", "ESMTP"),
        (2, "intake.city.example.jp", "mail.city.example.jp", "ESMTPS"),
    ]
    assert route[1].at == dt.datetime(2026, 11, 20, 0, 31, 2, tzinfo=dt.UTC)
    assert route[1].delay_seconds == 22


def test_the_header_block_ends_at_the_first_empty_line_even_across_chunks() -> None:
    mail = TWO_HOPS + b"Subject: x\r\n\r\nReceived: from body by body; Fri, 20 Nov 2026 09:00:00 +0900\r\n"
    chunks = [mail[i : i + 7] for i in range(0, len(mail), 7)]
    assert header_block(chunks) == TWO_HOPS + b"Subject: x\r\n\r\n"
    assert len(hops(header_block(chunks))) == 2


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_received_header_gives_a_route_or_none_and_never_an_error(junk: bytes) -> None:
    route = hops(b"Received: " + junk.replace(b"\n", b" ") + b"\r\nSubject: x\r\n\r\n")
    assert all(h.at is None or h.at.tzinfo is not None for h in route)


def test_the_mail_page_shows_the_route_and_when_the_organisation_received_it(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "sato", ["総務課"])
    send(service.smtp_port, TWO_HOPS + make_message(subject="経路のあるメール"))
    wait_for(lambda: services.messages.count() == 1, 15)
    browser = browsers(service.base_url)
    browser.login("sato")
    listed = browser.get("/messages").text
    message_id = int(listed.split('data-id="', 1)[1].split('"', 1)[0])
    page = browser.get(f"/messages/{message_id}").text
    assert "配送経路（2 段）" in page
    assert "庁内のメールサーバーが受け取った時刻" in page and "2026-11-20 09:31:02" in page
    assert page.index("mx.example.co.jp") < page.index("intake.city.example.jp")


def test_a_mail_without_received_headers_shows_no_route(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "sato", ["総務課"])
    send(service.smtp_port, make_message(subject="経路なし"))
    wait_for(lambda: services.messages.count() == 1, 15)
    browser = browsers(service.base_url)
    browser.login("sato")
    message_id = int(browser.get("/messages").text.split('data-id="', 1)[1].split('"', 1)[0])
    assert "配送経路" not in browser.get(f"/messages/{message_id}").text
