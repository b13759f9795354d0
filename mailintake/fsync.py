"""Durable file operations shared by the spool and the blob store."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import threading
from pathlib import Path
from typing import Callable, Optional

from .errors import SpoolError, SpoolFull

_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)


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


def flush_filesystem(path: Path) -> None:
    """Make every completed write and rename on ``path``'s filesystem durable:
    one ``syncfs`` (Linux) covers a whole group of files; ``sync`` elsewhere."""
    if _syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(path))
    finally:
        os.close(fd)


class FlushThread:
    """Group commit for an asyncio server: one thread runs ``flush`` for
    every batch of waiters. A waiter's flush always starts after it asked,
    so it covers every write the waiter made before asking; the event loop
    never blocks on the flush and hands the GIL to one thread only."""

    def __init__(self, flush: Callable[[], None], name: str = "group-flush") -> None:
        self._flush = flush
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._waiters: list[tuple["asyncio.AbstractEventLoop", "asyncio.Future[None]"]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def flush(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("flush thread closed")
            self._waiters.append((loop, future))
            self._wanted.set()
        await future

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wanted.set()
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            with self._lock:
                batch, self._waiters = self._waiters, []
                self._wanted.clear()
                closed = self._closed
            if batch:
                error: Optional[BaseException] = None
                try:
                    self._flush()
                except OSError as exc:
                    error = exc
                by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
                for loop, future in batch:
                    by_loop.setdefault(loop, []).append(future)
                for loop, futures in by_loop.items():
                    try:
                        loop.call_soon_threadsafe(_settle, futures, error)
                    except RuntimeError:  # that loop is closed: nobody waits
                        pass
            if closed:
                return


def _settle(futures: list["asyncio.Future[None]"], error: Optional[BaseException]) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
