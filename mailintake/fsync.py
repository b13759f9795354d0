"""Durable file operations shared by the spool and the blob store."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

from .errors import SpoolError, SpoolFull

_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def storage_error(exc: OSError, what: str) -> SpoolError:
    """Map an OSError to the SMTP-answerable error (452 when out of space)."""
    if exc.errno in _SPACE_ERRNOS:
        return SpoolFull(f"{what}: {exc.strerror}")
    return SpoolError(f"{what}: {exc.strerror or exc}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirSyncer:
    """Coalesces directory fsyncs: a caller returns once a directory fsync that
    *started after its call* has completed, so concurrent renames share one
    fsync (group commit) without any caller trusting an fsync that began
    before its own rename."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._started = 0
        self._done = 0
        self._running = False

    def sync(self) -> None:
        with self._cond:
            target = self._started + 1
            while self._done < target:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                self._started += 1
                generation = self._started
                self._cond.release()
                try:
                    fsync_dir(self.path)
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._cond.notify_all()
                # Only reached when the fsync succeeded.
                self._done = generation
