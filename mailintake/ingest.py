"""Ingestion: spooled raw mail → parsed → blob store + database → spool entry
removed.

Order of durability for each batch: the raw message and attachment blobs are
fsynced, then the database transaction commits, then the spool entries are
removed. A crash at any point leaves the entry in the spool, and storing it
again is a no-op because (address, raw sha256) is unique. While the database
is unavailable the entries wait in the spool and are retried.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import Engine, insert, select, tuple_
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .addresses import normalize_address
from .blobs import BlobStore
from .config import Settings
from .db import create_schema
from .decoding import ParsedAttachment, ParsedMessage, parse_spooled_message
from .models import Address, Attachment, Message, utcnow
from .spool import Spool, SpoolCorrupt, SpooledMessage, read_exactly

log = logging.getLogger(__name__)

PARSE_TIMEOUT_SECONDS = 120
# Worker processes are replaced after this many parses (memory hygiene);
# done between batches by the ingester, not with max_tasks_per_child, which
# can deadlock the pool on Python 3.11.
PARSES_PER_POOL = 5000


class _Stopping(Exception):
    """The service is shutting down; leave the batch in the spool."""


class IngestLockHeld(Exception):
    """Another process is already ingesting this spool."""


@dataclass
class IngestStats:
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    last_latency_seconds: float = 0.0
    last_error: str = ""


class Ingester:
    def __init__(self, settings: Settings, engine: Engine, spool: Spool) -> None:
        self.settings = settings
        self.engine = engine
        self.spool = spool
        self.blobs = BlobStore(settings.blob_dir)
        self.stats = IngestStats()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._pool: Optional[concurrent.futures.ProcessPoolExecutor] = None
        self._parsed: dict[str, ParsedMessage] = {}
        self._lock_fd: Optional[int] = None
        self._schema_ready = False
        self._parses = 0

    # -- lifecycle ------------------------------------------------------------

    def acquire_lock(self) -> None:
        self.spool.ensure()
        # In the data folder, not the spool: an open file would keep an
        # operator from remounting a separate spool filesystem.
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.settings.data_dir / "ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise IngestLockHeld(f"another process is ingesting {self.settings.data_dir}") from exc
        self._lock_fd = fd

    def start(self) -> None:
        """Run in a background thread until :meth:`stop`."""
        if self._lock_fd is None:
            self.acquire_lock()
        self.blobs.root.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="ingester", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        # Interrupt a parse in progress; its batch stays in the spool.
        self._reset_pool()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.close()

    def close(self) -> None:
        self._close_pool()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def wake(self, _spooled: Optional[SpooledMessage] = None) -> None:
        """Called by the relay after each 250; safe from any thread."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if self._parses >= PARSES_PER_POOL:
                    self._close_pool()
                if not self._schema_ready:
                    create_schema(self.engine)
                    self._schema_ready = True
                done = self.ingest_pending()
            except _Stopping:
                return
            except SQLAlchemyError as exc:
                self.stats.last_error = f"database unavailable: {type(exc).__name__}"
                log.warning("ingestion paused, database unavailable: %s", exc.__class__.__name__)
                self._stop.wait(self.settings.ingest_retry_seconds)
                continue
            except OSError as exc:
                self.stats.last_error = f"storage error: {exc}"
                log.error("ingestion paused, storage error: %s", exc)
                self._stop.wait(self.settings.ingest_retry_seconds)
                continue
            except Exception as exc:
                # Never let the ingester die: the mail stays in the spool.
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("ingestion failed; retrying")
                self._stop.wait(self.settings.ingest_retry_seconds)
                continue
            if done == 0:
                # Periodic rescan too: entries may come from another process
                # (mailintake import) that cannot wake this one.
                self._wake.wait(1.0)

    # -- the work ---------------------------------------------------------------

    def ingest_pending(self, limit: Optional[int] = None) -> int:
        """Ingest committed spool entries in batches; returns how many."""
        done = 0
        while not self._stop.is_set():
            pending = self.spool.pending()
            if not pending:
                break
            batch = pending[: self.settings.ingest_batch]
            done += self.ingest_batch(batch)
            self.stats.last_error = ""
            if limit is not None and done >= limit:
                break
        return done

    def ingest_batch(self, spool_ids: list[str]) -> int:
        items = self._load_and_parse(spool_ids)
        if not items:
            return 0
        for spooled, _ in items:
            if not self.blobs.exists(spooled.sha256):  # the parser died before writing it
                with open(spooled.path, "rb") as fh:
                    self.blobs.put_chunks(spooled.sha256, read_exactly(fh, spooled.size))
        # One flush makes every blob of the batch durable before the rows
        # that refer to them commit.
        self.blobs.flush()
        with Session(self.engine) as session, session.begin():
            stored, duplicates = self._store(session, items)
        for spooled, _ in items:
            self.spool.remove(spooled.spool_id)
            self._parsed.pop(spooled.spool_id, None)
        self.stats.stored += stored
        self.stats.duplicates += duplicates
        newest = max(s.envelope.received_at for s, _ in items)
        self.stats.last_latency_seconds = (utcnow() - newest).total_seconds()
        log.info("stored %d message(s), %d duplicate(s)", stored, duplicates)
        return len(items)

    def _load_and_parse(self, spool_ids: list[str]) -> list[tuple[SpooledMessage, ParsedMessage]]:
        loaded: list[SpooledMessage] = []
        for spool_id in spool_ids:
            try:
                loaded.append(self.spool.load(spool_id))
            except SpoolCorrupt as exc:
                log.error("quarantined corrupt spool entry: %s", exc)
                self.spool.quarantine(spool_id)
                self.stats.quarantined += 1
        todo = [s for s in loaded if s.spool_id not in self._parsed]
        for spooled, parsed in zip(todo, self._parse_all(todo)):
            self._parsed[spooled.spool_id] = parsed
        return [(s, self._parsed[s.spool_id]) for s in loaded]

    def _parse_all(self, items: list[SpooledMessage]) -> list[ParsedMessage]:
        results: list[ParsedMessage] = []
        remaining = list(items)
        while remaining:
            pool = self._get_pool()
            futures = [pool.submit(parse_spooled_message, s.path, s.size, s.sha256, self.blobs.root) for s in remaining]
            self._parses += len(futures)
            for index, (spooled, future) in enumerate(zip(remaining, futures)):
                parsed = self._parse_result(spooled, future)
                if parsed is None:
                    # The pool was lost: this item was retried alone and the
                    # rest go to a fresh pool.
                    results.append(self._parse_alone(spooled))
                    remaining = remaining[index + 1 :]
                    break
                results.append(parsed)
            else:
                remaining = []
        return results

    def _parse_result(
        self, spooled: SpooledMessage, future: concurrent.futures.Future[ParsedMessage]
    ) -> Optional[ParsedMessage]:
        """The parse; a problem note when the parser raised; ``None`` when the
        worker pool was lost (timeout or a dead worker)."""
        try:
            return future.result(timeout=PARSE_TIMEOUT_SECONDS)
        except (concurrent.futures.TimeoutError, BrokenProcessPool, concurrent.futures.CancelledError):
            if self._stop.is_set():
                raise _Stopping() from None
            self._reset_pool()
            return None
        except Exception as exc:  # the parser's own failure on odd input
            log.exception("parser failed on %s", spooled.spool_id)
            return _unparsed(f"解析できませんでした: {type(exc).__name__}: {exc}")

    def _parse_alone(self, spooled: SpooledMessage) -> ParsedMessage:
        """Retry one message in a fresh pool, so that a worker lost to another
        message of the batch is not blamed on this one. A mail the parser
        cannot handle is still stored, with its raw source and a note."""
        future = self._get_pool().submit(
            parse_spooled_message, spooled.path, spooled.size, spooled.sha256, self.blobs.root
        )
        parsed = self._parse_result(spooled, future)
        if parsed is not None:
            return parsed
        log.error("parser failed (timeout or crash) on %s", spooled.spool_id)
        return _unparsed(f"解析できませんでした（{PARSE_TIMEOUT_SECONDS}秒以内に終わらないか、パーサーが異常終了しました）")

    def _get_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.settings.ingest_workers,
                mp_context=multiprocessing.get_context("spawn"),
            )
            self._parses = 0
        return self._pool

    def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _reset_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            pool.shutdown(wait=False, cancel_futures=True)

    def _store(self, session: Session, items: list[tuple[SpooledMessage, ParsedMessage]]) -> tuple[int, int]:
        wanted = {
            (normalize_address(rcpt), spooled.sha256)
            for spooled, _ in items
            for rcpt in spooled.envelope.rcpt_tos
        }
        address_ids = self._address_ids(session, {a for a, _ in wanted})
        existing: set[tuple[int, str]] = set(
            (address_id, sha)
            for address_id, sha in session.execute(
                select(Message.address_id, Message.raw_sha256).where(
                    tuple_(Message.address_id, Message.raw_sha256).in_(
                        [(address_ids[a], sha) for a, sha in wanted]
                    )
                )
            )
        )
        stored = duplicates = 0
        rows: list[dict[str, object]] = []
        row_attachments: list[ParsedMessage] = []
        for spooled, parsed in items:
            for rcpt in sorted({normalize_address(r) for r in spooled.envelope.rcpt_tos}):
                key = (address_ids[rcpt], spooled.sha256)
                if key in existing:
                    duplicates += 1
                    continue
                existing.add(key)
                rows.append(_message_values(spooled, parsed, key[0], rcpt))
                row_attachments.append(parsed)
                stored += 1
        if rows:
            # Core bulk inserts: far less CPU (and GIL time taken from the
            # SMTP event loop) than building ORM objects.
            ids = session.scalars(
                insert(Message).returning(Message.id, sort_by_parameter_order=True), rows
            ).all()
            attachment_rows = [
                _attachment_values(message_id, attachment)
                for message_id, parsed in zip(ids, row_attachments)
                for attachment in parsed.attachments
            ]
            if attachment_rows:
                session.execute(insert(Attachment), attachment_rows)
        return stored, duplicates

    def _address_ids(self, session: Session, addresses: set[str]) -> dict[str, int]:
        rows = session.execute(select(Address.address, Address.id).where(Address.address.in_(addresses)))
        ids = {address: id_ for address, id_ in rows}
        for missing in sorted(addresses - set(ids)):
            # Accepted while designated, removed before ingestion: keep the
            # mail under a disabled entry rather than lose it.
            log.error("address %s vanished before ingestion; kept as disabled", missing)
            row = Address(address=missing, section="未設定", label="受信後に削除されたアドレス", enabled=False)
            session.add(row)
            session.flush()
            ids[missing] = row.id
        return ids


def _unparsed(note: str) -> ParsedMessage:
    return ParsedMessage(problems=[note])


def _message_values(spooled: SpooledMessage, parsed: ParsedMessage, address_id: int, rcpt: str) -> dict[str, object]:
    env = spooled.envelope
    return {
        "address_id": address_id,
        "mail_from": env.mail_from,
        "rcpt_to": rcpt,
        "client_address": env.client_address,
        "received_at": env.received_at,
        "spool_id": spooled.spool_id,
        "raw_sha256": spooled.sha256,
        "raw_size": spooled.size,
        "message_id": parsed.message_id,
        "from_name": parsed.from_name,
        "from_address": parsed.from_address,
        "to": parsed.to,
        "cc": parsed.cc,
        "subject": parsed.subject,
        "date": parsed.date,
        "text_body": parsed.text_body,
        "html_body": parsed.html_body,
        "problems": parsed.problems,
        "status": "new",
    }


def _attachment_values(message_id: int, attachment: ParsedAttachment) -> dict[str, object]:
    return {
        "message_id": message_id,
        "position": attachment.position,
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "sha256": attachment.sha256,
        "content_id": attachment.content_id,
        "disposition": attachment.disposition,
    }
