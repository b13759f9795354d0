"""Where attachments and original messages are kept, by sha256.

Two stores behind one interface, chosen by the ``blob_store`` setting:
``files`` (the data folder; one node) and ``database`` (chunks in the
database; every node of a cluster serves every mail). Writers call
``flush`` once per batch before committing the rows that refer to what they
stored (group commit); readers get the bytes as chunks, never whole.

``lock`` guards the one race a cluster adds: a purge on one node removing
a file that another node's ingester has just stored again (same sha256)
and is about to refer to. The ingester locks its files shared in the
transaction that adds its rows (a file gone is stored again); the purge
locks them exclusively, then looks for references again and removes only
the unreferenced, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine

from ..config import Settings
from .common import CHUNK, check_sha256
from .database import DatabaseBlobs, DatabaseOriginals
from .files import FileBlobs, FileOriginals

STORES = ("files", "database")

__all__ = [
    "CHUNK",
    "STORES",
    "BlobStore",
    "DatabaseBlobs",
    "DatabaseOriginals",
    "FileBlobs",
    "FileOriginals",
    "OriginalStore",
    "check_sha256",
    "open_stores",
]


class BlobStore(Protocol):
    """Attachments (and other decoded parts), by the sha256 of their bytes."""

    kind: str

    def put_bytes(self, data: bytes) -> str: ...
    def put_stream(self, chunks: Iterable[bytes]) -> tuple[str, int]: ...
    def flush(self) -> None: ...
    def exists(self, sha256: str) -> bool: ...
    def chunks(self, sha256: str) -> Iterator[bytes]: ...
    def local_path(self, sha256: str) -> Path | None: ...
    def lock(self, conn: Connection, shas: Collection[str], exclusive: bool = False) -> set[str]: ...
    def remove(self, shas: Collection[str], conn: Connection | None = None) -> int: ...


class OriginalStore(Protocol):
    """Original messages, byte-exact, by the sha256 of their bytes."""

    kind: str

    def keep(self, source: Path, size: int, sha256: str) -> None: ...
    def keep_chunks(self, sha256: str, size: int, chunks: Iterable[bytes]) -> None: ...
    def flush(self) -> None: ...
    def exists(self, sha256: str) -> bool: ...
    def chunks(self, sha256: str, size: int) -> Iterator[bytes]: ...
    def lock(self, conn: Connection, shas: Collection[str], exclusive: bool = False) -> set[str]: ...
    def remove(self, shas: Collection[str], conn: Connection | None = None) -> int: ...


def open_stores(settings: Settings, engine: Engine, kind: str | None = None) -> tuple[BlobStore, OriginalStore]:
    """The attachment and original stores ``settings`` name (or ``kind``)."""
    kind = kind or settings.blob_store
    if kind == "database":
        return DatabaseBlobs(engine), DatabaseOriginals(engine)
    return FileBlobs(settings.blob_dir), FileOriginals(settings.originals_dir)
