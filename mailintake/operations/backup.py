"""Backup and restore: database, spool, originals and attachments, taken
consistently while the service runs.

Order matters: (1) the spool, (2) the database in one read transaction,
(3) the content-addressed files. Mail that moves from the spool into the
database meanwhile is in the spool copy, the database copy, or both
(storing it again is a no-op); every file the database copy refers to
exists, because stored files are immutable and never removed. With
``blob_store = database`` the files are rows, in the same snapshot.
A backup restores into either store: files of a ``files`` backup go into
the database store when that is the one configured.

The database goes out as JSON lines per table (every table of the schema,
in dependency order), so a backup taken from SQLite restores into
PostgreSQL and back.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Integer, create_engine, func, insert, select, text

from ..blobs import DatabaseBlobs, DatabaseOriginals, FileBlobs, FileOriginals
from ..errors import BadRequest
from ..models import Base
from ..services import Services
from . import blob_moving

FORMAT = "mailintake-backup/1"


@dataclass
class BackupResult:
    path: Path
    rows: dict[str, int]
    files: int


def backup(services: Services, destination: Path) -> BackupResult:
    if destination.exists() and any(destination.iterdir()):
        raise BadRequest(f"backup folder {destination} is not empty")
    destination.mkdir(mode=0o700, parents=True, exist_ok=True)
    destination.chmod(0o700)  # mail is personal data, whatever the caller's umask
    settings = services.settings
    files = _copy_tree(settings.spool_dir / "new", destination / "spool" / "new")
    rows = _dump_database(services.engine, destination / "database")
    files += _copy_tree(settings.originals_dir, destination / "originals")
    files += _copy_tree(settings.blob_dir, destination / "blobs")
    manifest = {
        "format": FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "rows": rows,
        "files": files,
    }
    (destination / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return BackupResult(destination, rows, files)


def restore(services: Services, source: Path) -> BackupResult:
    manifest_path = source / "manifest.json"
    if not manifest_path.exists():
        raise BadRequest(f"{source} is not a mailintake backup (no manifest.json)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise BadRequest(f"unsupported backup format: {manifest.get('format')!r}")
    engine = services.engine
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if conn.execute(select(func.count()).select_from(table)).scalar():
                raise BadRequest(f"restore needs an empty database; table {table.name} has rows")
    settings = services.settings
    configured = (services.blobs, services.originals)
    if services.blobs.kind == "files":
        files = _copy_tree(source / "originals", settings.originals_dir)
        files += _copy_tree(source / "blobs", settings.blob_dir)
        rows = _load_database(engine, source / "database")
        if rows.get("stored_files"):  # a backup of the database store: its files came as rows
            in_rows = (DatabaseBlobs(engine), DatabaseOriginals(engine))
            files += blob_moving.move(engine, in_rows, configured, remove_source=True).copied
    else:
        rows = _load_database(engine, source / "database")
        in_folders = (FileBlobs(source / "blobs"), FileOriginals(source / "originals"))
        files = blob_moving.move(engine, in_folders, configured).copied
    # Spool entries last: the ingester may pick them up at once.
    files += _copy_tree(source / "spool" / "new", settings.spool_dir / "new")
    services.addresses.write_snapshot()
    return BackupResult(source, rows, files)


def _dump_database(engine: Engine, folder: Path) -> dict[str, int]:
    folder.mkdir(parents=True)
    if engine.dialect.name == "sqlite":
        # A consistent copy through SQLite's online backup, then dump that.
        snapshot = folder / ".snapshot.db"
        source = engine.raw_connection()
        try:
            target = sqlite3.connect(snapshot)
            source.driver_connection.backup(target)  # type: ignore[union-attr]
            target.close()
        finally:
            source.close()
        snapshot_engine = create_engine(f"sqlite:///{snapshot}")
        try:
            return _dump_tables(snapshot_engine, folder, {})
        finally:
            snapshot_engine.dispose()
            snapshot.unlink()
    return _dump_tables(engine, folder, {"isolation_level": "REPEATABLE READ"})


def _dump_tables(engine: Engine, folder: Path, options: dict[str, Any]) -> dict[str, int]:
    """Every table in one transaction (one snapshot)."""
    counts = {}
    # Streamed: the stored files' pieces are never all in memory.
    with engine.connect().execution_options(stream_results=True, yield_per=50, **options) as conn:
        with conn.begin():
            for table in Base.metadata.sorted_tables:
                count = 0
                with gzip.open(folder / f"{table.name}.jsonl.gz", "wt", encoding="utf-8") as out:
                    for row in conn.execute(select(table).order_by(*table.primary_key.columns)).mappings():
                        out.write(json.dumps({k: _to_json(v) for k, v in row.items()}, ensure_ascii=False) + "\n")
                        count += 1
                counts[table.name] = count
    return counts


def _load_database(engine: Engine, folder: Path) -> dict[str, int]:
    counts = {}
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            path = folder / f"{table.name}.jsonl.gz"
            if not path.exists():
                counts[table.name] = 0
                continue
            batch: list[dict[str, Any]] = []
            count = batch_bytes = 0
            with gzip.open(path, "rt", encoding="utf-8") as source:
                for line in source:
                    batch.append(_from_json(table, json.loads(line)))
                    batch_bytes += len(line)
                    if len(batch) >= 500 or batch_bytes >= 1 << 24:
                        conn.execute(insert(table), batch)
                        count += len(batch)
                        batch, batch_bytes = [], 0
            if batch:
                conn.execute(insert(table), batch)
                count += len(batch)
            counts[table.name] = count
            if engine.dialect.name == "postgresql" and count:
                _advance_sequences(conn, table)
    return counts


def _advance_sequences(conn: Any, table: Any) -> None:
    """Explicit keys were inserted: move each serial column's sequence past
    them (``id`` of most tables, ``seq`` of the registration events)."""
    for column in table.primary_key.columns:
        if not isinstance(column.type, Integer):
            continue
        # NULL (no sequence) for association tables' keys: nothing to do.
        conn.execute(
            text(
                f"SELECT setval(s, (SELECT max({column.name}) FROM {table.name})) "
                f"FROM pg_get_serial_sequence('{table.name}', '{column.name}') AS s WHERE s IS NOT NULL"
            )
        )


def _to_json(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, bytes | memoryview):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    return value


def _from_json_value(value: Any) -> Any:
    if isinstance(value, dict) and "$datetime" in value:
        return dt.datetime.fromisoformat(value["$datetime"])
    if isinstance(value, dict) and "$date" in value:
        return dt.date.fromisoformat(value["$date"])
    if isinstance(value, dict) and "$bytes" in value:
        return base64.b64decode(value["$bytes"])
    return value


def _from_json(table: Any, row: dict[str, Any]) -> dict[str, Any]:
    return {key: _from_json_value(value) for key, value in row.items() if key in table.c}


def _copy_tree(source: Path, destination: Path) -> int:
    """Copy regular files (no links followed), skipping temporary names."""
    if not source.exists():
        return 0
    copied = 0
    for dirpath, _dirnames, filenames in os.walk(source):
        relative = Path(dirpath).relative_to(source)
        for name in filenames:
            if name.startswith(".") or name.endswith(".tmp"):
                continue
            src = Path(dirpath) / name
            if src.is_symlink() or not src.is_file():
                continue
            target = destination / relative / name
            if target.exists() and target.stat().st_size == src.stat().st_size:
                continue
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copy2(src, target)
            target.chmod(0o600)  # whatever the source's mode was (older releases)
            copied += 1
    return copied
