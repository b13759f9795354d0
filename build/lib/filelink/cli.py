"""The ``filelink`` command: init, check, run, status.

Errors are printed as one line (``error: …``) with exit status 1, or 2 for
a configuration error; ``check`` exits 1 when it finds drift."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from . import permissions
from .config import Config, load
from .engine import Engine
from .errors import FilelinkError
from .watch import OutboxWatcher

DEFAULT_CONFIG = "/etc/filelink/filelink.toml"


def _config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        "config_path",
        default=lambda: os.environ.get("FILELINK_CONFIG", DEFAULT_CONFIG),
        show_default=f"$FILELINK_CONFIG or {DEFAULT_CONFIG}",
        help="The linkage configuration (TOML).",
    )(func)


@click.group()
def cli() -> None:
    """File-share linkage engine (システム間連携機能)."""


@cli.command()
@_config_option
def init(config_path: str) -> None:
    """Create the folder tree and apply owners, groups, modes and ACLs."""
    config = load(config_path)
    created = permissions.apply(config)
    for path in created:
        click.echo(f"created {path}")
    click.echo(f"permissions applied to {len(permissions.layout(config))} folders under {config.root}")


@cli.command()
@_config_option
def check(config_path: str) -> None:
    """Report every drift from the intended permissions (exit 1 if any)."""
    problems = permissions.check(load(config_path))
    for problem in problems:
        click.echo(problem)
    if problems:
        click.echo(f"{len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo("permissions as intended")


@cli.command()
@_config_option
@click.option("--once", is_flag=True, help="Deliver what is complete now, then exit (for cron).")
@click.option("--log-level", default="INFO", show_default=True)
def run(config_path: str, once: bool, log_level: str) -> None:
    """Deliver files as they arrive (long-running service)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load(config_path)
    engine = Engine(config)
    try:
        if once:
            engine.resume()
            engine.scan_once()
            engine.write_status()
            return
        _run_forever(config, engine)
    finally:
        engine.close()


def _run_forever(config: Config, engine: Engine) -> None:
    stop, wake = threading.Event(), threading.Event()

    def request_stop(*_: object) -> None:
        stop.set()
        wake.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    watcher = OutboxWatcher([config.outbox(route) for route in config.enabled_routes], wake)
    watcher.start()
    try:
        engine.run(stop, wake)
    finally:
        watcher.stop()


@cli.command()
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(config_path: str, as_json: bool) -> None:
    """Per route: files waiting, in flight, retrying, errors, last delivery."""
    engine = Engine(load(config_path))
    try:
        rows = engine.status()
    finally:
        engine.close()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    for row in rows:
        state = "" if row["enabled"] else " (disabled)"
        click.echo(
            f"{row['route']}{state}: {row['source']} → {', '.join(row['destinations'])} [{row['kind']}]"
            f" waiting {row['waiting']}, in flight {row['in_flight']}, retrying {row['retrying']},"
            f" errors {row['errors']}, last delivery {row['last_delivery'] or '-'}"
            + (f", last error: {row['last_error']}" if row["last_error"] else "")
        )


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except FilelinkError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
