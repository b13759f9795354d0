"""Content-addressed file stores: attachments (:class:`BlobStore`) and
original messages (:class:`OriginalStore`).

A file lives at ``<root>/<first two hex digits>/<sha256>``; no name from a
mail ever takes part in a path. Writes are not fsynced one by one: whoever
stores a batch calls :meth:`BlobStore.flush` once before committing the
database rows that refer to the blobs (group commit).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .fsync import flush_filesystem


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; returns its sha256."""
        sha256 = hashlib.sha256(data).hexdigest()
        self._put(sha256, lambda fh: fh.write(data))
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

    def _put(self, sha256: str, write: Callable[[BinaryIO], object]) -> None:
        final = self.path_for(sha256)
        if final.exists():
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{sha256}.{secrets.token_hex(4)}.tmp"
        with open(tmp, "xb") as fh:
            write(fh)
        os.replace(tmp, final)

    def flush(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        flush_filesystem(self.root)

    def open(self, sha256: str) -> BinaryIO:
        return open(self.path_for(sha256), "rb")


class OriginalStore:
    """Original messages, by the sha256 of their bytes.

    An original is the spool file itself, hard-linked here: the message is
    its first ``raw_size`` bytes (the spool record follows). Linking copies
    nothing, and removing the spool name afterwards frees nothing, which
    keeps ingestion's disk work to a few metadata operations per message.
    When the spool is on another filesystem the message bytes are copied.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}.msg"

    def keep(self, source: Path, size: int, sha256: str) -> None:
        """Keep the first ``size`` bytes of ``source`` (already verified)."""
        final = self.path_for(sha256)
        if final.exists():
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{sha256}.{secrets.token_hex(4)}.tmp"
        try:
            os.link(source, tmp)
        except OSError:
            with open(source, "rb") as src, open(tmp, "xb") as dst:
                left = size
                while left > 0:
                    chunk = src.read(min(1 << 20, left))
                    if not chunk:
                        raise OSError(f"{source} is shorter than {size} bytes") from None
                    dst.write(chunk)
                    left -= len(chunk)
        os.replace(tmp, final)

    def chunks(self, sha256: str, size: int, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        with open(self.path_for(sha256), "rb") as fh:
            left = size
            while left > 0:
                chunk = fh.read(min(chunk_size, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    def flush(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        flush_filesystem(self.root)
