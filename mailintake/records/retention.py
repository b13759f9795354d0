"""Retention: deleting mail that was never registered, after a configured
number of days (未処理 and 対象外 separately).

Mail that carries a 収受番号 — registered, or registered and later
cancelled — is never purged here. Files (attachments and originals) are
shared by content hash, so a file goes only when no remaining row needs
it. Only the ingester writes files, so files are removed by the process
that holds the ingest lock: the running ingester (once a day) or
``mailintake purge`` while the service is stopped; nothing can then
re-reference a file between the check and the removal.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import Engine, delete, exists, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ..blobs import BlobStore, OriginalStore
from ..config import Settings
from ..models import Attachment, Message, MessageStatus, Registration, utcnow
from . import audit, search

log = logging.getLogger(__name__)

BATCH = 500


@dataclass(frozen=True)
class PurgeRule:
    """Cut-offs: mail received before them goes; ``None`` keeps that kind."""

    new_before: dt.datetime | None
    dismissed_before: dt.datetime | None

    @classmethod
    def from_days(cls, new_days: int, dismissed_days: int, now: dt.datetime | None = None) -> PurgeRule:
        now = now or utcnow()
        return cls(
            new_before=now - dt.timedelta(days=new_days) if new_days > 0 else None,
            dismissed_before=now - dt.timedelta(days=dismissed_days) if dismissed_days > 0 else None,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> PurgeRule:
        return cls.from_days(settings.purge_new_after_days, settings.purge_dismissed_after_days)

    @property
    def active(self) -> bool:
        return self.new_before is not None or self.dismissed_before is not None

    def describe(self) -> str:
        parts = []
        if self.new_before is not None:
            parts.append(f"未処理は {self.new_before.date().isoformat()} より前")
        if self.dismissed_before is not None:
            parts.append(f"対象外は {self.dismissed_before.date().isoformat()} より前")
        return "、".join(parts) or "削除の設定なし"

    def condition(self) -> ColumnElement[bool]:
        kinds = []
        if self.new_before is not None:
            kinds.append((Message.status == MessageStatus.NEW) & (Message.received_at < self.new_before))
        if self.dismissed_before is not None:
            kinds.append((Message.status == MessageStatus.DISMISSED) & (Message.received_at < self.dismissed_before))
        registered = exists().where(Registration.message_id == Message.id)
        return or_(*kinds) & ~registered


@dataclass
class PurgeResult:
    new: int = 0
    dismissed: int = 0
    bytes: int = 0
    files: int = 0
    ids: list[int] = field(default_factory=list, repr=False)

    @property
    def messages(self) -> int:
        return self.new + self.dismissed

    def describe(self) -> str:
        return f"未処理 {self.new} 件、対象外 {self.dismissed} 件（{self.bytes / 1e6:.1f} MB）" + (
            f"、ファイル {self.files} 個" if self.files else ""
        )


def plan(engine: Engine, rule: PurgeRule) -> PurgeResult:
    """What a purge would delete (the dry run)."""
    result = PurgeResult()
    if not rule.active:
        return result
    with Session(engine) as session:
        rows = session.execute(
            select(Message.status, func.count(), func.sum(Message.raw_size + Message.attachment_bytes))
            .where(rule.condition())
            .group_by(Message.status)
        )
        for status, count, size in rows:
            setattr(result, "new" if status == MessageStatus.NEW else "dismissed", int(count))
            result.bytes += int(size or 0)
    return result


def purge(
    engine: Engine,
    blobs: BlobStore,
    originals: OriginalStore,
    rule: PurgeRule,
    *,
    files_in_use: Collection[str] = (),
    batch: int = BATCH,
) -> PurgeResult:
    """Delete what ``plan`` lists, in short transactions; then the files no
    remaining row needs (except ``files_in_use``: parsed, not yet stored).
    The caller holds the ingest lock. One audit entry records the run."""
    result = PurgeResult()
    if not rule.active:
        return result
    while True:
        with Session(engine) as session, session.begin():
            rows = session.execute(
                select(Message.id, Message.status, Message.raw_sha256, Message.raw_size + Message.attachment_bytes)
                .where(rule.condition())
                .order_by(Message.id)
                .limit(batch)
            ).all()
            if not rows:
                break
            ids = [row.id for row in rows]
            raw = {row.raw_sha256 for row in rows}
            stored = set(session.scalars(select(Attachment.sha256).where(Attachment.message_id.in_(ids))))
            session.execute(delete(Attachment).where(Attachment.message_id.in_(ids)))
            search.remove(session.connection(), ids)
            session.execute(delete(Message).where(Message.id.in_(ids)))  # reads cascade
            for row in rows:
                if row.status == MessageStatus.NEW:
                    result.new += 1
                else:
                    result.dismissed += 1
                result.bytes += int(row[3] or 0)
            result.ids.extend(ids)
        result.files += _remove_unused_files(engine, blobs, originals, stored, raw, set(files_in_use))
    if result.messages:
        with Session(engine) as session, session.begin():
            audit.record(session, None, "purge", username="system", detail=f"{rule.describe()}: {result.describe()}")
        log.info("retention purge: %s", result.describe())
    return result


def _remove_unused_files(
    engine: Engine,
    blobs: BlobStore,
    originals: OriginalStore,
    attachment_shas: set[str],
    raw_shas: set[str],
    in_use: set[str],
) -> int:
    with engine.begin() as conn:
        # Locked first, then looked up: the lookup, a statement of its own,
        # sees every row another node's ingester committed while it held them.
        attachments = blobs.lock(conn, attachment_shas - in_use, exclusive=True)
        raws = originals.lock(conn, raw_shas, exclusive=True)
        attachments -= set(conn.scalars(select(Attachment.sha256).where(Attachment.sha256.in_(attachments))))
        raws -= set(conn.scalars(select(Message.raw_sha256).where(Message.raw_sha256.in_(raws))))
        return blobs.remove(attachments, conn) + originals.remove(raws, conn)
