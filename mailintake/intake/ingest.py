"""Ingestion: spooled raw mail → parsed → blob store + database → spool
entry removed.

Order of durability for each batch: the original message and attachment
blobs are flushed to disk, then the database transaction commits, then the
spool entries are removed. A crash at any point leaves the entries in the
spool, and storing one again is a no-op because (address, raw sha256) is
unique. While the database is unavailable the entries wait and are retried.

The ingester runs in its own process (see ``ingest_process``), away from
the SMTP event loop; a mail the parser cannot finish is marked as poison by
the supervisor and then stored with its raw source and a problem note.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from ..blobs import open_stores
from ..config import Settings
from ..fsync import release_free_memory
from ..leases import RETRY_SECONDS, Lease
from ..mail.addresses import designated_form
from ..mail.decoding import parse_spooled_message
from ..mail.parsed import Limits, ParsedMessage
from ..models import Address, Attachment, Message, utcnow
from ..records import retention, search
from ..schema import SchemaMismatch, ensure_current
from .addresses import enabled_addresses, write_snapshot
from .counters import metrics_dir, write_json
from .probe import FORGED_NOTE
from .probe import claim as claim_probe
from .probe import verify as verify_probe
from .rows import attachment_values, message_values
from .spool import Spool, SpoolCorrupt, SpooledMessage

log = logging.getLogger(__name__)

# Search indexing waits for a quiet spell, then goes in small batches so
# that a database lock it holds delays new mail by one batch at most.
SCHEMA_CHECK_SECONDS = 5.0
PURGE_INTERVAL_SECONDS = 24 * 3600
IDLE_SECONDS = 2.0
# How often the relay's address snapshot is compared with the database.
ADDRESS_SYNC_SECONDS = 5.0
IDLE_INDEX_BATCH = 10
POISON_NOTE = "解析できませんでした（時間内に終わらないか、解析処理が異常終了しました）。原文を確認してください。"


class FilesGone(Exception):
    """Files of a batch were removed (a purge on another node) between
    storing them and adding the rows that refer to them."""


class Ingester:
    """Stores spooled mail. Not thread-safe; one per process.

    ``on_parse`` is told the spool id being parsed (``None`` when done), so
    a supervisor can spot a parse that runs too long.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        spool: Spool,
        on_parse: Callable[[str | None], None] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.spool = spool
        self.blobs, self.originals = open_stores(settings, engine)
        self.stored_total = 0  # published to metrics/ingest.json
        self.invalid_probes = 0  # likewise
        self._on_parse = on_parse or (lambda _id: None)
        self._parsed: dict[str, ParsedMessage] = {}
        self._schema_checked_at: float | None = None
        self._purged_at: float | None = None
        self._limits = Limits(settings.max_mime_part_lines, settings.max_header_display_chars)
        self._last_busy = 0.0
        self._addresses_synced_at: float | None = None
        self._purge_lease = Lease(engine, "retention-purge")
        self._trimmed = True
        self._snapshot: list[str] | None = None

    def run(self, should_stop: Callable[[], bool], wait_for_work: Callable[[float], object]) -> None:
        """Ingest until ``should_stop()``; never gives up on an error (the
        mail stays in the spool) but pauses before retrying."""
        threading.Thread(target=self._index_when_quiet, args=(should_stop,), name="search-indexer", daemon=True).start()
        while not should_stop():
            try:
                self._check_schema()
                self._sync_addresses()
                done = self.ingest_pending(should_stop)
            except FilesGone as exc:
                log.warning("stored files were purged meanwhile; storing the batch again: %s", exc)
                wait_for_work(self.settings.ingest_retry_seconds)
                continue
            except SchemaMismatch as exc:
                # Someone is upgrading the database under a running relay:
                # the mail waits in the spool until this code matches again.
                log.warning("ingestion paused: %s", exc)
                self._schema_checked_at = None
                wait_for_work(max(self.settings.ingest_retry_seconds, 5.0))
                continue
            except SQLAlchemyError as exc:
                log.warning("ingestion paused, database unavailable: %s", type(exc).__name__)
                wait_for_work(self.settings.ingest_retry_seconds)
                continue
            except OSError as exc:
                log.error("ingestion paused, storage error: %s", exc)
                wait_for_work(self.settings.ingest_retry_seconds)
                continue
            except Exception:
                log.exception("ingestion failed; retrying")
                wait_for_work(self.settings.ingest_retry_seconds)
                continue
            if done:
                self._last_busy = time.monotonic()
                self._trimmed = False
            else:
                if not self._trimmed:  # the spool is empty again
                    release_free_memory()
                    self._trimmed = True
                self._purge_if_due()
                # A periodic rescan too: entries may come from another
                # process (mailintake import) that cannot wake this one.
                wait_for_work(1.0)

    def _sync_addresses(self) -> None:
        """Every few seconds the relay's snapshot follows the database, so a
        change made through another node reaches this node's relay too. The
        database down, the snapshot stays as it was (the relay's fallback)."""
        now = time.monotonic()
        if self._addresses_synced_at is not None and now - self._addresses_synced_at < ADDRESS_SYNC_SECONDS:
            return
        self._addresses_synced_at = now
        enabled = enabled_addresses(self.engine)
        if enabled != self._snapshot:
            write_snapshot(self.settings.address_snapshot, enabled)
            self._snapshot = enabled

    def _purge_if_due(self) -> None:
        """The retention purge, once a day when idle, on one node of a
        cluster. This process holds the ingest lock, so no file it removes
        can be referenced meanwhile by this node; other nodes' ingesters
        hold their files while they commit (see ``_store``)."""
        rule = retention.PurgeRule.from_settings(self.settings)
        now = time.monotonic()
        if not rule.active or (self._purged_at is not None and now - self._purged_at < PURGE_INTERVAL_SECONDS):
            return
        if not self._purge_lease.held():
            self._purged_at = now - PURGE_INTERVAL_SECONDS + 60  # another node purges; ask again in a minute
            return
        self._purged_at = now
        in_use = {a.sha256 for parsed in self._parsed.values() for a in parsed.attachments}
        retention.purge(self.engine, self.blobs, self.originals, rule, files_in_use=in_use)

    def _check_schema(self) -> None:
        """At start and every few seconds: the database may be upgraded
        (or created) while the relay runs."""
        now = time.monotonic()
        if self._schema_checked_at is None or now - self._schema_checked_at > SCHEMA_CHECK_SECONDS:
            ensure_current(self.engine)
            self._schema_checked_at = now

    def _index_when_quiet(self, should_stop: Callable[[], bool]) -> None:
        """Search indexing, in a thread of lowest CPU priority: only after no
        mail has come for IDLE_SECONDS, in small batches, so that it neither
        delays new mail nor takes CPU from the relay (under load nothing is
        indexed; searches scan the few unindexed mails meanwhile)."""
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:
            pass
        lease = Lease(self.engine, "search-indexer")  # one node indexes for all
        while not should_stop():
            # The lease first: a node takes over at once, busy or not.
            if not lease.held():
                time.sleep(RETRY_SECONDS)
                continue
            if time.monotonic() - self._last_busy < IDLE_SECONDS:
                time.sleep(0.5)
                continue
            try:
                if search.index_pending(self.engine, batch=IDLE_INDEX_BATCH) == 0:
                    time.sleep(1.0)
            except SQLAlchemyError as exc:
                log.warning("search indexing paused: %s", type(exc).__name__)
                time.sleep(max(self.settings.ingest_retry_seconds, 5.0))
            except Exception:
                log.exception("search indexing failed; retrying")
                time.sleep(self.settings.ingest_retry_seconds)
        lease.release()

    def ingest_pending(self, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Ingest committed spool entries in batches; returns how many."""
        done = 0
        while not should_stop():
            pending = self.spool.pending()
            if not pending:
                break
            done += self.ingest_batch(pending[: self.settings.ingest_batch])
        return done

    def ingest_batch(self, spool_ids: list[str]) -> int:
        items = self._load_and_parse(spool_ids)
        if not items:
            return 0
        for spooled, _ in items:
            self.originals.keep(spooled.path, spooled.size, spooled.sha256)
        # One flush makes every original and attachment of the batch durable
        # before the rows that refer to them commit.
        self.blobs.flush()
        self.originals.flush()
        try:
            stored, duplicates = self._store_batch(items)
        except FilesGone:
            for spooled, _ in items:  # parsed again, its files stored again
                self._parsed.pop(spooled.spool_id, None)
            raise
        for spooled, _ in items:
            self.spool.remove(spooled.spool_id)
            self._parsed.pop(spooled.spool_id, None)
        self.stored_total += stored
        newest = max(s.envelope.received_at for s, _ in items)
        latency = (utcnow() - newest).total_seconds()
        log.info("stored %d message(s), %d duplicate(s), latency %.2fs", stored, duplicates, latency)
        try:
            write_json(
                metrics_dir(self.settings.data_dir) / "ingest.json",
                {"stored": self.stored_total, "latency_seconds": latency, "invalid_probes": self.invalid_probes},
            )
        except OSError:
            pass  # metrics must never hold up ingestion
        return len(items)

    def _load_and_parse(self, spool_ids: list[str]) -> list[tuple[SpooledMessage, ParsedMessage]]:
        items = []
        for spool_id in spool_ids:
            try:
                spooled = self.spool.load(spool_id)
            except SpoolCorrupt as exc:
                log.error("quarantined corrupt spool entry: %s", exc)
                self.spool.quarantine(spool_id)
                continue
            if spool_id not in self._parsed:
                self._parsed[spool_id] = self._parse(spooled)
            items.append((spooled, self._parsed[spool_id]))
        return items

    def _parse(self, spooled: SpooledMessage) -> ParsedMessage:
        """The parse, or a problem note: a mail that cannot be parsed is
        still stored, with its raw source."""
        if self.spool.is_poison(spooled.spool_id):
            log.error("storing %s unparsed: it stopped the parser before", spooled.spool_id)
            return ParsedMessage(problems=[POISON_NOTE])
        self._on_parse(spooled.spool_id)
        try:
            return parse_spooled_message(spooled.path, spooled.size, self.blobs, self._limits)
        except Exception as exc:  # the parser's own failure on odd input, MemoryError included
            log.exception("parser failed on %s", spooled.spool_id)
            return ParsedMessage(problems=[f"解析できませんでした: {type(exc).__name__}: {exc}"])
        finally:
            self._on_parse(None)

    def _store(self, session: Session, items: list[tuple[SpooledMessage, ParsedMessage]]) -> tuple[int, int]:
        wanted = {
            (self._designated(rcpt), spooled.sha256) for spooled, _ in items for rcpt in spooled.envelope.rcpt_tos
        }
        self._hold_files(session, items)
        address_ids = self._address_ids(session, {a for a, _ in wanted})
        pairs = {(address_ids[a], sha) for a, sha in wanted}
        # Two plain INs (a superset of the pairs, narrowed here): SQLite
        # scans the whole unique index for a row-value IN, a lookup for these.
        existing: set[tuple[int, str]] = pairs & {
            (int(row.address_id), str(row.raw_sha256))
            for row in session.execute(
                select(Message.address_id, Message.raw_sha256).where(
                    Message.address_id.in_({a for a, _ in pairs}), Message.raw_sha256.in_({sha for _, sha in pairs})
                )
            )
        }
        stored = duplicates = 0
        rows: list[dict[str, object]] = []
        row_attachments: list[ParsedMessage] = []
        for spooled, parsed in items:
            for rcpt in sorted({self._designated(r) for r in spooled.envelope.rcpt_tos}):
                key = (address_ids[rcpt], spooled.sha256)
                if key in existing:
                    duplicates += 1
                    continue
                existing.add(key)
                rows.append(message_values(spooled, parsed, key[0], rcpt, self._probe_id(session, parsed, rcpt)))
                row_attachments.append(parsed)
                stored += 1
        if rows:
            # Core bulk inserts: far less CPU (and GIL time taken from the
            # SMTP event loop) than building ORM objects.
            ids = session.scalars(insert(Message).returning(Message.id, sort_by_parameter_order=True), rows).all()
            attachment_rows = [
                attachment_values(message_id, attachment)
                for message_id, parsed in zip(ids, row_attachments, strict=True)
                for attachment in parsed.attachments
            ]
            if attachment_rows:
                session.execute(insert(Attachment), attachment_rows)
        return stored, duplicates

    def _hold_files(self, session: Session, items: list[tuple[SpooledMessage, ParsedMessage]]) -> None:
        """Keep the batch's files from a purge until its rows are in."""
        conn = session.connection()
        attachments = {a.sha256 for _, parsed in items for a in parsed.attachments}
        raws = {spooled.sha256 for spooled, _ in items}
        gone = (attachments - self.blobs.lock(conn, attachments)) | (raws - self.originals.lock(conn, raws))
        if gone:
            raise FilesGone(", ".join(sorted(gone)[:3]))

    def _probe_id(self, session: Session, parsed: ParsedMessage, rcpt: str) -> str | None:
        """The probe this arrival uses up, or None: then the mail is listed,
        with a note when it carries a probe header at all."""
        if not parsed.probe_header:
            return None
        probe_id = verify_probe(self.settings.data_dir, parsed.probe_header)
        if probe_id is not None and claim_probe(session, probe_id, rcpt, parsed.message_id):
            return probe_id
        if FORGED_NOTE not in parsed.problems:
            parsed.problems.append(FORGED_NOTE)
        self.invalid_probes += 1
        log.warning("a mail for %s carries a probe header that is not honoured", rcpt)
        return None

    def _designated(self, rcpt: str) -> str:
        return designated_form(rcpt, self.settings.copy_route_suffix)

    def _store_batch(self, items: list[tuple[SpooledMessage, ParsedMessage]]) -> tuple[int, int]:
        try:
            with Session(self.engine) as session, session.begin():
                return self._store(session, items)
        except DBAPIError as exc:
            if _database_unavailable(exc):
                raise
            # Something in this batch's data was refused: store one by one
            # so that one message cannot hold back the others.
            log.error("batch refused by the database (%s); storing one by one", type(exc.orig).__name__)
            return self._store_one_by_one(items)

    def _store_one_by_one(self, items: list[tuple[SpooledMessage, ParsedMessage]]) -> tuple[int, int]:
        stored = duplicates = 0
        for spooled, parsed in items:
            try:
                with Session(self.engine) as session, session.begin():
                    s, d = self._store(session, [(spooled, parsed)])
            except DBAPIError as exc:
                if _database_unavailable(exc):
                    raise
                log.error(
                    "decoded fields of %s refused (%s); storing it raw", spooled.spool_id, type(exc.orig).__name__
                )
                note = f"解析結果を保存できませんでした（{type(exc.orig).__name__}）。原文を確認してください。"
                with Session(self.engine) as session, session.begin():
                    s, d = self._store(session, [(spooled, ParsedMessage(problems=[note]))])
            stored += s
            duplicates += d
        return stored, duplicates

    def _address_ids(self, session: Session, addresses: set[str]) -> dict[str, int]:
        rows = session.execute(select(Address.address, Address.id).where(Address.address.in_(addresses)))
        ids = {address: id_ for address, id_ in rows}
        for missing in sorted(addresses - set(ids)):
            # Accepted while designated, removed before ingestion: keep the
            # mail under a disabled entry rather than lose it.
            log.error("address %s vanished before ingestion; kept as disabled", missing)
            row = Address(address=missing, section=None, label="受信後に削除されたアドレス", enabled=False)
            session.add(row)
            session.flush()
            ids[missing] = row.id
        return ids


def _database_unavailable(exc: DBAPIError) -> bool:
    """Connection trouble (retry later), as opposed to data the database refuses."""
    return exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))
