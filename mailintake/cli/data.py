"""mailintake backup, restore, purge, catalogue and import: the data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from tqdm import tqdm

from ..config import Settings
from . import _services, cli, common_options

# -- backup -------------------------------------------------------------------------


@cli.command("backup")
@click.argument("destination", type=click.Path(file_okay=False, path_type=Path))
@common_options
def backup_command(settings: Settings, destination: Path) -> None:
    """Back up database, spool, originals and attachments (safe while running)."""
    from ..operations.backup import backup

    result = backup(_services(settings), destination)
    click.echo(f"backup in {result.path}: {sum(result.rows.values())} rows, {result.files} files")


@cli.command("restore")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@common_options
def restore_command(settings: Settings, source: Path) -> None:
    """Restore a backup into an empty data folder and database."""
    from ..operations.backup import restore

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
    from ..intake.lock import IngestLockHeld, acquire_ingest_lock
    from ..leases import Lease
    from ..records import retention

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
    lease = Lease(services.engine, "retention-purge")
    try:
        if not lease.held():
            raise click.ClickException(
                "別のノードのサービスが保存期間による削除を受け持っています（毎日自動で行います）。"
                "今すぐ行うには、すべてのノードのサービスを止めてから実行してください。"
            )
        result = retention.purge(services.engine, services.blobs, services.originals, rule)
    finally:
        lease.release()
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
    from ..handoff import catalogue

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
    from ..operations.importer import count_sources, import_messages

    services = _services(settings)
    total = count_sources(list(paths))
    with tqdm(total=total, unit="mail", desc="import", file=sys.stderr) as bar:
        result = import_messages(services, address_text, list(paths), progress=bar.update)
    where = "stored" if result.ingested_now else "queued for the running service"
    click.echo(f"{result.found} found, {result.spooled} new ({where}), {result.already_stored} already stored")


# -- blob stores ----------------------------------------------------------------


@cli.group()
def blobs() -> None:
    """Where attachments and original messages are kept."""


@blobs.command("move")
@click.option("--to", "target", type=click.Choice(["files", "database"]), required=True, help="The store to move into.")
@click.option("--remove", is_flag=True, help="Remove each file from the other store once the target has it.")
@common_options
def blobs_move_command(settings: Settings, target: str, remove: bool) -> None:
    """Copy every stored original and attachment into the store named by
    --to (checking each sha256); run again after switching blob_store."""
    from ..blobs import open_stores
    from ..operations import blob_moving

    services = _services(settings)
    source_kind = "database" if target == "files" else "files"
    source = open_stores(settings, services.engine, source_kind)
    destination = open_stores(settings, services.engine, target)
    with tqdm(total=blob_moving.to_move(services.engine), unit="file", desc="move", file=sys.stderr) as bar:
        result = blob_moving.move(services.engine, source, destination, remove_source=remove, progress=bar.update)
    click.echo(f"{source_kind} → {target}: {result.describe()}")
    if target != settings.blob_store:
        click.echo(f"次に blob_store = {target} に設定してサービスを再起動し、このコマンドをもう一度実行してください。")
    if result.damaged or result.missing:
        raise click.ClickException(
            "移せなかったファイルがあります（上記）。バックアップから戻してから再実行してください。"
        )
