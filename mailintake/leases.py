"""One runner per cluster for the work that must not run twice: the search
indexer, the hand-off pusher, retention purges.

On PostgreSQL a lease is a session-level advisory lock held on a connection
of its own (in autocommit, so no transaction stays open). PostgreSQL drops
it when that session ends — the process killed, the node gone, the network
cut — and another node's next try takes it over, within one retry interval.
On SQLite there is one node, and the lease is always held.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

# How often a node that does not hold a lease tries again.
RETRY_SECONDS = 2.0


def lease_key(name: str, schema: str) -> int:
    """A stable 63-bit key for ``pg_try_advisory_lock``. Advisory locks are
    per database, so the schema is part of it: installations that share a
    database in schemas of their own are clusters of their own."""
    digest = hashlib.sha256(f"mailintake:{schema}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class Lease:
    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self._connection: Connection | None = None

    @property
    def clustered(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def held(self) -> bool:
        """Whether this process runs the work now: keeps a lease it has
        (checking its session is alive), else tries to take it."""
        if not self.clustered:
            return True
        try:
            if self._connection is not None:
                self._connection.execute(text("SELECT 1"))
                return True
            connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            key = lease_key(self.name, str(connection.scalar(text("SELECT current_schema()"))))
            # Named after its holder, before it holds: pg_stat_activity tells
            # which node runs what, and never shows the lock unnamed.
            holder = f"mailintake {self.name} {socket.gethostname()[:30]} {os.getpid()}"
            connection.execute(text("SELECT set_config('application_name', :name, false)"), {"name": holder})
            if connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}):
                self._connection = connection
                log.info("this node now runs %s", self.name)
                return True
            connection.execute(text("RESET application_name"))  # back to the pool as any connection
            connection.close()
            return False
        except SQLAlchemyError as exc:
            log.warning("lease %s lost or not taken (%s)", self.name, type(exc).__name__)
            self._drop()
            return False

    def release(self) -> None:
        # Closing the session ends the lock; the connection is not reused.
        self._drop()

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.invalidate()  # never back into the pool with the lock
                self._connection.close()
            except SQLAlchemyError:
                pass
            self._connection = None
