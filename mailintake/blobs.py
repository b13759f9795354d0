"""Content-addressed file store for original messages and attachments.

A blob lives at ``<root>/<first two hex digits>/<sha256>``; no name from a
mail ever takes part in a path. Writes are fsynced; the directories touched
are returned so the caller can fsync them once per batch before it commits
the database rows that refer to them.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO, Iterator

from .fsync import fsync_dir


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()

    def put_bytes(self, data: bytes) -> tuple[str, Path]:
        """Store ``data``; returns its sha256 and the directory written to."""
        sha256 = hashlib.sha256(data).hexdigest()
        final = self.path_for(sha256)
        if not final.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.parent / f".{sha256}.{secrets.token_hex(4)}.tmp"
            with open(tmp, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        return sha256, final.parent

    def put_file(self, source: Path, sha256: str) -> Path:
        """Store a file whose hash is already known and verified.

        A hard link when the spool shares the filesystem (the spool file was
        fsynced already), else a copy.
        """
        final = self.path_for(sha256)
        if final.exists():
            return final.parent
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{sha256}.{secrets.token_hex(4)}.tmp"
        try:
            os.link(source, tmp)
        except OSError:
            with open(source, "rb") as src, open(tmp, "xb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
        os.replace(tmp, final)
        return final.parent

    def open(self, sha256: str) -> BinaryIO:
        return open(self.path_for(sha256), "rb")

    def read(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()

    def iter_chunks(self, sha256: str, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        with self.open(sha256) as fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    def sync_dirs(self, dirs: set[Path]) -> None:
        # The root too: a blob may have created its two-digit folder.
        for directory in sorted(dirs | {self.root}):
            fsync_dir(directory)
