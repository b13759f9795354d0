"""status.json: what the engine is doing, for the mailintake status page
and other programs."""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

from .config import Config
from .files import is_temporary
from .journal import Journal


def route_status(config: Config, journal: Journal) -> list[dict[str, Any]]:
    """Each route: waiting in its outbox, in flight, retrying, errors, last delivery."""
    summary = journal.route_summary()
    out = []
    for route in config.routes:
        outbox = config.outbox(route)
        try:
            waiting = sum(1 for e in os.scandir(outbox) if not is_temporary(e.name))
        except OSError:
            waiting = 0
        info = summary.get(route.id, {})
        out.append(
            {
                "route": route.id,
                "source": route.source,
                "kind": route.kind,
                "destinations": list(route.destinations),
                "enabled": route.enabled,
                "waiting": waiting,
                "in_flight": info.get("in_flight", 0),
                "retrying": info.get("retrying", 0),
                "errors": info.get("errors", 0),
                "last_delivery": info.get("last_delivery"),
                "last_error": info.get("last_error", ""),
            }
        )
    return out


def write_status(config: Config, routes: list[dict[str, Any]]) -> None:
    """status.json for other programs (the mailintake status page)."""
    document = {"updated_at": dt.datetime.now(dt.UTC).isoformat(), "routes": routes}
    path = config.status_path
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
