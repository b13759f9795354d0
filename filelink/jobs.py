"""Work beside a delivery: a route's pre/post commands (HULFT-style jobs)
and the pruning of the archive."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

from .config import Config, Route
from .journal import Transfer
from .transfer_log import TransferLog

COMMAND_TIMEOUT = 600


def run_job(which: str, route: Route, transfer: Transfer, payload: Path, transfer_log: TransferLog) -> bool:
    """HULFT-style job before or after delivery; the exit code is logged."""
    command = route.pre if which == "pre" else route.post
    values = {"file": str(payload), "name": transfer.name, "route": route.id, "transfer": transfer.id}
    args = [part.format(**values) for part in command]
    env = dict(os.environ, **{f"FILELINK_{k.upper()}": v for k, v in values.items()})
    try:
        result = subprocess.run(args, env=env, capture_output=True, timeout=COMMAND_TIMEOUT)
        code = result.returncode
        detail = result.stderr.decode("utf-8", "replace")[-500:]
    except (OSError, subprocess.TimeoutExpired) as exc:
        code, detail = -1, str(exc)
    transfer_log.write(
        result=f"{which}-command",
        route=route.id,
        transfer=transfer.id,
        file=transfer.name,
        command=args,
        exit_code=code,
        detail=detail,
    )
    return code == 0


def prune_archive(config: Config) -> None:
    """Delete archived days older than each route's archive_days."""
    today = dt.datetime.now(dt.UTC).date()
    for route in config.routes:
        folder = config.archive_dir / route.id
        if not folder.is_dir():
            continue
        for day in folder.iterdir():
            try:
                age = (today - dt.date.fromisoformat(day.name)).days
            except ValueError:
                continue
            if age > route.archive_days:
                shutil.rmtree(day)
