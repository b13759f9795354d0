"""The delivery journal (SQLite, fully synchronous): what was claimed from
which outbox, and how far its delivery to each destination has come. Every
step is committed before the file-system step that follows it, so a restart
after a crash knows what to finish and never delivers twice."""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS transfers (
    id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    name TEXT NOT NULL,
    source_path TEXT NOT NULL,
    state TEXT NOT NULL,          -- claiming, error, done
    size INTEGER,
    sha256 TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ix_transfers_state ON transfers(state);
CREATE INDEX IF NOT EXISTS ix_transfers_route ON transfers(route, updated_at);
CREATE TABLE IF NOT EXISTS deliveries (
    transfer_id TEXT NOT NULL REFERENCES transfers(id),
    destination TEXT NOT NULL,
    state TEXT NOT NULL,          -- pending, linking (final name chosen), delivered
    final_name TEXT,
    delivered_at TEXT,
    PRIMARY KEY (transfer_id, destination)
);
"""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


@dataclass
class Transfer:
    id: str
    route: str
    name: str
    source_path: str
    state: str
    size: int | None
    sha256: str | None
    attempts: int
    next_attempt_at: str | None
    last_error: str


@dataclass
class Delivery:
    transfer_id: str
    destination: str
    state: str
    final_name: str | None


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(sql, params)

    # -- transfers -----------------------------------------------------------------

    def begin_claim(self, transfer_id: str, route: str, name: str, source: Path, destinations: tuple[str, ...]) -> None:
        self.begin_claims([(transfer_id, route, name, source, destinations)])

    def begin_claims(self, claims: list[tuple[str, str, str, Path, tuple[str, ...]]]) -> None:
        """Several claims (id, route, name, source, destinations) in one commit."""
        stamp = now()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT INTO transfers (id, route, name, source_path, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'claiming', ?, ?)",
                [
                    (transfer_id, route, name, str(source), stamp, stamp)
                    for transfer_id, route, name, source, _ in claims
                ],
            )
            self.db.executemany(
                "INSERT INTO deliveries (transfer_id, destination, state) VALUES (?, ?, 'pending')",
                [(transfer_id, d) for transfer_id, _, _, _, destinations in claims for d in destinations],
            )

    def finish(self, transfer_id: str, size: int, sha256: str) -> None:
        self.finish_many([(transfer_id, size, sha256)])

    def finish_many(self, done: list[tuple[str, int, str]]) -> None:
        """Done: archived, every destination delivered; several transfers
        (id, size, sha256) in one commit."""
        stamp = now()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "UPDATE transfers SET state = 'done', size = ?, sha256 = ?, last_error = '', next_attempt_at = NULL,"
                " updated_at = ? WHERE id = ?",
                [(size, sha256, stamp, transfer_id) for transfer_id, size, sha256 in done],
            )
            self.db.executemany(
                "UPDATE deliveries SET state = 'delivered', delivered_at = ? WHERE transfer_id = ?",
                [(stamp, transfer_id) for transfer_id, _, _ in done],
            )

    def forget(self, transfer_id: str) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM deliveries WHERE transfer_id = ?", (transfer_id,))
            self.db.execute("DELETE FROM transfers WHERE id = ?", (transfer_id,))

    def set_state(self, transfer_id: str, state: str, error: str = "") -> None:
        self._write(
            "UPDATE transfers SET state = ?, last_error = ?, next_attempt_at = NULL, updated_at = ? WHERE id = ?",
            (state, error, now(), transfer_id),
        )

    def failed_attempt(self, transfer_id: str, error: str, retry_at: dt.datetime) -> None:
        self._write(
            "UPDATE transfers SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, updated_at = ?"
            " WHERE id = ?",
            (error, retry_at.isoformat(), now(), transfer_id),
        )

    def unfinished(self) -> list[Transfer]:
        rows = self.db.execute(
            "SELECT id, route, name, source_path, state, size, sha256, attempts, next_attempt_at, last_error"
            " FROM transfers WHERE state IN ('claiming', 'claimed') ORDER BY created_at, id"
        ).fetchall()
        return [Transfer(*row) for row in rows]

    def get(self, transfer_id: str) -> Transfer | None:
        row = self.db.execute(
            "SELECT id, route, name, source_path, state, size, sha256, attempts, next_attempt_at, last_error"
            " FROM transfers WHERE id = ?",
            (transfer_id,),
        ).fetchone()
        return Transfer(*row) if row else None

    # -- deliveries ----------------------------------------------------------------

    def deliveries(self, transfer_id: str) -> list[Delivery]:
        rows = self.db.execute(
            "SELECT transfer_id, destination, state, final_name FROM deliveries WHERE transfer_id = ?"
            " ORDER BY destination",
            (transfer_id,),
        ).fetchall()
        return [Delivery(*row) for row in rows]

    def linking(self, transfer_id: str, destination: str, final_name: str) -> None:
        self.linking_many([(transfer_id, destination, final_name)])

    def linking_many(self, chosen: list[tuple[str, str, str]]) -> None:
        """The final names (id, destination, name) about to be linked, in one commit."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "UPDATE deliveries SET state = 'linking', final_name = ? WHERE transfer_id = ? AND destination = ?",
                [(name, transfer_id, destination) for transfer_id, destination, name in chosen],
            )

    def reset_delivery(self, transfer_id: str, destination: str) -> None:
        self._write(
            "UPDATE deliveries SET state = 'pending', final_name = NULL WHERE transfer_id = ? AND destination = ?",
            (transfer_id, destination),
        )

    # -- status --------------------------------------------------------------------

    def route_summary(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for route, last in self.db.execute(
            "SELECT route, MAX(updated_at) FROM transfers WHERE state = 'done' GROUP BY route"
        ):
            out.setdefault(route, {})["last_delivery"] = last
        for route, n in self.db.execute(
            "SELECT route, COUNT(*) FROM transfers WHERE state IN ('claiming', 'claimed') GROUP BY route"
        ):
            out.setdefault(route, {})["in_flight"] = n
        for route, n, error in self.db.execute(
            "SELECT route, COUNT(*), MAX(last_error) FROM transfers"
            " WHERE state IN ('claiming', 'claimed') AND attempts > 0 GROUP BY route"
        ):
            out.setdefault(route, {})["retrying"] = n
            out[route]["last_error"] = error
        for route, n in self.db.execute("SELECT route, COUNT(*) FROM transfers WHERE state = 'error' GROUP BY route"):
            out.setdefault(route, {})["errors"] = n
        return out
