"""Registration events: every registration, amendment and cancellation is
an event the document system reads (handoff/feed.py) with an opaque
cursor, never skipped, never repeated.

A consumer that has read up to event N must never later meet an event
numbered below N that was not there when it read, so ``seq`` has to follow
commit order, not the order in which transactions began:

* **SQLite** has one writer at a time. A write transaction holds the
  database's write lock from its first write until it commits, and the
  event rows are written inside it (AUTOINCREMENT: max + 1). No other
  transaction can number an event until this one has committed.
* **PostgreSQL** hands out sequence values when a row is inserted, not when
  it commits: a long transaction could hold 5 while 6 commits, and a reader
  would move past 5. So every transaction that records events first takes
  one transaction-level advisory lock (:data:`FEED_LOCK`), which PostgreSQL
  releases only after the commit is visible to others. The transaction
  holding N is visible before any other can draw N + 1. A rolled-back
  transaction leaves a gap that nothing later fills.

Events are recorded as the last writes of their transaction, so the lock is
held only from there to the commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from ..models import Registration, RegistrationEvent

EVENTS = ("registered", "amended", "cancelled")
# "mailhand" as a number: any constant, the same in every process.
FEED_LOCK = 0x6D61696C68616E64


def record(session: Session, changed: Sequence[tuple[Registration, str]], at: dt.datetime) -> None:
    """Append events for ``changed`` (registration, event); call it last
    before the commit (see the module docstring)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FEED_LOCK})
    for registration, event in changed:
        assert event in EVENTS, event
        row = RegistrationEvent(registration_id=registration.id, event=event, at=at)
        session.add(row)
        session.flush()
        registration.last_event_seq = row.seq


def pending(registration: Registration) -> bool:
    """Whether the document system has yet to acknowledge an event of it."""
    return registration.last_event_seq is not None and (registration.acked_seq or 0) < registration.last_event_seq


def _awaiting(older_than: dt.datetime, section_ids: Iterable[int] | None) -> Any:
    stmt = (
        select(Registration)
        .join(RegistrationEvent, RegistrationEvent.seq == Registration.last_event_seq)
        .where(
            or_(Registration.acked_seq.is_(None), Registration.acked_seq < Registration.last_event_seq),
            RegistrationEvent.at < older_than,
        )
    )
    if section_ids is not None:
        stmt = stmt.where(Registration.section_id.in_(list(section_ids)))
    return stmt


def awaiting_ack(
    session: Session, older_than: dt.datetime, section_ids: Iterable[int] | None = None
) -> list[Registration]:
    """Registrations whose newest event, made before ``older_than``, the
    document system has not acknowledged: oldest first."""
    return list(session.scalars(_awaiting(older_than, section_ids).order_by(RegistrationEvent.seq)))


def count_awaiting_ack(session: Session, older_than: dt.datetime) -> int:
    """How many :func:`awaiting_ack` would list (for /metrics), counted in the database."""
    stmt = _awaiting(older_than, None).with_only_columns(func.count(Registration.id))
    return int(session.scalar(stmt) or 0)
