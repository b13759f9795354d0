"""Push mode: every registration event also goes, as a package, into the
linkage engine's outbox for the document system, exactly once.

The pusher reads the feed like any consumer, with its position kept in the
database (``handoff_push``). Each event's package is written under a
temporary dot-name (which the linkage engine never picks up), fsynced, and
only then is the intent recorded; the rename to the final name follows, and
then the new position. After a crash:

* no intent recorded: the temporary file, if any, is incomplete and is
  written again from the start;
* intent recorded and the temporary name still there: the rename had not
  happened, so it happens now;
* intent recorded and the temporary name gone: the rename happened (the
  engine may already have taken the file away), so only the position moves.

A package is therefore never in the outbox twice and never missing. Final
names (年度_収受番号_event_番号.zip) are unique per event.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..blobs import BlobStore, OriginalStore
from ..fsync import fsync_dir
from ..leases import RETRY_SECONDS, Lease
from ..mail.filenames import download_name
from ..models import HandoffPush, Registration, RegistrationEvent, utcnow
from . import package

log = logging.getLogger(__name__)

POSITION = "outbox"
BATCH = 50
POLL_SECONDS = 1.0


def file_name(fiscal_year: int, receipt_number: str, event: str, seq: int) -> str:
    stem = download_name(f"{fiscal_year}_{receipt_number}_{event}_{seq:08d}", f"{fiscal_year}_{event}_{seq:08d}")
    return stem + ".zip"


def temporary_name(name: str) -> str:
    return f".{name}.part"


class Pusher:
    def __init__(self, engine: Engine, blobs: BlobStore, originals: OriginalStore, outbox: Path) -> None:
        self.engine = engine
        self.blobs = blobs
        self.originals = originals
        self.outbox = outbox

    def run(self, stop: threading.Event) -> None:
        """Push until ``stop`` is set; a database or folder problem is
        logged and retried, never lost."""
        log.info("push mode: packages go to %s", self.outbox)
        lease = Lease(self.engine, "handoff-push")  # one node writes the packages
        while not stop.is_set():
            if not lease.held():
                stop.wait(RETRY_SECONDS)
                continue
            try:
                pushed = self.push_pending(stop)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("push mode paused (%s: %s); retrying", type(exc).__name__, exc)
                pushed = 0
            if not pushed:
                stop.wait(POLL_SECONDS)
        lease.release()

    def push_pending(self, stop: threading.Event | None = None) -> int:
        """Write the packages of events not yet pushed; returns how many."""
        position = self._position()
        if position.writing_seq is not None:
            self._finish(position.writing_seq, position.writing_name)
        pushed = 0
        while stop is None or not stop.is_set():
            batch = self._next_events(self._position().last_seq)
            if not batch:
                break
            for seq, registration_id, name in batch:
                if stop is not None and stop.is_set():
                    break
                self._push(seq, registration_id, name)
                pushed += 1
        return pushed

    def _position(self) -> HandoffPush:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            position = session.get(HandoffPush, POSITION)
            if position is None:
                position = HandoffPush(name=POSITION, last_seq=0, writing_name="")
                session.add(position)
            return position

    def _next_events(self, after: int) -> list[tuple[int, int, str]]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(
                    RegistrationEvent.seq,
                    RegistrationEvent.registration_id,
                    RegistrationEvent.event,
                    Registration.fiscal_year,
                    Registration.receipt_number,
                )
                .join(Registration, Registration.id == RegistrationEvent.registration_id)
                .where(RegistrationEvent.seq > after)
                .order_by(RegistrationEvent.seq)
                .limit(BATCH)
            ).all()
        return [(r.seq, r.registration_id, file_name(r.fiscal_year, r.receipt_number, r.event, r.seq)) for r in rows]

    def _push(self, seq: int, registration_id: int, name: str) -> None:
        self.outbox.mkdir(parents=True, exist_ok=True)
        temporary = self.outbox / temporary_name(name)
        temporary.unlink(missing_ok=True)  # left incomplete by a crash
        built = package.build(self.engine, self.blobs, self.originals, registration_id)
        # 0660 and the folder's default ACL decide who reads it (the engine);
        # without an ACL the service's umask keeps it private.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o660)
        with os.fdopen(fd, "wb") as out:
            for chunk in built.chunks():
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        self._record(writing_seq=seq, writing_name=name)
        self._finish(seq, name)

    def _finish(self, seq: int, name: str) -> None:
        temporary = self.outbox / temporary_name(name)
        if temporary.exists():
            os.rename(temporary, self.outbox / name)
            fsync_dir(self.outbox)
            log.info("pushed %s", name)
        self._record(last_seq=seq, writing_seq=None, writing_name="")

    def _record(self, **values: object) -> None:
        with Session(self.engine) as session, session.begin():
            position = session.get(HandoffPush, POSITION)
            assert position is not None
            for key, value in values.items():
                setattr(position, key, value)
            position.updated_at = utcnow()


def start(
    engine: Engine, blobs: BlobStore, originals: OriginalStore, outbox: Path
) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=Pusher(engine, blobs, originals, outbox).run, args=(stop,), name="handoff-push")
    thread.start()
    return thread, stop
