"""Prometheus metrics: ``/metrics`` reads the counters the relay and the
ingester publish (intake/counters.py), the spool and the database at
scrape time. Counters restart from zero when their process restarts, which
Prometheus handles.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..intake.counters import REFUSAL_REASONS, metrics_dir, read_json
from ..models import Message, MessageStatus, Registration, RegistrationStatus, utcnow
from ..records import events


class IntakeCollector(Collector):
    def __init__(self, data_dir: Path, spool_backlog: Any, engine: Any, ack_warn_hours: float = 0) -> None:
        self.data_dir = data_dir
        self.spool_backlog = spool_backlog
        self.engine = engine
        self.ack_warn_hours = ack_warn_hours

    def collect(self) -> Iterator[Any]:
        folder = metrics_dir(self.data_dir)
        relay = read_json(folder / "relay.json")
        accepted = CounterMetricFamily("mailintake_smtp_accepted", "Messages accepted (answered 250) by the relay.")
        accepted.add_metric([], relay.get("accepted", 0))
        yield accepted
        refused = CounterMetricFamily("mailintake_smtp_refused", "SMTP refusals by reason.", labels=["reason"])
        for reason in REFUSAL_REASONS:
            refused.add_metric([reason], relay.get("refused", {}).get(reason, 0))
        yield refused

        ingest = read_json(folder / "ingest.json")
        stored = CounterMetricFamily("mailintake_ingested", "Messages stored by the ingester.")
        stored.add_metric([], ingest.get("stored", 0))
        yield stored
        invalid = CounterMetricFamily(
            "mailintake_invalid_probes",
            "Mails carrying a probe header that was not honoured (forged, replayed, late or misaddressed); "
            "they are listed with a note.",
        )
        invalid.add_metric([], ingest.get("invalid_probes", 0))
        yield invalid
        latency = GaugeMetricFamily(
            "mailintake_ingest_latency_seconds", "Time from 250 to stored, for the newest message of the last batch."
        )
        latency.add_metric([], ingest.get("latency_seconds", 0.0))
        yield latency
        backlog = GaugeMetricFamily("mailintake_ingest_backlog", "Accepted messages waiting in the spool.")
        backlog.add_metric([], self.spool_backlog())
        yield backlog
        yield from self._from_database()

    def _from_database(self) -> Iterator[Any]:
        """Counts read from the database at scrape time; while it is down,
        mailintake_database_up is 0 and the rest stay empty."""
        messages = GaugeMetricFamily(
            "mailintake_messages", "Stored messages by status (registered = 収受済).", labels=["status"]
        )
        registrations = CounterMetricFamily(
            "mailintake_registrations",
            "収受登録 made, by their state now (cancelled = 取消; numbers are never reused).",
            labels=["status"],
        )
        unacknowledged = GaugeMetricFamily(
            "mailintake_registrations_unacknowledged",
            "Registrations whose newest event the document system has not acknowledged within "
            "handoff_ack_warn_hours (0 when the warning is off).",
        )
        up = GaugeMetricFamily("mailintake_database_up", "1 when the database answered this scrape.")
        try:
            with Session(self.engine) as session:
                rows = session.execute(
                    select(Message.status, func.count()).where(Message.probe_id.is_(None)).group_by(Message.status)
                )
                counts = {status: int(n) for status, n in rows}
                registered = dict(
                    session.execute(select(Registration.status, func.count()).group_by(Registration.status)).all()
                )
                late = (
                    events.count_awaiting_ack(session, utcnow() - dt.timedelta(hours=self.ack_warn_hours))
                    if self.ack_warn_hours
                    else 0
                )
            unacknowledged.add_metric([], late)
            for message_status in MessageStatus:
                messages.add_metric([message_status.value], counts.get(message_status, 0))
            for registration_status in RegistrationStatus:
                registrations.add_metric([registration_status.value], int(registered.get(registration_status, 0)))
            up.add_metric([], 1)
        except SQLAlchemyError:
            up.add_metric([], 0)
        yield messages
        yield registrations
        yield unacknowledged
        yield up


def render(data_dir: Path, spool_backlog: Any, engine: Any, ack_warn_hours: float = 0) -> bytes:
    registry = CollectorRegistry()
    registry.register(IntakeCollector(data_dir, spool_backlog, engine, ack_warn_hours))
    return generate_latest(registry)
