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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from .config import Settings, load_settings
from .errors import MailintakeError
from .intake.addresses import JST, normalize_address
from .models import ROLES
from .people.tokens import DEFAULT_SCOPES, SCOPES
from .services import Services, build_services


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
    from .logs import configure_logging
    from .server import run_service

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
        if smtp:
            func = click.option("--smtp-host", help="Listen address for SMTP (default 127.0.0.1).")(func)
            func = click.option("--smtp-port", type=int, help="SMTP port (default 2525).")(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            names = ("smtp_host", "smtp_port", "http_host", "http_port")
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
    """Run only the web/API server."""
    _run(settings, smtp=False, web=True)


# -- database schema ----------------------------------------------------------------


@cli.group()
def db() -> None:
    """The database schema: migrations between releases."""


def _engine(settings: Settings) -> Any:
    from .db import make_engine

    return make_engine(settings)


@db.command("upgrade")
@click.argument("revision", default="head")
@common_options
def db_upgrade(settings: Settings, revision: str) -> None:
    """Migrate the database to REVISION (default: the newest). Safe to repeat;
    the SMTP relay may keep accepting mail into the spool meanwhile."""
    from . import schema

    engine = _engine(settings)
    before = schema.status(engine)
    after = schema.upgrade(engine, revision)
    click.echo(f"{before.label} → {after.label}: {after.describe()}")


@db.command("downgrade")
@click.argument("revision")
@common_options
def db_downgrade(settings: Settings, revision: str) -> None:
    """Migrate the database back to REVISION (before installing an older release)."""
    from . import schema

    after = schema.downgrade(_engine(settings), revision)
    click.echo(f"→ {after.label}: {after.describe()}")


@db.command("current")
@common_options
def db_current(settings: Settings) -> None:
    """Show the database's revision and whether it matches this program."""
    from . import schema

    found = schema.status(_engine(settings))
    click.echo(f"{found.current or '-'}\t{found.state.value}\t{found.describe()}")
    if found.state not in (schema.State.CURRENT, schema.State.EMPTY):
        sys.exit(3)


@db.command("history")
@common_options
def db_history(settings: Settings) -> None:
    """List the migrations, oldest first."""
    from . import schema

    head = schema.head_revision()
    for revision, _down, doc in schema.history():
        click.echo(f"{revision}{' (head)' if revision == head else ''}\t{doc}")


# -- designated addresses -------------------------------------------------------


@cli.group()
def address() -> None:
    """Designated receiving addresses (収受用アドレス)."""


@address.command("add")
@click.argument("address_text", metavar="ADDRESS")
@click.option("--section", required=True, help="Section (担当課) that handles this address's mail.")
@click.option("--label", default="", help="Free text shown beside the address.")
@common_options
def address_add(settings: Settings, address_text: str, section: str, label: str) -> None:
    """Designate ADDRESS; the relay accepts mail for it at once."""
    info = _services(settings).addresses.add(address_text, section, label)
    click.echo(f"added {info.address} ({info.section})")


@address.command("list")
@common_options
def address_list(settings: Settings) -> None:
    """List designated addresses."""
    infos = _services(settings).addresses.list()
    if not infos:
        click.echo("no designated addresses yet; add one with 'mailintake address add'")
        return
    for info in infos:
        state = "enabled " if info.enabled else "disabled"
        label = f"  {info.label}" if info.label else ""
        last = info.last_received.astimezone(JST).strftime("%Y-%m-%d %H:%M") if info.last_received else "-"
        click.echo(f"{info.address}\t{state}\t{info.section}\t{info.message_count} messages\tlast {last}{label}")


@address.command("edit")
@click.argument("address_text", metavar="ADDRESS")
@click.option("--section", default=None, help="New section (担当課).")
@click.option("--label", default=None, help="New label.")
@common_options
def address_edit(settings: Settings, address_text: str, section: str | None, label: str | None) -> None:
    """Change the section or label of ADDRESS."""
    info = _services(settings).addresses.update(address_text, section, label)
    click.echo(f"updated {info.address} ({info.section})")


@address.command("delete")
@click.argument("address_text", metavar="ADDRESS")
@common_options
def address_delete(settings: Settings, address_text: str) -> None:
    """Remove ADDRESS; only possible while no mail is stored for it."""
    _services(settings).addresses.delete(address_text)
    click.echo(f"deleted {normalize_address(address_text)}")


@address.command("stats")
@click.argument("address_text", metavar="ADDRESS")
@click.option("--days", type=click.IntRange(1, 366), default=14, show_default=True)
@common_options
def address_stats(settings: Settings, address_text: str, days: int) -> None:
    """Messages per day (Japan time) for ADDRESS."""
    for day, count in _services(settings).addresses.daily_counts(address_text, days):
        click.echo(f"{day.isoformat()}\t{count}")


@address.command("disable")
@click.argument("address_text", metavar="ADDRESS")
@common_options
def address_disable(settings: Settings, address_text: str) -> None:
    """Stop accepting mail for ADDRESS (550 at RCPT); stored mail stays."""
    info = _services(settings).addresses.set_enabled(address_text, False)
    click.echo(f"disabled {info.address}")


@address.command("enable")
@click.argument("address_text", metavar="ADDRESS")
@common_options
def address_enable(settings: Settings, address_text: str) -> None:
    """Accept mail for ADDRESS again."""
    info = _services(settings).addresses.set_enabled(address_text, True)
    click.echo(f"enabled {info.address}")


# -- MTA configuration -----------------------------------------------------------


@cli.command("mta-config")
@click.argument("mta", type=click.Choice(["postfix", "sendmail"]))
@click.option(
    "--mode",
    type=click.Choice(["copy", "divert"]),
    default="divert",
    show_default=True,
    help="copy: the mailbox keeps the mail and a copy comes here; divert: it comes only here.",
)
@click.option(
    "--relay",
    "relay",
    default=None,
    metavar="HOST:PORT",
    help="Where the MTA reaches the relay (default: smtp_host:smtp_port).",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path, allow_dash=True),
    default=None,
    help="Write the map files, main.cf/sendmail.mc lines and commands.sh into this private folder "
    "instead of printing; '-' writes them as a tar archive to standard output (for root to extract).",
)
@click.option("--map-dir", default=None, help="Folder the maps will live in (default /etc/postfix or /etc/mail).")
@common_options
def mta_config(
    settings: Settings, mta: str, mode: str, relay: str | None, output: Path | None, map_dir: str | None
) -> None:
    """Generate the Postfix or Sendmail configuration for the enabled addresses."""
    from .operations import mta_config as generator

    host, port = _host_port(relay) if relay else (settings.smtp_host, settings.smtp_port)
    enabled = [info.address for info in _services(settings).addresses.list() if info.enabled]
    build = generator.postfix if mta == "postfix" else generator.sendmail
    extra = {"map_dir": map_dir} if map_dir else {}
    config = build(enabled, mode, host, port, settings.copy_route_suffix, **extra)
    if output is None:
        click.echo(config.render(), nl=False)
        return
    if str(output) == "-":
        sys.stdout.buffer.write(config.archive())
        sys.stdout.buffer.flush()
        return
    for path in config.write(output):
        click.echo(f"wrote {path}")


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


# -- API tokens -------------------------------------------------------------------


@cli.group()
def token() -> None:
    """Bearer tokens for the JSON API."""


@token.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(SCOPES),
    help="What the token may do (repeatable); default messages:read. "
    "A document system needs registrations:read and registrations:ack.",
)
@click.option("--section", "sections", multiple=True, help="Limit the token to this section (repeatable).")
@common_options
def token_create(settings: Settings, name: str, scopes: tuple[str, ...], sections: tuple[str, ...]) -> None:
    """Create a token; it is printed once, as the last word."""
    value = _services(settings).tokens.create(name, scopes or DEFAULT_SCOPES, list(sections) or None)
    click.echo(f"token for {name}: {value}")


@token.command("list")
@common_options
def token_list(settings: Settings) -> None:
    """List tokens with their scopes and sections."""
    for info in _services(settings).tokens.list():
        sections = ",".join(sorted(info.section_names)) if info.section_names is not None else "all sections"
        state = "revoked" if info.revoked else "active"
        click.echo(f"{info.name}\t{state}\t{' '.join(sorted(info.scopes))}\t{sections}")


@token.command("revoke")
@click.argument("name")
@common_options
def token_revoke(settings: Settings, name: str) -> None:
    """Revoke a token at once."""
    _services(settings).tokens.revoke(name)
    click.echo(f"revoked {name}")


# -- users ----------------------------------------------------------------------------


@cli.group()
def user() -> None:
    """Web UI users: clerks (係員), section admins (所属管理者), system admins."""


def _read_password(password_stdin: bool) -> str | None:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


@user.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="clerk", show_default=True)
@click.option("--section", "sections", multiple=True, help="Section (課) the user belongs to; repeatable.")
@click.option("--name", "display_name", default="", help="Display name (氏名).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--no-password", is_flag=True, help="No local password (signs in through the groupware only).")
@common_options
def user_add(
    settings: Settings,
    username: str,
    role: str,
    sections: tuple[str, ...],
    display_name: str,
    password_stdin: bool,
    no_password: bool,
) -> None:
    """Add a user."""
    password = None if no_password else _read_password(password_stdin)
    info = _services(settings).accounts.add_user(
        username, password=password, role=role, sections=list(sections), display_name=display_name
    )
    click.echo(f"added {info.username} ({info.role}; {', '.join(info.section_names) or 'no section'})")


@user.command("list")
@common_options
def user_list(settings: Settings) -> None:
    """List users."""
    for info in _services(settings).accounts.list_users():
        state = "enabled" if info.enabled else "disabled"
        click.echo(f"{info.username}\t{info.role}\t{','.join(info.section_names)}\t{state}\t{info.display_name}")


@user.command("edit")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default=None)
@click.option("--section", "sections", multiple=True, help="Replaces the user's sections; repeatable.")
@click.option("--name", "display_name", default=None)
@click.option("--password-stdin", is_flag=True, help="Set a new password read from standard input.")
@common_options
def user_edit(
    settings: Settings,
    username: str,
    role: str | None,
    sections: tuple[str, ...],
    display_name: str | None,
    password_stdin: bool,
) -> None:
    """Change a user's role, sections, name or password."""
    password = _read_password(True) if password_stdin else None
    info = _services(settings).accounts.update_user(
        username, role=role, sections=list(sections) or None, display_name=display_name, password=password
    )
    click.echo(f"updated {info.username} ({info.role}; {', '.join(info.section_names) or 'no section'})")


@user.command("disable")
@click.argument("username")
@common_options
def user_disable(settings: Settings, username: str) -> None:
    """Disable a user; their sessions end at once."""
    _services(settings).accounts.update_user(username, enabled=False)
    click.echo(f"disabled {username}")


@user.command("enable")
@click.argument("username")
@common_options
def user_enable(settings: Settings, username: str) -> None:
    """Enable a disabled user."""
    _services(settings).accounts.update_user(username, enabled=True)
    click.echo(f"enabled {username}")


# -- directory ---------------------------------------------------------------------


@cli.group()
def directory() -> None:
    """Sections and staff assignments from the personnel system (組織マスタ, 異動情報)."""


@directory.command("import")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--inbox",
    "inboxes",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A linkage inbox folder: every *.csv in it is imported and removed once applied; repeatable.",
)
@common_options
def directory_import(settings: Settings, files: tuple[Path, ...], inboxes: tuple[Path, ...]) -> None:
    """Import 組織マスタ and 異動情報 CSV files (UTF-8 or CP932)."""
    from .people.directory import DirectoryImport

    found = list(files) + [p for inbox in inboxes for p in sorted(inbox.glob("*.csv")) if p.is_file()]
    report = DirectoryImport(_services(settings).engine).import_files(found)
    for path in report.done:
        if any(path.parent == inbox for inbox in inboxes):
            path.unlink()
    click.echo(
        f"{report.files} file(s): {report.sections_added} section(s) added, {report.sections_changed} changed, "
        f"{report.users_moved} user(s) moved, {report.rows_waiting} row(s) waiting for their 発令日"
    )
    if report.users_unknown:
        click.echo(f"no user for 職員番号 {', '.join(sorted(set(report.users_unknown)))}", err=True)


# -- probe ----------------------------------------------------------------------------


@cli.command("probe")
@click.argument("address_text", metavar="ADDRESS")
@click.option(
    "--via",
    "via",
    default=None,
    metavar="HOST:PORT",
    help="The organisation's MTA to send the probe through (default: the probe_via setting).",
)
@click.option(
    "--from", "sender", default="mailintake-probe@localhost", show_default=True, help="Envelope and header sender."
)
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for the probe to arrive.")
@common_options
def probe_command(settings: Settings, address_text: str, via: str, sender: str, timeout: float) -> None:
    """Send a probe through the MTA to a designated address and time its arrival."""
    from .operations.probing import send_probe, wait_for_probe

    services = _services(settings)
    address = normalize_address(address_text)
    if not services.addresses.get(address).enabled:
        raise click.ClickException(f"{address} is disabled; the relay would refuse the probe")
    via = via or settings.probe_via
    host, port = _host_port(via)
    started = time.monotonic()
    probe_id = send_probe(services, address, host, port, sender)
    result = wait_for_probe(services, probe_id, timeout, started)
    if result.message_id is None:
        click.echo(f"probe {probe_id} to {address} via {via}: not arrived within {timeout:g} s", err=True)
        sys.exit(1)
    click.echo(f"probe {probe_id} to {address} via {via}: arrived in {result.seconds:.2f} s")


# -- backup -------------------------------------------------------------------------


@cli.command("backup")
@click.argument("destination", type=click.Path(file_okay=False, path_type=Path))
@common_options
def backup_command(settings: Settings, destination: Path) -> None:
    """Back up database, spool, originals and attachments (safe while running)."""
    from .operations.backup import backup

    result = backup(_services(settings), destination)
    click.echo(f"backup in {result.path}: {sum(result.rows.values())} rows, {result.files} files")


@cli.command("restore")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@common_options
def restore_command(settings: Settings, source: Path) -> None:
    """Restore a backup into an empty data folder and database."""
    from .operations.backup import restore

    result = restore(_services(settings), source)
    click.echo(f"restored {sum(result.rows.values())} rows, {result.files} files from {result.path}")


# -- retention -----------------------------------------------------------------------


@cli.command("purge")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--new-days", type=click.IntRange(0), default=None, help="Override purge_new_after_days.")
@click.option("--dismissed-days", type=click.IntRange(0), default=None, help="Override purge_dismissed_after_days.")
@common_options
def purge_command(settings: Settings, dry_run: bool, new_days: int | None, dismissed_days: int | None) -> None:
    """Delete unregistered mail past its retention (未処理 and 対象外 separately).

    The running service does this itself once a day; run it by hand with
    the service stopped, or with --dry-run at any time."""
    from .intake.ingest import IngestLockHeld, acquire_ingest_lock
    from .records import retention

    rule = retention.PurgeRule.from_days(
        settings.purge_new_after_days if new_days is None else new_days,
        settings.purge_dismissed_after_days if dismissed_days is None else dismissed_days,
    )
    if not rule.active:
        click.echo("削除の設定がありません（purge_new_after_days / purge_dismissed_after_days が 0）。")
        return
    services = _services(settings)
    if dry_run:
        click.echo(f"削除の対象（{rule.describe()}）: {retention.plan(services.engine, rule).describe()}")
        return
    try:
        lock = acquire_ingest_lock(settings)
    except IngestLockHeld as exc:
        raise click.ClickException(
            "サービスが動いています。保存期間による削除はサービスが毎日自動で行います。"
            "今すぐ行うにはサービスを止めてから実行してください。"
        ) from exc
    try:
        result = retention.purge(services.engine, services.blobs, services.originals, rule)
    finally:
        os.close(lock)
    click.echo(f"削除しました（{rule.describe()}）: {result.describe()}")


# -- hand-off -------------------------------------------------------------------------


@cli.command("catalogue")
@click.option("--fiscal-year", type=click.IntRange(1989, 9999), required=True, help="年度, e.g. 2026.")
@click.option("--encoding", type=click.Choice(["utf-8", "cp932"]), default="utf-8", show_default=True)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (created 0600); standard output when omitted.",
)
@common_options
def catalogue_command(settings: Settings, fiscal_year: int, encoding: str, output: Path | None) -> None:
    """Write the 目録情報 CSV of a fiscal year: the 収受文書 in force."""
    from .handoff import catalogue

    data = catalogue.catalogue_csv(_services(settings).engine, fiscal_year, encoding)
    if output is None:
        sys.stdout.buffer.write(data)
        return
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    rows = data.count(b"\n") - 1
    click.echo(f"{output} に {rows} 件を書き出しました", err=True)


# -- backlog import -------------------------------------------------------------


@cli.command("import")
@click.option("--address", "address_text", required=True, help="Designated address to file the mail under.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@common_options
def import_command(settings: Settings, address_text: str, paths: tuple[Path, ...]) -> None:
    """Import .eml files, mbox files and Maildir folders."""
    from .operations.importer import count_sources, import_messages

    services = _services(settings)
    total = count_sources(list(paths))
    with tqdm(total=total, unit="mail", desc="import", file=sys.stderr) as bar:
        result = import_messages(services, address_text, list(paths), progress=bar.update)
    where = "stored" if result.ingested_now else "queued for the running service"
    click.echo(f"{result.found} found, {result.spooled} new ({where}), {result.already_stored} already stored")


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
