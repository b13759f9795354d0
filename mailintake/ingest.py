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
from pathlib import Path
from typing import Optional

from sqlalchemy import Engine, select, tuple_
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .addresses import normalize_address
from .blobs import BlobStore
from .config import Settings
from .db import create_schema
from .decoding import ParsedMessage, parse_message_file
from .models import Address, Attachment, Message, utcnow
from .spool import Spool, SpoolCorrupt, SpooledMessage

log = logging.getLogger(__name__)

PARSE_TIMEOUT_SECONDS = 120


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
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
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
                if not self._schema_ready:
                    create_schema(self.engine)
                    self._schema_ready = True
                done = self.ingest_pending()
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
        dirs: set[Path] = set()
        for spooled, parsed in items:
            dirs.add(self.blobs.put_file(spooled.raw_path, spooled.sha256))
            dirs |= parsed.blob_dirs
        self.blobs.sync_dirs(dirs)
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
        if not items:
            return []
        pool = self._get_pool()
        futures = [pool.submit(parse_message_file, s.raw_path, self.blobs.root) for s in items]
        results = []
        for spooled, future in zip(items, futures):
            try:
                results.append(future.result(timeout=PARSE_TIMEOUT_SECONDS))
            except concurrent.futures.TimeoutError:
                log.error("parser timed out on %s", spooled.spool_id)
                self._reset_pool()
                results.append(_unparsed(f"解析が{PARSE_TIMEOUT_SECONDS}秒以内に終わりませんでした"))
            except BrokenProcessPool:
                log.error("parser process died on %s", spooled.spool_id)
                self._reset_pool()
                results.append(_unparsed("解析中にパーサーが異常終了しました"))
            except Exception as exc:  # the parser's own failure on odd input
                log.exception("parser failed on %s", spooled.spool_id)
                results.append(_unparsed(f"解析できませんでした: {type(exc).__name__}: {exc}"))
        return results

    def _get_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.settings.ingest_workers,
                mp_context=multiprocessing.get_context("spawn"),
                max_tasks_per_child=1000,
            )
        return self._pool

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
        for spooled, parsed in items:
            for rcpt in sorted({normalize_address(r) for r in spooled.envelope.rcpt_tos}):
                key = (address_ids[rcpt], spooled.sha256)
                if key in existing:
                    duplicates += 1
                    continue
                existing.add(key)
                session.add(_message_row(spooled, parsed, key[0], rcpt))
                stored += 1
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


def _message_row(spooled: SpooledMessage, parsed: ParsedMessage, address_id: int, rcpt: str) -> Message:
    env = spooled.envelope
    return Message(
        address_id=address_id,
        mail_from=env.mail_from,
        rcpt_to=rcpt,
        client_address=env.client_address,
        received_at=env.received_at,
        spool_id=spooled.spool_id,
        raw_sha256=spooled.sha256,
        raw_size=spooled.size,
        message_id=parsed.message_id,
        from_name=parsed.from_name,
        from_address=parsed.from_address,
        to=parsed.to,
        cc=parsed.cc,
        subject=parsed.subject,
        date=parsed.date,
        text_body=parsed.text_body,
        html_body=parsed.html_body,
        problems=parsed.problems,
        attachments=[
            Attachment(
                position=a.position,
                filename=a.filename,
                content_type=a.content_type,
                size=a.size,
                sha256=a.sha256,
                content_id=a.content_id,
                disposition=a.disposition,
            )
            for a in parsed.attachments
        ],
    )


def wait_until_idle(ingester: Ingester, timeout: float) -> bool:
    """For tools and tests: wait until the spool backlog is empty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ingester.spool.backlog() == 0:
            return True
        time.sleep(0.05)
    return False
