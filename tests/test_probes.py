"""Probes: only the probe this service sent, arriving once for its address
with its Message-ID before it expires, stays out of the lists. A replayed,
mis-addressed or late copy of a genuine header is shown to the clerk with a
「不正なプローブ」 note and counted."""

from __future__ import annotations

import datetime as dt
import time

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailintake.intake.probe import HEADER
from mailintake.models import Message, Probe
from mailintake.operations.probing import send_probe, wait_for_probe
from mailintake.services import Services
from tests.factories import designate

from .conftest import ServiceThread, wait_for
from .mails import make_message, send

SOUMU = "soumu@city.example.jp"
ZAISEI = "zaisei@city.example.jp"


def genuine_probe(services: Services, service: ServiceThread, address: str = SOUMU) -> tuple[str, str, str]:
    """Send a real probe straight to the relay; (probe id, header value, Message-ID)."""
    probe_id = send_probe(services, address, "127.0.0.1", service.smtp_port, "probe@city.example.jp")
    with Session(services.engine) as session:
        probe = session.get(Probe, probe_id)
        assert probe is not None
        message_id = probe.message_id_header
    result = wait_for_probe(services, probe_id, 15, time.monotonic())
    assert result.message_id is not None
    with Session(services.engine) as session:
        stored = session.get(Message, result.message_id)
        assert stored is not None
        raw = b"".join(services.originals.chunks(stored.raw_sha256, stored.raw_size))
    header = next(line for line in raw.decode().split("\r\n") if line.startswith(HEADER + ":"))
    return probe_id, header.split(":", 1)[1].strip(), message_id


def with_probe_header(subject: str, header: str, message_id: str | None = None, to: str = SOUMU) -> bytes:
    raw = make_message(subject=subject, to=to, message_id=message_id)
    return raw.replace(b"\r\n\r\n", f"\r\n{HEADER}: {header}\r\n\r\n".encode(), 1)


def listed_subjects(api: httpx.Client) -> list[str]:
    return [item["subject"] for item in api.get("/api/v1/messages").json()["items"]]


def problems_of(api: httpx.Client, subject: str) -> list[str]:
    item = next(i for i in api.get("/api/v1/messages").json()["items"] if i["subject"] == subject)
    return list(api.get(f"/api/v1/messages/{item['id']}").json()["problems"])


def test_a_genuine_probe_is_hidden_and_used_up(services: Services, service: ServiceThread, api: httpx.Client) -> None:
    probe_id, _, _ = genuine_probe(services, service)
    assert listed_subjects(api) == []
    with Session(services.engine) as session:
        assert session.scalar(select(Probe.used_at).where(Probe.probe_id == probe_id)) is not None


def test_a_replayed_header_on_another_mail_is_shown_with_a_warning(
    services: Services, service: ServiceThread, api: httpx.Client
) -> None:
    _, header, message_id = genuine_probe(services, service)
    send(service.smtp_port, with_probe_header("別のメール（見出しの使い回し）", header))
    send(service.smtp_port, with_probe_header("同じMessage-IDの再送", header, message_id=message_id))
    wait_for(lambda: len(listed_subjects(api)) == 2, 15)
    for subject in ("別のメール（見出しの使い回し）", "同じMessage-IDの再送"):
        assert any(p.startswith("不正なプローブ") for p in problems_of(api, subject))


def test_a_probe_for_another_address_is_shown(services: Services, service: ServiceThread, api: httpx.Client) -> None:
    designate(services, ZAISEI, "財政課")
    # A probe recorded for 総務課, whose header and Message-ID reach 財政課.
    _, header, message_id = genuine_probe(services, service)
    with Session(services.engine) as session, session.begin():
        session.execute(update(Probe).values(used_at=None))  # as if the original had not arrived
    send(
        service.smtp_port,
        with_probe_header("宛先違いのプローブ", header, message_id=message_id, to=ZAISEI),
        rcpt=ZAISEI,
    )
    wait_for(lambda: "宛先違いのプローブ" in listed_subjects(api), 15)
    assert any(p.startswith("不正なプローブ") for p in problems_of(api, "宛先違いのプローブ"))


def test_an_expired_probe_is_shown_and_counted(services: Services, service: ServiceThread, api: httpx.Client) -> None:
    _, header, message_id = genuine_probe(services, service)
    with Session(services.engine) as session, session.begin():
        session.execute(
            update(Probe).values(used_at=None, expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
        )
    send(service.smtp_port, with_probe_header("期限切れのプローブ", header, message_id=message_id))
    wait_for(lambda: "期限切れのプローブ" in listed_subjects(api), 15)

    def counted() -> bool:
        return "mailintake_invalid_probes_total 1.0" in httpx.get(f"{service.base_url}/metrics").text

    wait_for(counted, 10)
