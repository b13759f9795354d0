"""One ingester per data folder: a lock file that the kernel releases when
its holder dies, so no stale lock survives a crash."""

from __future__ import annotations

import fcntl
import os

from ..config import Settings


class IngestLockHeld(Exception):
    """Another process is already ingesting this data folder."""


def acquire_ingest_lock(settings: Settings) -> int:
    """One ingester per data folder; returns the fd that holds the lock.

    In the data folder, not the spool: an open file would keep an operator
    from remounting a separate spool filesystem.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.data_dir / "ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise IngestLockHeld(f"another process is ingesting {settings.data_dir}") from exc
    return fd
