"""The ``files`` store (one node): attachments (:class:`FileBlobs`) and
original messages (:class:`FileOriginals`) in the data folder.

A file lives at ``<root>/<first two hex digits>/<sha256>``; no name from a
mail ever takes part in a path. Writes are not fsynced one by one: whoever
stores a batch calls :meth:`BlobStore.flush` once before committing the
database rows that refer to the blobs (group commit).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path

from sqlalchemy import Connection

from ..fsync import flush_filesystem, read_exactly
from .common import CHUNK, check_sha256


class _FileStore:
    """A folder of files named by sha256, below two-digit subfolders."""

    kind = "files"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        raise NotImplementedError

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()

    def flush(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        flush_filesystem(self.root)

    def lock(self, conn: Connection, shas: Collection[str], exclusive: bool = False) -> set[str]:
        """One node, whose ingester and purge both hold the ingest lock:
        nothing can remove a file meanwhile, so nothing to lock or look at."""
        return set(shas)

    def remove(self, shas: Collection[str], conn: Connection | None = None) -> int:
        removed = 0
        for sha256 in shas:
            try:
                self.path_for(sha256).unlink()
                removed += 1
            except FileNotFoundError:
                pass
        return removed


class FileBlobs(_FileStore):
    def path_for(self, sha256: str) -> Path:
        return self.root / check_sha256(sha256)[:2] / sha256

    def local_path(self, sha256: str) -> Path | None:
        return self.path_for(sha256)

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; returns its sha256."""
        sha256 = hashlib.sha256(data).hexdigest()
        _write_once(self.path_for(sha256), lambda tmp: _write_all(tmp, [data]))
        return sha256

    def put_stream(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store bytes as they come, hashing on the way; returns (sha256, size)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".stream.{secrets.token_hex(8)}.tmp"
        digest = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "xb") as fh:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    fh.write(chunk)
            sha256 = digest.hexdigest()
            final = self.path_for(sha256)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        return sha256, size

    def chunks(self, sha256: str) -> Iterator[bytes]:
        with open(self.path_for(sha256), "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk


class FileOriginals(_FileStore):
    """Original messages, by the sha256 of their bytes.

    An original is the spool file itself, hard-linked here: the message is
    its first ``raw_size`` bytes (the spool record follows). Linking copies
    nothing, and removing the spool name afterwards frees nothing, which
    keeps ingestion's disk work to a few metadata operations per message.
    When the spool is on another filesystem the message bytes are copied.
    """

    def path_for(self, sha256: str) -> Path:
        return self.root / check_sha256(sha256)[:2] / f"{sha256}.msg"

    def keep(self, source: Path, size: int, sha256: str) -> None:
        """Keep the first ``size`` bytes of ``source`` (already verified)."""

        def link_or_copy(tmp: Path) -> None:
            try:
                os.link(source, tmp)
            except OSError:
                with open(source, "rb") as src:
                    _write_all(tmp, read_exactly(src, size, CHUNK))

        _write_once(self.path_for(sha256), link_or_copy)

    def keep_chunks(self, sha256: str, size: int, chunks: Iterable[bytes]) -> None:
        """Keep a message given as its bytes (moving from another store)."""
        _write_once(self.path_for(sha256), lambda tmp: _write_all(tmp, chunks))

    def chunks(self, sha256: str, size: int) -> Iterator[bytes]:
        with open(self.path_for(sha256), "rb") as fh:
            yield from read_exactly(fh, size, CHUNK)


def _write_once(final: Path, write: Callable[[Path], None]) -> None:
    """Create ``final`` through a temporary name beside it, unless it exists
    (same name, same bytes: content addressed)."""
    if final.exists():
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{secrets.token_hex(4)}.tmp"
    try:
        write(tmp)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_all(path: Path, chunks: Iterable[bytes]) -> None:
    with open(path, "xb") as fh:  # a new name: never through a planted link
        for chunk in chunks:
            fh.write(chunk)
