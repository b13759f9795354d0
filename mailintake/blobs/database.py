"""The ``database`` store: attachments and originals as rows of
``stored_files`` with their bytes in ``stored_chunks`` (1 MiB each), so
every node of a cluster serves every mail and the database's own backup,
replication and failover cover them.

Small files wait in memory until ``flush`` and then go in one transaction
(the ingester flushes once per batch, as it fsyncs the files store once);
a file larger than one piece is written at once, piece by piece, in a
transaction of its own. Either way a file is there whole or not at all, and
storing what is already there (same sha256) is a no-op, also when two nodes
store it at the same moment.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from ..db import insert_unless_present
from ..fsync import read_exactly
from ..models import StoredChunk, StoredFile
from .common import CHUNK, check_sha256

ATTACHMENT = "a"
ORIGINAL = "o"
# Files waiting for ``flush`` are written early once they add up to this.
PENDING_LIMIT = 16 * CHUNK


class _DatabaseFiles:
    kind = "database"

    def __init__(self, engine: Engine, file_kind: str) -> None:
        self.engine = engine
        self.file_kind = file_kind
        self._pending: dict[str, bytes] = {}
        self._pending_bytes = 0

    def exists(self, sha256: str) -> bool:
        with self.engine.connect() as conn:
            return self._count(conn, check_sha256(sha256)) is not None

    def flush(self) -> None:
        if not self._pending:
            return
        with self.engine.begin() as conn:
            for sha256, data in self._pending.items():
                if self._claim(conn, sha256, len(data), 1):
                    conn.execute(insert(StoredChunk).values(kind=self.file_kind, sha256=sha256, seq=0, data=data))
        self._pending.clear()
        self._pending_bytes = 0

    def lock(self, conn: Connection, shas: Collection[str], exclusive: bool = False) -> set[str]:
        """Lock the files' rows until ``conn``'s transaction ends (shared or
        exclusive; PostgreSQL — SQLite has one writer); those stored."""
        found: set[str] = set()
        for batch in _batches(shas):
            statement = select(StoredFile.sha256).where(self._key(StoredFile), StoredFile.sha256.in_(batch))
            if conn.dialect.name == "postgresql":
                statement = statement.with_for_update(read=not exclusive)
            found.update(conn.scalars(statement))
        return found

    def remove(self, shas: Collection[str], conn: Connection | None = None) -> int:
        if conn is None:
            with self.engine.begin() as own:
                return self.remove(shas, own)
        removed = 0
        for batch in _batches(shas):
            conn.execute(delete(StoredChunk).where(self._key(StoredChunk), StoredChunk.sha256.in_(batch)))
            removed += len(conn.scalars(
                delete(StoredFile).where(self._key(StoredFile), StoredFile.sha256.in_(batch)).returning(StoredFile.sha256)
            ).all())  # fmt: skip
        return removed

    def _read(self, sha256: str, size: int | None = None) -> Iterator[bytes]:
        """The file's pieces in order, each fetched on its own short-lived
        connection: a slow download holds no connection between pieces."""
        with self.engine.connect() as conn:
            count = self._count(conn, check_sha256(sha256))
        if count is None:
            raise FileNotFoundError(f"no stored file {sha256}")
        left = size
        for seq in range(count):
            with self.engine.connect() as conn:
                data = conn.scalar(
                    select(StoredChunk.data).where(
                        self._key(StoredChunk), StoredChunk.sha256 == sha256, StoredChunk.seq == seq
                    )
                )
            if data is None:
                raise FileNotFoundError(f"stored file {sha256} lacks piece {seq}")
            if left is not None:
                data = data[:left]
                left -= len(data)
            yield bytes(data)
            if left == 0:
                return

    def _add(self, sha256: str, data: bytes) -> None:
        """Keep a small file for ``flush``."""
        if sha256 in self._pending:
            return
        self._pending[sha256] = data
        self._pending_bytes += len(data)
        if self._pending_bytes >= PENDING_LIMIT:
            self.flush()

    def _write_pieces(self, sha256: str, size: int, pieces: Iterable[bytes]) -> None:
        """Write a large file of known sha256 and size in one transaction.
        The row first: a node storing the same file meanwhile waits for
        this transaction and then finds the file there."""
        with self.engine.begin() as conn:
            if self._claim(conn, sha256, size, -(-size // CHUNK)):
                written, _count = self._insert_pieces(conn, sha256, pieces)
                if written != size:
                    raise ValueError(f"{sha256}: {written} bytes given, {size} expected")

    def _insert_pieces(self, conn: Connection, key: str, pieces: Iterable[bytes]) -> tuple[int, int]:
        size = count = 0
        for piece in pieces:
            conn.execute(insert(StoredChunk).values(kind=self.file_kind, sha256=key, seq=count, data=piece))
            size += len(piece)
            count += 1
        return size, count

    def _claim(self, conn: Connection, sha256: str, size: int, count: int) -> bool:
        """Insert the file's row unless it exists; whether this call did."""
        values = {"kind": self.file_kind, "sha256": sha256, "size": size, "chunks": count}
        statement = insert_unless_present(conn.dialect.name, StoredFile, values)
        # RETURNING, not rowcount: the driver reports -1 for a skipped row.
        return conn.execute(statement.returning(StoredFile.sha256)).first() is not None

    def _count(self, conn: Connection, sha256: str) -> int | None:
        return conn.scalar(select(StoredFile.chunks).where(self._key(StoredFile), StoredFile.sha256 == sha256))

    def _key(self, table: Any) -> Any:
        return table.kind == self.file_kind


class DatabaseBlobs(_DatabaseFiles):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, ATTACHMENT)

    def put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if len(data) <= CHUNK:
            self._add(sha256, data)
        else:
            self._write_pieces(sha256, len(data), (data[i : i + CHUNK] for i in range(0, len(data), CHUNK)))
        return sha256

    def put_stream(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Pieces go in under a temporary key as they come (the sha256 is
        known only at the end), then take the file's own key."""
        digest = hashlib.sha256()
        temporary = f"upload-{secrets.token_hex(16)}"

        def hashed() -> Iterator[bytes]:
            for piece in _pieces(chunks):
                digest.update(piece)
                yield piece

        with self.engine.begin() as conn:
            size, count = self._insert_pieces(conn, temporary, hashed())
            sha256 = digest.hexdigest()
            if self._claim(conn, sha256, size, count):
                conn.execute(
                    update(StoredChunk)
                    .where(self._key(StoredChunk), StoredChunk.sha256 == temporary)
                    .values(sha256=sha256)
                )
            else:  # stored before, or by another node meanwhile
                conn.execute(delete(StoredChunk).where(self._key(StoredChunk), StoredChunk.sha256 == temporary))
        return sha256, size

    def chunks(self, sha256: str) -> Iterator[bytes]:
        return self._read(sha256)

    def local_path(self, sha256: str) -> Path | None:
        return None


class DatabaseOriginals(_DatabaseFiles):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, ORIGINAL)

    def keep(self, source: Path, size: int, sha256: str) -> None:
        """Keep the first ``size`` bytes of ``source`` (already verified)."""
        check_sha256(sha256)
        with open(source, "rb") as fh:
            if size <= CHUNK:
                self._add(sha256, b"".join(read_exactly(fh, size, CHUNK)))
            else:
                self._write_pieces(sha256, size, read_exactly(fh, size, CHUNK))

    def keep_chunks(self, sha256: str, size: int, chunks: Iterable[bytes]) -> None:
        self._write_pieces(check_sha256(sha256), size, _pieces(chunks))

    def chunks(self, sha256: str, size: int) -> Iterator[bytes]:
        return self._read(sha256, size)


def _batches(shas: Collection[str], size: int = 500) -> Iterator[list[str]]:
    ordered = sorted(shas)  # the same lock order on every node
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def _pieces(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Regroup chunks of any size into pieces of exactly ``CHUNK`` bytes
    (the last one shorter)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= CHUNK:
            yield bytes(buffer[:CHUNK])
            del buffer[:CHUNK]
    if buffer:
        yield bytes(buffer)
