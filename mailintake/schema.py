"""The database schema's version: Alembic migrations behind a small API.

A new, empty database is brought to the newest revision on first use. A
database created before migrations existed (tables but no
``alembic_version``) is stamped as the baseline, never rebuilt. Any other
database must be at the code's revision; otherwise the service refuses to
start and says which command to run.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection, Engine, inspect, text

from .errors import MailintakeError
from .models import UTCDateTime

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).with_name("migrations")
# The newest revision, so that the check every process makes at start (and
# the ingester every few seconds) needs no Alembic, which costs each process
# about 11 MB; a test keeps it equal to the migrations' head.
HEAD = "0015"
# The schema as it stood when migrations were introduced.
BASELINE = "0001"
# Serialises migrations of one PostgreSQL database (two processes starting
# on an empty database at once).
_PG_LOCK_KEY = 0x6D61696C  # "mail"


# Created beside the ORM tables (mailintake.records.search), so autogenerate must
# never propose to drop them: the FTS5 table, its shadow tables, the
# PostgreSQL tsvector table and the indexer's watermark.
SEARCH_TABLES = frozenset({"message_search", "search_state"})


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Autogenerate's filter (used by migrations/env.py and the tests)."""
    if type_ == "table" and name is not None:
        return name not in SEARCH_TABLES and not name.startswith("message_search_")
    if type_ == "index" and name == "ix_message_search_terms":
        return False
    return True


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # A migration is a frozen snapshot: it names plain SQLAlchemy types,
    # never the application's own classes, which may change later.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


class SchemaMismatch(MailintakeError):
    """The database is not at the revision this code expects."""

    exit_code = 3


class State(enum.Enum):
    EMPTY = "empty"
    UNVERSIONED = "unversioned"  # created by a release before migrations
    BEHIND = "behind"
    CURRENT = "current"
    AHEAD = "ahead"


@dataclass(frozen=True)
class Status:
    state: State
    current: str | None
    head: str

    @property
    def label(self) -> str:
        """The revision as the commands print it."""
        if self.state is State.UNVERSIONED:
            return f"{BASELINE}（未記録）"
        return self.current or "なし"

    def describe(self) -> str:
        return {
            State.EMPTY: "データベースは空です（最初の起動で作成されます）",
            State.UNVERSIONED: f"移行前の版で作成されたデータベースです（基準版 {BASELINE} として扱います）",
            State.BEHIND: f"データベースは版 {self.current}、このプログラムは版 {self.head} です",
            State.CURRENT: f"データベースは最新の版 {self.head} です",
            State.AHEAD: f"データベースは版 {self.current} で、このプログラム（版 {self.head}）より新しい版です",
        }[self.state]


@functools.cache
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS))


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None
    return head


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _current(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def status(engine: Engine) -> Status:
    head = head_revision()
    with engine.connect() as conn:
        current = _current(conn)
        has_tables = inspect(conn).has_table("messages")
    if current is None:
        return Status(State.UNVERSIONED if has_tables else State.EMPTY, None, head)
    if current == head:
        return Status(State.CURRENT, current, head)
    known = {rev.revision for rev in _script().walk_revisions()}
    return Status(State.BEHIND if current in known else State.AHEAD, current, head)


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # Batch mode copies tables; with foreign keys on, dropping the
            # old copy would fail or cascade. Checked again afterwards.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        else:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
            conn.commit()
        try:
            yield conn
            if conn.dialect.name == "sqlite":
                problems = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                if problems:
                    raise SchemaMismatch(f"移行後に外部キーの不整合があります: {problems[:5]}")
        finally:
            if conn.dialect.name == "sqlite":
                conn.rollback()
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            else:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
            conn.commit()


def upgrade(engine: Engine, revision: str = "head") -> Status:
    """Bring the database to ``revision``; an unversioned database is first
    stamped as the baseline it was created as."""
    from alembic import command

    with _migrating(engine) as conn:
        config = _config(conn)
        if _current(conn) is None and inspect(conn).has_table("messages"):
            command.stamp(config, BASELINE)
            conn.commit()
        command.upgrade(config, revision)
        conn.commit()
    return status(engine)


def downgrade(engine: Engine, revision: str) -> Status:
    from alembic import command

    with _migrating(engine) as conn:
        command.downgrade(_config(conn), revision)
        conn.commit()
    return status(engine)


def history() -> list[tuple[str, str | None, str]]:
    """(revision, previous revision, first line of its description), oldest first."""
    out = []
    for rev in _script().walk_revisions():
        down = rev.down_revision if isinstance(rev.down_revision, str) or rev.down_revision is None else None
        out.append((rev.revision, down, (rev.doc or "").splitlines()[0] if rev.doc else ""))
    return list(reversed(out))


def ensure_current(engine: Engine) -> None:
    """Create the schema in an empty database; otherwise require the code's
    revision, and say which command to run when it is not there."""
    with engine.connect() as conn:
        if _current(conn) == HEAD:
            return
    found = status(engine)
    if found.state is State.EMPTY:
        upgrade(engine)
    elif found.state in (State.UNVERSIONED, State.BEHIND):
        raise SchemaMismatch(f"{found.describe()}。先に `mailintake db upgrade` を実行してください。")
    elif found.state is State.AHEAD:
        raise SchemaMismatch(
            f"{found.describe()}。新しい版のプログラムを使うか、その版で `mailintake db downgrade {found.head}` "
            "を実行してから戻してください。"
        )
