"""The ingester's own process, and the supervisor that keeps it going.

Parsing and database work run in a separate process so that they never
take CPU or the GIL from the SMTP event loop. The supervisor (a thread in
the relay's process) restarts the worker if it dies, and kills it when one
parse runs past the time limit; the spool entry it was parsing is then
marked as poison and stored unparsed, with a problem note, by the next
worker. Mail is never lost on the way: it stays in the spool throughout.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.synchronize
import os
import resource
import threading
import time
from typing import Any

from .config import Settings
from .ingest import Ingester, IngestLockHeld, acquire_ingest_lock
from .spool import Spool

log = logging.getLogger(__name__)

# A parse that allocates without bound fails with MemoryError instead of
# taking the machine down.
ADDRESS_SPACE_LIMIT_BYTES = 4 * 1024**3
_LOCK_HELD_EXIT = 3
_SPAWN = multiprocessing.get_context("spawn")


class _SharedState:
    """What the supervisor can see of the worker, in shared memory."""

    def __init__(self) -> None:
        self.wake = _SPAWN.Event()
        self.stop = _SPAWN.Event()
        self.parsing_id: Any = _SPAWN.Array(ctypes.c_char, 64, lock=False)
        self.parsing_since: Any = _SPAWN.Value(ctypes.c_double, 0.0, lock=False)


def _worker_main(settings: Settings, state: _SharedState) -> None:
    from .server import configure_logging
    from .services import build_services

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

    def wait_for_work(timeout: float) -> None:
        state.wake.wait(timeout)
        state.wake.clear()

    services = build_services(settings, create_tables=False)
    try:
        Ingester(settings, services.engine, services.spool, on_parse).run(state.stop.is_set, wait_for_work)
    finally:
        services.close()
        os.close(lock_fd)


class IngestSupervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool_dir)
        self.parse_time_limit = settings.parse_time_limit
        self._state = _SharedState()
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
        """Called after each 250; cheap and safe from any thread."""
        self._state.wake.set()

    def stop(self, timeout: float = 30) -> None:
        self._stopping.set()
        self._state.stop.set()
        self._state.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        process = self._process
        if process is not None:
            process.join(timeout)
            if process.is_alive():
                log.warning("ingester did not stop in %ss; killing it", timeout)
                process.kill()
                process.join(5)

    def _spawn(self) -> None:
        self._state.parsing_since.value = 0.0
        process = _SPAWN.Process(
            target=_worker_main, args=(self.settings, self._state), name="mailintake-ingest", daemon=True
        )
        process.start()
        self._process = process

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            process = self._process
            assert process is not None
            since = self._state.parsing_since.value
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
                spool_id = self._state.parsing_id.value.decode("ascii")
                log.error("marking %s as poison (exit code %s)", spool_id, process.exitcode)
                self.spool.mark_poison(spool_id)
            self.restarts += 1
            time.sleep(min(5.0, 0.2 * self.restarts))
            self._spawn()
