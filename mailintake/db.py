"""Engine creation and schema set-up for SQLite and PostgreSQL."""

from __future__ import annotations

import importlib
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from .config import Settings, read_secret


def make_engine(settings: Settings) -> Engine:
    url = settings.database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, pool_size=8, max_overflow=12)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    parsed = make_url(url)
    if settings.database_password_file is not None:
        parsed = parsed.set(password=read_secret(settings.database_password_file, "database_password_file"))
    # More connections than the web process has page threads (WEB_THREADS),
    # leaving room for the pusher and the leases' own sessions.
    return create_engine(parsed, pool_pre_ping=True, pool_size=8, max_overflow=12)


def insert_unless_present(dialect: str, table: Any, values: dict[str, Any], conflict: list[str] | None = None) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` of ``values`` for ``dialect``
    (postgresql or sqlite); ``conflict``: the unique columns, when not the
    primary key. The dialect's module is imported here, when first used: the
    other database's would cost every process about 2 MB."""
    module = importlib.import_module(f"sqlalchemy.dialects.{'postgresql' if dialect == 'postgresql' else 'sqlite'}")
    return module.insert(table).values(**values).on_conflict_do_nothing(index_elements=conflict)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web server read while the ingester writes. FULL because the
    # ingester deletes a spool file right after its commit: the commit must be
    # on disk by then, power loss included.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def database_reachable(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except SQLAlchemyError:
        return False
