"""The ingester's own process, and the supervisor that keeps it going.

Parsing and database work run in a separate process so that they never
take CPU or the GIL from the SMTP event loop. The supervisor (a thread in
the relay's process) restarts the worker if it dies, and kills it when one
parse runs past the time limit. The spool entry it was parsing is then
marked as poison and stored unparsed, with a problem note, by the next
worker: at once after a time-out, after a second death otherwise (one death
may be an outside kill). Mail is never lost on the way: it stays in the spool throughout.

The worker is a plain ``python -m mailintake.intake.worker`` (not a
multiprocessing child: no copy of the parent's modules, no resource-tracker
process), given its settings on standard input. Relay and worker talk
through three pipes, never through a lock-holding primitive (a lock a
killed worker still holds would block the relay's wake-up after a 250 for
good): waking is one non-blocking byte; stopping is a byte on the second
pipe, or its end of file when the supervisor's process is gone; on the
third the worker says which spool entry it is parsing and when it is done.
The worker ignores terminal signals; only its supervisor stops it, at a
batch boundary.
"""

from __future__ import annotations

import logging
import os
import resource
import select
import subprocess
import sys
import threading
import time

from ..children import spawn, start_as_child
from ..config import Settings
from .spool import Spool

log = logging.getLogger(__name__)

# A parse that allocates without bound fails with MemoryError instead of
# taking the machine down.
ADDRESS_SPACE_LIMIT_BYTES = 4 * 1024**3
_LOCK_HELD_EXIT = 3


# -- the worker ----------------------------------------------------------------------


class _Pipes:
    """The worker's ends: wake-ups and the stop request in, progress out."""

    def __init__(self, wake: int, stop: int, progress: int) -> None:
        self.wake, self.stop, self.progress = wake, stop, progress
        os.set_blocking(wake, False)

    def should_stop(self) -> bool:
        # A stop byte, or end of file: the supervisor is gone.
        return bool(select.select([self.stop], [], [], 0)[0])

    def wait_for_work(self, timeout: float) -> None:
        ready = select.select([self.wake, self.stop], [], [], timeout)[0]
        if self.wake in ready:
            try:
                os.read(self.wake, 65536)
            except BlockingIOError:
                pass

    def on_parse(self, spool_id: str | None) -> None:
        os.write(self.progress, b"D\n" if spool_id is None else b"P" + spool_id.encode("ascii") + b"\n")


def _limit_memory() -> None:
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = ADDRESS_SPACE_LIMIT_BYTES if hard == resource.RLIM_INFINITY else min(hard, ADDRESS_SPACE_LIMIT_BYTES)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):
        log.warning("could not limit the ingester's memory")


def worker_main(argv: list[str]) -> None:
    # Ctrl-C or `kill -TERM -PGID` reaches only the supervisor.
    settings = start_as_child()
    pipes = _Pipes(*(int(fd) for fd in argv))

    # Only what ingestion needs: no web, accounts or registry code in this
    # process (its memory is the idle cost of every installation).
    from ..db import make_engine
    from ..logs import configure_logging
    from .ingest import Ingester
    from .lock import IngestLockHeld, acquire_ingest_lock

    configure_logging(settings)
    _limit_memory()
    try:
        lock_fd = acquire_ingest_lock(settings)
    except IngestLockHeld as exc:
        log.error("%s", exc)
        raise SystemExit(_LOCK_HELD_EXIT) from exc
    engine = make_engine(settings)
    spool = Spool(settings.spool_dir)
    spool.ensure()
    try:
        Ingester(settings, engine, spool, pipes.on_parse).run(pipes.should_stop, pipes.wait_for_work)
    finally:
        engine.dispose()
        os.close(lock_fd)


# -- the supervisor ------------------------------------------------------------------


class IngestSupervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool_dir)
        self.parse_time_limit = settings.parse_time_limit
        self._wake_r, self._wake_w = os.pipe()
        self._stop_r, self._stop_w = os.pipe()
        self._progress_r, self._progress_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._progress_r, False)
        self._parsing_id = ""
        self._parsing_since = 0.0
        self._pending = b""
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.restarts = 0

    def start(self) -> None:
        from .lock import acquire_ingest_lock

        # Fail at once, in the caller, if another ingester holds the lock.
        os.close(acquire_ingest_lock(self.settings))
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="ingest-supervisor", daemon=True)
        self._thread.start()

    def wake(self, _spooled: object = None) -> None:
        """Called after each 250; never blocks, whatever the worker's state
        (a full pipe already means a wake-up is pending)."""
        try:
            os.write(self._wake_w, b"\0")
        except OSError:  # full (a wake-up is pending anyway), or the worker is gone
            pass

    def stop(self, timeout: float = 5) -> None:
        """Ask the worker to stop after its current batch; kill it past
        ``timeout`` (the unfinished batch stays in the spool)."""
        self._stopping.set()
        try:
            os.write(self._stop_w, b"stop")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
        process = self._process
        if process is not None:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("ingester did not stop in %ss; killing it", timeout)
                process.kill()
                process.wait(5)
        # The wake-up's write end stays open: the relay may still call wake()
        # from its own thread, and a closed descriptor's number can be reused
        # by a spool file. It closes with the process.
        for fd in (self._wake_r, self._stop_r, self._stop_w, self._progress_r, self._progress_w):
            os.close(fd)

    def _spawn(self) -> None:
        self._parsing_since, self._parsing_id, self._pending = 0.0, "", b""
        ends = (self._wake_r, self._stop_r, self._progress_w)
        self._process = spawn("mailintake.intake.worker", ends, self.settings)  # if it dies at once, _watch sees to it

    def _read_progress(self) -> None:
        try:
            while chunk := os.read(self._progress_r, 65536):
                self._pending += chunk
        except BlockingIOError:
            pass
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            if line.startswith(b"P"):
                self._parsing_id, self._parsing_since = line[1:].decode("ascii"), time.monotonic()
            else:
                self._parsing_since = 0.0

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            process = self._process
            assert process is not None
            self._read_progress()
            since = self._parsing_since
            overdue = since and time.monotonic() - since > self.parse_time_limit
            alive = process.poll() is None
            if alive and not overdue:
                continue
            if alive:
                log.error("a parse ran over %ss; restarting the ingester", self.parse_time_limit)
                process.kill()
            process.wait(5)
            self._read_progress()  # what it said before it died
            since = self._parsing_since
            if self._stopping.is_set():
                return
            if process.returncode == _LOCK_HELD_EXIT:
                log.error("another process ingests this data folder; this one stops ingesting")
                return
            if since:
                spool_id = self._parsing_id
                # Over the time limit, the entry is judged at once; a worker
                # that died on it gets it once more before it is set aside.
                if overdue or self.spool.crashed_before(spool_id):
                    log.error("marking %s as poison (exit code %s)", spool_id, process.returncode)
                    self.spool.mark_poison(spool_id)
                else:
                    log.warning(
                        "the ingester died while parsing %s (exit code %s); trying it again",
                        spool_id,
                        process.returncode,
                    )
            self.restarts += 1
            time.sleep(min(5.0, 0.2 * self.restarts))
            self._spawn()


if __name__ == "__main__":
    worker_main(sys.argv[1:])
