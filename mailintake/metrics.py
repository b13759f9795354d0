"""Prometheus metrics.

The relay and the ingester may run in other processes than the web server,
so each publishes its counters as a small JSON file in ``<data>/metrics``
(atomically replaced); ``/metrics`` reads those files, the spool and the
database at scrape time. Counters restart from zero when their process
restarts, which Prometheus handles.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .handoff import feed
from .models import Message, Registration, utcnow

REFUSAL_REASONS = ("not_relay_network", "too_many_connections", "unknown_recipient", "too_big", "spool_error")


def metrics_dir(data_dir: Path) -> Path:
    return data_dir / "metrics"


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


class RelayMetrics:
    """Counters of the SMTP relay, published to ``relay.json`` at most once
    a second (and on close)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = metrics_dir(data_dir) / "relay.json"
        self.accepted = 0
        self.refused = dict.fromkeys(REFUSAL_REASONS, 0)
        self._lock = threading.Lock()
        self._dirty = False
        self._last_write = 0.0

    def accept(self) -> None:
        with self._lock:
            self.accepted += 1
            self._dirty = True
        self.publish()

    def refuse(self, reason: str) -> None:
        with self._lock:
            self.refused[reason] = self.refused.get(reason, 0) + 1
            self._dirty = True
        self.publish()

    def publish(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not self._dirty or (not force and now - self._last_write < 1.0):
                return
            data = {"accepted": self.accepted, "refused": dict(self.refused)}
            self._dirty = False
            self._last_write = now
        try:
            write_json(self.path, data)
        except OSError:
            pass  # metrics must never cost a mail


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
                    len(feed.awaiting_ack(session, utcnow() - dt.timedelta(hours=self.ack_warn_hours)))
                    if self.ack_warn_hours
                    else 0
                )
            unacknowledged.add_metric([], late)
            for status in ("new", "registered", "dismissed"):
                messages.add_metric([status], counts.get(status, 0))
            for status in ("active", "cancelled"):
                registrations.add_metric([status], int(registered.get(status, 0)))
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
