"""Counters of the relay and the ingester for /metrics.

They may run in other processes than the web server, so each publishes its
counters as a small JSON file in ``<data>/metrics`` (atomically replaced),
which operations/metrics.py reads at scrape time.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

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
