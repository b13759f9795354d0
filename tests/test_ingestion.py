"""Ingestion: whatever the parser does, the message is stored."""

from __future__ import annotations

import datetime as dt

import httpx
import sqlalchemy

from mailintake.intake.ingest import POISON_NOTE, Ingester
from mailintake.intake.spool import Envelope, Spool

from .conftest import wait_for
from .factories import designate
from .mails import make_message, send


def _many_parts(count: int, extra_headers: int = 0) -> bytes:
    boundary = "b0undary"
    extra = "".join(f"X-Note-{k}: {k}\r\n" for k in range(extra_headers))
    parts = "".join(
        f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
        f'Content-Disposition: attachment; filename="p{i}.bin"\r\n{extra}\r\npart {i}\r\n'
        for i in range(count)
    )
    return (
        "From: bomb@example.jp\r\nTo: soumu@city.example.jp\r\nSubject: parts\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"{parts}--{boundary}--\r\n"
    ).encode()


def _api(service, token: str) -> httpx.Client:
    return httpx.Client(base_url=service.base_url, headers={"Authorization": f"Bearer {token}"})


def test_a_mail_that_stalls_the_parser_is_stored_unparsed_and_ingestion_goes_on(
    make_settings, database_url: str, services, designated: str, start_service, token: str
) -> None:
    """GIVEN a parse time limit WHEN a mail takes longer to parse THEN the
    parser is restarted, the mail is stored with its raw source and a note,
    and the next mail is parsed normally."""
    settings = make_settings(database_url=database_url, parse_time_limit=0.2)
    service = start_service(settings)
    # Under the boundary-line limit; the headers make the parse last over a
    # second on any machine, well past the limit and the supervisor's 0.2 s look.
    raw = _many_parts(7000, extra_headers=80)
    send(service.smtp_port, raw)
    send(service.smtp_port, make_message(subject="後続のメール"))
    with _api(service, token) as api:
        items = wait_for(lambda: len(r := api.get("/api/v1/messages").json()["items"]) == 2 and r, timeout=30)
        by_subject = {i["subject"]: i for i in items}
        assert "後続のメール" in by_subject
        stalled = next(i for i in items if i["subject"] != "後続のメール")
        detail = api.get(f"/api/v1/messages/{stalled['id']}").json()
        assert detail["problems"] == [POISON_NOTE]
        assert api.get(f"/api/v1/messages/{stalled['id']}/raw").content == raw
    assert Spool(settings.spool_dir).backlog() == 0
    assert list(Spool(settings.spool_dir).poison.iterdir()) == []


def test_a_message_without_headers_or_body_structure_is_still_stored(service, api: httpx.Client) -> None:
    raw = b"\x00\xff garbage that is not a mail \r\n\r\n\x1b$B\r\n"
    send(service.smtp_port, raw)
    item = wait_for(lambda: api.get("/api/v1/messages").json()["items"], timeout=5)[0]
    assert item["subject"] == ""
    assert api.get(f"/api/v1/messages/{item['id']}/raw").content == raw


def test_a_nul_byte_in_a_header_does_not_hold_back_other_mail(service, api: httpx.Client) -> None:
    """PostgreSQL refuses NUL in text; the stored text replaces it."""
    send(service.smtp_port, b"Subject: before\x00after\r\nFrom: a@example.jp\r\n\r\nbody\x00\r\n")
    send(service.smtp_port, make_message(subject="次のメール"))
    items = wait_for(lambda: len(r := api.get("/api/v1/messages").json()["items"]) == 2 and r, timeout=5)
    assert {i["subject"] for i in items} == {"before\ufffdafter", "次のメール"}


def test_an_overlong_content_type_is_kept_shortened(service, api: httpx.Client) -> None:
    long_type = "application/x-" + "a" * 300
    raw = (
        "From: a@example.jp\r\nSubject: long type\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        f"--b\r\nContent-Type: {long_type}\r\nContent-Disposition: attachment; filename=x.bin\r\n\r\ndata\r\n--b--\r\n"
    ).encode()
    send(service.smtp_port, raw)
    item = wait_for(lambda: api.get("/api/v1/messages").json()["items"], timeout=5)[0]
    attachment = api.get(f"/api/v1/messages/{item['id']}").json()["attachments"][0]
    assert attachment["content_type"] == long_type[:255]
    assert attachment["filename"] == "x.bin"


def test_a_forged_probe_header_does_not_hide_a_mail(service, api: httpx.Client) -> None:
    raw = make_message(subject="隠されてはいけないメール").replace(
        b"\r\n\r\n", b"\r\nX-Mailintake-Probe: 1700000000-0123456789abcdef.00ff\r\n\r\n", 1
    )
    send(service.smtp_port, raw)
    item = wait_for(lambda: api.get("/api/v1/messages").json()["items"], timeout=5)[0]
    assert item["subject"] == "隠されてはいけないメール"
    detail = api.get(f"/api/v1/messages/{item['id']}").json()
    assert any("不正なプローブ" in p for p in detail["problems"])


def test_a_mail_spooled_again_is_stored_once_per_address(settings, services, designated: str) -> None:
    """An MTA that lost our 250 sends the mail again: each address keeps
    one copy, and an address that did not have it yet still gets it."""
    other = designate(services, "zaisei@city.example.jp", "財政課").address
    raw = make_message(subject="二度届いた通知")
    ingester = Ingester(settings, services.engine, services.spool)

    def spool_for(*rcpts: str) -> None:
        writer = services.spool.open()
        writer.write(raw)
        services.spool.commit(writer, Envelope("yamada@example.co.jp", rcpts, "127.0.0.1", dt.datetime.now(dt.UTC)))

    spool_for(designated)
    assert ingester.ingest_pending() == 1
    spool_for(designated, other)
    spool_for(other)
    assert ingester.ingest_pending() == 2
    with services.engine.connect() as conn:
        stored = conn.execute(
            sqlalchemy.text(
                "SELECT a.address, count(*) FROM messages m JOIN addresses a ON a.id = m.address_id GROUP BY a.address"
            )
        ).all()
    assert dict(stored) == {designated: 1, other: 1}
    assert ingester.stored_total == 2 and services.spool.pending() == []
