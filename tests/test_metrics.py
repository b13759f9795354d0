"""/metrics in Prometheus text format."""

from __future__ import annotations

import datetime as dt
import smtplib

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailintake.records.inbox import InboxFilter
from mailintake.records.registry import RegistrationRequest
from mailintake.services import Services
from tests.factories import make_user

from .conftest import ServiceThread, wait_for
from .mails import make_message, send


def _samples(service: ServiceThread) -> dict[tuple[str, tuple], float]:
    response = httpx.get(f"{service.base_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_count_accepted_refused_ingested_and_backlog(service: ServiceThread) -> None:
    send(service.smtp_port, make_message())
    send(service.smtp_port, make_message(subject="2通目"))
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(service.smtp_port, make_message(), rcpt="nobody@city.example.jp")
    with pytest.raises(smtplib.SMTPConnectError):
        smtplib.SMTP("127.0.0.1", service.smtp_port, source_address=("127.0.0.2", 0), timeout=10)

    def settled():
        s = _samples(service)
        return (
            s.get(("mailintake_ingested_total", ()), 0) == 2
            and s.get(("mailintake_smtp_accepted_total", ()), 0) == 2
            and s
        )

    samples = wait_for(settled, timeout=10, interval=0.2)
    assert samples[("mailintake_smtp_refused_total", (("reason", "unknown_recipient"),))] == 1
    assert samples[("mailintake_smtp_refused_total", (("reason", "not_relay_network"),))] == 1
    assert samples[("mailintake_smtp_refused_total", (("reason", "too_big"),))] == 0
    assert samples[("mailintake_ingest_backlog", ())] == 0
    assert samples[("mailintake_messages", (("status", "new"),))] == 2
    assert samples[("mailintake_messages", (("status", "registered"),))] == 0
    assert samples[("mailintake_database_up", ())] == 1
    assert 0 <= samples[("mailintake_ingest_latency_seconds", ())] < 10
    assert samples[("mailintake_registrations_total", (("status", "active"),))] == 0


def test_registrations_are_counted_by_state(services: Services, service: ServiceThread) -> None:
    send(service.smtp_port, make_message())
    wait_for(lambda: services.messages.count() == 1, 10)
    clerk = make_user(services, "sato", password=None, sections=["総務課"])
    message_id = services.inbox.page(clerk, InboxFilter()).rows[0].id
    request = RegistrationRequest(message_id, "件名", "差出人", dt.date(2026, 11, 20), "1年")
    registered = services.registry.register(clerk, [request])[0]
    chief = make_user(services, "suzuki", password=None, role="section_admin", sections=["総務課"])
    services.registry.cancel(chief, registered.id, "誤登録")
    services.registry.register(clerk, [request])
    samples = _samples(service)
    assert samples[("mailintake_registrations_total", (("status", "active"),))] == 1
    assert samples[("mailintake_registrations_total", (("status", "cancelled"),))] == 1
    assert samples[("mailintake_messages", (("status", "registered"),))] == 1
