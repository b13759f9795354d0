"""Durable file operations shared by the spool, the blob store and the
hand-off, and reading a stored message back exactly."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from .errors import SpoolError, SpoolFull

T = TypeVar("T")
_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)
_malloc_trim = getattr(_libc, "malloc_trim", None)


def release_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc), after a burst
    or a large mail has come and gone; elsewhere nothing happens."""
    if _malloc_trim is not None:
        _malloc_trim(0)


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


class CommitThread:
    """Group commit for an asyncio server. One thread takes every commit
    queued since its last round, runs each one's file work (create, write,
    rename), then one ``flush`` that covers them all, then settles their
    futures. The event loop never blocks on the filesystem (creating a file
    can wait for a journal commit) and only one thread competes with it for
    the GIL."""

    def __init__(self, flush: Callable[[], None], name: str = "group-commit") -> None:
        self._flush = flush
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._queue: list[_Commit] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def commit(self, work: Callable[[], T], undo: Callable[[T], None]) -> T:
        """Run ``work`` in the commit thread and return its result once a
        flush that started after it has completed. If that flush fails,
        ``undo(result)`` runs and the flush's error is raised."""
        loop = asyncio.get_running_loop()
        item = _Commit(loop, loop.create_future(), work, undo)
        with self._lock:
            if self._closed:
                raise RuntimeError("commit thread closed")
            self._queue.append(item)
            self._wanted.set()
        return await item.future  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wanted.set()
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            with self._lock:
                batch, self._queue = self._queue, []
                self._wanted.clear()
                closed = self._closed
            if batch:
                self._commit_batch(batch)
            if closed:
                return

    def _commit_batch(self, batch: list[_Commit]) -> None:
        done: list[_Commit] = []
        for item in batch:
            try:
                item.result = item.work()
                done.append(item)
            except BaseException as exc:  # handed to the waiter, not lost
                item.error = exc
        if done:
            try:
                self._flush()
            except OSError as exc:
                for item in done:
                    item.error = exc
                    try:
                        item.undo(item.result)
                    except OSError:
                        pass
        by_loop: dict[asyncio.AbstractEventLoop, list[_Commit]] = {}
        for item in batch:
            by_loop.setdefault(item.loop, []).append(item)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:  # that loop is closed: nobody waits
                pass


class _Commit:
    __slots__ = ("loop", "future", "work", "undo", "result", "error")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        work: Callable[[], Any],
        undo: Callable[[Any], None],
    ) -> None:
        self.loop = loop
        self.future = future
        self.work = work
        self.undo = undo
        self.result: Any = None
        self.error: BaseException | None = None


def _settle(items: list[_Commit]) -> None:
    for item in items:
        if item.future.done():
            continue
        if item.error is None:
            item.future.set_result(item.result)
        else:
            item.future.set_exception(item.error)


class SpoolCorrupt(Exception):
    """A committed spool entry does not match its record."""


def read_exactly(fh: BinaryIO, size: int, chunk_size: int = 1 << 16) -> Iterator[bytes]:
    """The first ``size`` bytes of ``fh`` (from its position), in chunks."""
    left = size
    while left > 0:
        chunk = fh.read(min(chunk_size, left))
        if not chunk:
            raise SpoolCorrupt("spool file shorter than its record")
        left -= len(chunk)
        yield chunk
