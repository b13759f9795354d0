"""Content-addressed file store for original messages and attachments.

A blob lives at ``<root>/<first two hex digits>/<sha256>``; no name from a
mail ever takes part in a path. Writes are not fsynced one by one: whoever
stores a batch calls :meth:`BlobStore.flush` once before committing the
database rows that refer to the blobs (group commit).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Iterable

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)


def flush_filesystem(path: Path) -> None:
    """Make every write on ``path``'s filesystem durable: one ``syncfs``
    (Linux) covers a whole batch of files and renames; ``sync`` elsewhere."""
    if _syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), str(path))
    finally:
        os.close(fd)


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

    def put_chunks(self, sha256: str, chunks: Iterable[bytes]) -> None:
        """Store bytes whose hash the caller has verified."""
        self._put(sha256, lambda fh: fh.writelines(chunks))

    def _put(self, sha256: str, write: "callable[[BinaryIO], object]") -> None:  # type: ignore[valid-type]
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
