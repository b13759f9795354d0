"""Command line: ``mailintake serve`` and the administration commands.

Commands only parse options and call services; errors are mapped to
messages and exit codes in :func:`main`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import pwd
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from ..config import Settings, load_settings
from ..errors import MailintakeError
from ..services import Services, build_services


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--data-dir and --config on every command."""

    @click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Data folder (env MAILINTAKE_DATA_DIR; default ./var).",
    )
    @click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="TOML config file (env MAILINTAKE_CONFIG).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, data_dir: Path | None, config_file: Path | None, **kwargs: Any) -> Any:
        overrides = {"data_dir": data_dir}
        overrides.update(kwargs.pop("_overrides", {}))
        settings = load_settings(config_file, overrides)
        _refuse_root_in_foreign_data_dir(settings.data_dir)
        return func(settings, *args, **kwargs)

    return wrapper


def _refuse_root_in_foreign_data_dir(data_dir: Path) -> None:
    """Files that root makes in the service account's data folder (a spool
    entry, a blob, the SQLite journal) would be unreadable to the service."""
    if os.geteuid() != 0:
        return
    try:
        owner = data_dir.stat().st_uid
    except FileNotFoundError:
        return
    if owner != 0:
        try:
            name = pwd.getpwuid(owner).pw_name
        except KeyError:
            name = str(owner)
        raise click.ClickException(
            f"データフォルダ {data_dir} は利用者 {name} のものです。root ではなくその利用者で実行してください"
            f"（例: sudo -u {name} mailintake ...）。"
        )


def _services(settings: Settings) -> Services:
    return build_services(settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mailintake")
def cli() -> None:
    """mailintake: mail intake for 収受 (receipt registration)."""


# -- running -----------------------------------------------------------------


def _run(settings: Settings, smtp: bool, web: bool) -> None:
    from ..logs import configure_logging
    from ..server import run_service

    # Until the event loop takes over SIGTERM, it stops start-up like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    configure_logging(settings)
    try:
        asyncio.run(run_service(settings, smtp=smtp, web=web))
    except KeyboardInterrupt:
        pass  # stopped during start-up: nothing was running yet


def _port_options(smtp: bool, web: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        if web:
            func = click.option("--http-host", help="Listen address for HTTP (default 127.0.0.1).")(func)
            func = click.option("--http-port", type=int, help="HTTP port (default 8000).")(func)
        if web and not smtp:
            func = click.option(
                "--processes",
                "web_processes",
                type=int,
                help="Web processes on the one port (default 1; one per core).",
            )(func)
        if smtp:
            func = click.option("--smtp-host", help="Listen address for SMTP (default 127.0.0.1).")(func)
            func = click.option("--smtp-port", type=int, help="SMTP port (default 2525).")(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            names = ("smtp_host", "smtp_port", "http_host", "http_port", "web_processes")
            kwargs["_overrides"] = {n: kwargs.pop(n) for n in names if n in kwargs}
            return func(*args, **kwargs)

        return wrapper

    return decorate


@cli.command()
@_port_options(smtp=True, web=True)
@common_options
def serve(settings: Settings) -> None:
    """Run the SMTP relay, the ingester and the web/API server."""
    _run(settings, smtp=True, web=True)


@cli.command()
@_port_options(smtp=True, web=False)
@common_options
def smtp(settings: Settings) -> None:
    """Run only the SMTP relay and its ingester."""
    _run(settings, smtp=True, web=False)


@cli.command()
@_port_options(smtp=False, web=True)
@common_options
def web(settings: Settings) -> None:
    """Run only the web/API server (web_processes of them on one port)."""
    _run(settings, smtp=False, web=True)


# -- database schema ----------------------------------------------------------------


@cli.group()
def db() -> None:
    """The database schema: migrations between releases."""


def _engine(settings: Settings) -> Any:
    from ..db import make_engine

    return make_engine(settings)


@db.command("upgrade")
@click.argument("revision", default="head")
@common_options
def db_upgrade(settings: Settings, revision: str) -> None:
    """Migrate the database to REVISION (default: the newest). Safe to repeat;
    the SMTP relay may keep accepting mail into the spool meanwhile."""
    from .. import schema

    engine = _engine(settings)
    before = schema.status(engine)
    after = schema.upgrade(engine, revision)
    click.echo(f"{before.label} → {after.label}: {after.describe()}")


@db.command("downgrade")
@click.argument("revision")
@common_options
def db_downgrade(settings: Settings, revision: str) -> None:
    """Migrate the database back to REVISION (before installing an older release)."""
    from .. import schema

    after = schema.downgrade(_engine(settings), revision)
    click.echo(f"→ {after.label}: {after.describe()}")


@db.command("current")
@common_options
def db_current(settings: Settings) -> None:
    """Show the database's revision and whether it matches this program."""
    from .. import schema

    found = schema.status(_engine(settings))
    click.echo(f"{found.current or '-'}\t{found.state.value}\t{found.describe()}")
    if found.state not in (schema.State.CURRENT, schema.State.EMPTY):
        sys.exit(3)


@db.command("history")
@common_options
def db_history(settings: Settings) -> None:
    """List the migrations, oldest first."""
    from .. import schema

    head = schema.head_revision()
    for revision, _down, doc in schema.history():
        click.echo(f"{revision}{' (head)' if revision == head else ''}\t{doc}")


@db.command("search-index")
@common_options
def db_search_index(settings: Settings) -> None:
    """PostgreSQL: build the index over search terms and received time that
    lets a search look at the newest mail first (needs the btree_gin
    extension, which a database owner may create); says which index
    searches use."""
    from ..records import search

    engine = _engine(settings)
    with engine.begin() as conn:
        search.create_time_index(conn)
        click.echo(f"search index: {search.index_kind(conn)}")


def main() -> None:
    # Mail is personal data: whatever the caller's umask, every file and
    # folder this process creates is the service account's alone.
    os.umask(0o077)
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MailintakeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except SQLAlchemyError as exc:
        click.echo(f"error: database: {type(exc).__name__}: {str(exc).splitlines()[0]}", err=True)
        sys.exit(1)


# The command groups register themselves on ``cli`` when imported.
from . import addresses, data, people  # noqa: E402, F401
