"""The ingester's own process, and the supervisor that keeps it going.

Parsing and database work run in a separate process so that they never
take CPU or the GIL from the SMTP event loop. The supervisor (a thread in
the relay's process) restarts the worker if it dies, and kills it when one
parse runs past the time limit. The spool entry it was parsing is then
marked as poison and stored unparsed, with a problem note, by the next
worker: at once after a time-out, after a second death otherwise (one death
may be an outside kill). Mail is never lost on the way: it stays in the spool throughout.

Relay and worker talk through pipes, never through a lock-holding primitive
(a ``multiprocessing.Event`` whose lock a killed worker still holds would
block the relay's wake-up after a 250 for good): waking is one
non-blocking byte, and stopping is a byte on a second pipe, or its end of
file when the supervisor's process is gone. The worker ignores terminal
signals; only its supervisor stops it, at a batch boundary.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import resource
import signal
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Any

from ..config import Settings
from .ingest import Ingester, IngestLockHeld, acquire_ingest_lock
from .spool import Spool

log = logging.getLogger(__name__)

# A parse that allocates without bound fails with MemoryError instead of
# taking the machine down.
ADDRESS_SPACE_LIMIT_BYTES = 4 * 1024**3
_LOCK_HELD_EXIT = 3
_SPAWN = multiprocessing.get_context("spawn")


TERMINAL_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class _WorkerState:
    """What the worker receives: the read ends of the two pipes, and the
    shared memory (without locks) where it says what it is parsing."""

    def __init__(self, wake: Connection, stop: Connection, parsing_id: Any, parsing_since: Any) -> None:
        self.wake = wake
        self.stop = stop
        self.parsing_id = parsing_id
        self.parsing_since = parsing_since

    def should_stop(self) -> bool:
        return self.stop.poll(0)  # a stop byte, or end of file: the supervisor is gone

    def wait_for_work(self, timeout: float) -> None:
        if self.wake in wait([self.wake, self.stop], timeout):
            try:
                os.read(self.wake.fileno(), 65536)
            except BlockingIOError:
                pass


def _worker_main(settings: Settings, state: _WorkerState) -> None:
    # Started with these signals blocked (see _spawn): from here on they are
    # ignored, so Ctrl-C or `kill -TERM -PGID` reaches only the supervisor.
    for signum in TERMINAL_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, TERMINAL_SIGNALS)
    os.set_blocking(state.wake.fileno(), False)

    from ..db import make_engine
    from ..logs import configure_logging

    configure_logging(settings)
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = ADDRESS_SPACE_LIMIT_BYTES if hard == resource.RLIM_INFINITY else min(hard, ADDRESS_SPACE_LIMIT_BYTES)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):
        log.warning("could not limit the ingester's memory")
    try:
        lock_fd = acquire_ingest_lock(settings)
    except IngestLockHeld as exc:
        log.error("%s", exc)
        raise SystemExit(_LOCK_HELD_EXIT) from exc

    def on_parse(spool_id: str | None) -> None:
        if spool_id is None:
            state.parsing_since.value = 0.0
        else:
            state.parsing_id.value = spool_id.encode("ascii")
            state.parsing_since.value = time.monotonic()

    # Only what ingestion needs: no web, accounts or registry code in this
    # process (its memory is the idle cost of every installation).
    engine = make_engine(settings)
    spool = Spool(settings.spool_dir)
    spool.ensure()
    try:
        Ingester(settings, engine, spool, on_parse).run(state.should_stop, state.wait_for_work)
    finally:
        engine.dispose()
        os.close(lock_fd)


class IngestSupervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool_dir)
        self.parse_time_limit = settings.parse_time_limit
        self._wake_r, self._wake_w = _SPAWN.Pipe(duplex=False)
        self._stop_r, self._stop_w = _SPAWN.Pipe(duplex=False)
        os.set_blocking(self._wake_w.fileno(), False)
        self._parsing_id: Any = _SPAWN.Array(ctypes.c_char, 64, lock=False)
        self._parsing_since: Any = _SPAWN.Value(ctypes.c_double, 0.0, lock=False)
        self._process: Any | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.restarts = 0

    def start(self) -> None:
        # Fail at once, in the caller, if another ingester holds the lock.
        os.close(acquire_ingest_lock(self.settings))
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="ingest-supervisor", daemon=True)
        self._thread.start()

    def wake(self, _spooled: object = None) -> None:
        """Called after each 250; never blocks, whatever the worker's state
        (a full pipe already means a wake-up is pending)."""
        try:
            os.write(self._wake_w.fileno(), b"\0")
        except OSError:  # full (a wake-up is pending anyway), or the worker is gone
            pass

    def stop(self, timeout: float = 5) -> None:
        """Ask the worker to stop after its current batch; kill it past
        ``timeout`` (the unfinished batch stays in the spool)."""
        self._stopping.set()
        try:
            self._stop_w.send_bytes(b"stop")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
        process = self._process
        if process is not None:
            process.join(timeout)
            if process.is_alive():
                log.warning("ingester did not stop in %ss; killing it", timeout)
                process.kill()
                process.join(5)
        # The wake-up's write end stays open: the relay may still call wake()
        # from its own thread, and a closed descriptor's number can be reused
        # by a spool file. It closes with this object.
        for end in (self._wake_r, self._stop_r, self._stop_w):
            end.close()

    def _spawn(self) -> None:
        self._parsing_since.value = 0.0
        state = _WorkerState(self._wake_r, self._stop_r, self._parsing_id, self._parsing_since)
        process = _SPAWN.Process(
            target=_worker_main, args=(self.settings, state), name="mailintake-ingest", daemon=True
        )
        # Blocked across fork and exec, so a signal to the process group
        # during the worker's start-up cannot kill it before it ignores them.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, TERMINAL_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        self._process = process

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            process = self._process
            assert process is not None
            since = self._parsing_since.value
            overdue = since and time.monotonic() - since > self.parse_time_limit
            if process.is_alive() and not overdue:
                continue
            if process.is_alive():
                log.error("a parse ran over %ss; restarting the ingester", self.parse_time_limit)
                process.kill()
            process.join(5)
            if self._stopping.is_set():
                return
            if process.exitcode == _LOCK_HELD_EXIT:
                log.error("another process ingests this data folder; this one stops ingesting")
                return
            if since:
                spool_id = self._parsing_id.value.decode("ascii")
                # Over the time limit, the entry is judged at once; a worker
                # that died on it gets it once more before it is set aside.
                if overdue or self.spool.crashed_before(spool_id):
                    log.error("marking %s as poison (exit code %s)", spool_id, process.exitcode)
                    self.spool.mark_poison(spool_id)
                else:
                    log.warning(
                        "the ingester died while parsing %s (exit code %s); trying it again", spool_id, process.exitcode
                    )
            self.restarts += 1
            time.sleep(min(5.0, 0.2 * self.restarts))
            self._spawn()
