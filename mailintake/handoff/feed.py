"""The registration feed for the document system: events read after an
opaque cursor, and acknowledgements. Why an event is never skipped nor
repeated is in records/events.py, where events are written."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, or_, select, update
from sqlalchemy.orm import Session

from ..errors import BadRequest, NotFound
from ..models import Registration, RegistrationEvent, utcnow
from ..records.events import pending
from .records import registration_records

MAX_PAGE = 500


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"e1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
        version, _, seq = raw.partition(":")
        if version != "e1" or not seq.isdigit():
            raise ValueError(raw)
        return int(seq)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("invalid cursor") from exc


@dataclass(frozen=True)
class FeedPage:
    items: list[dict[str, Any]]
    next_cursor: str
    has_more: bool

    def as_json(self) -> dict[str, Any]:
        return {"items": self.items, "next_cursor": self.next_cursor, "has_more": self.has_more}


def read(engine: Engine, cursor: str | None, limit: int, section_ids: Iterable[int] | None = None) -> FeedPage:
    """Events after ``cursor`` in commit order, each with the registration's
    current record; ``section_ids`` limits them to those sections."""
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    after = decode_cursor(cursor)
    stmt = (
        select(RegistrationEvent).where(RegistrationEvent.seq > after).order_by(RegistrationEvent.seq).limit(limit + 1)
    )
    if section_ids is not None:
        stmt = stmt.join(Registration, Registration.id == RegistrationEvent.registration_id).where(
            Registration.section_id.in_(list(section_ids))
        )
    with Session(engine) as session:
        events = list(session.scalars(stmt))
        page = events[:limit]
        records = registration_records(session, {e.registration_id for e in page})
        items = [
            {
                "event_id": event.seq,
                "cursor": encode_cursor(event.seq),
                "event": event.event,
                "event_at": event.at.isoformat(),
                "registration": records[event.registration_id],
            }
            for event in page
        ]
    last = page[-1].seq if page else after
    return FeedPage(items, encode_cursor(last), len(events) > limit)


def ack(
    engine: Engine,
    registration_id: int,
    by: str,
    event_id: int | None = None,
    section_ids: Iterable[int] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Record that the document system has taken the registration up to
    ``event_id`` (default: its newest event). Repeating it changes nothing;
    an acknowledgement never moves back."""
    now = now or utcnow()
    with Session(engine) as session, session.begin():
        registration = session.get(Registration, registration_id)
        if registration is None or (section_ids is not None and registration.section_id not in set(section_ids)):
            raise NotFound(f"no registration {registration_id}")
        newest = registration.last_event_seq or 0
        if event_id is None:
            event_id = newest
        elif event_id > newest or not session.scalar(
            select(func.count())
            .select_from(RegistrationEvent)
            .where(RegistrationEvent.seq == event_id, RegistrationEvent.registration_id == registration_id)
        ):
            raise BadRequest(f"event {event_id} is not an event of registration {registration_id}")
        session.execute(
            update(Registration)
            .where(
                Registration.id == registration_id,
                or_(Registration.acked_seq.is_(None), Registration.acked_seq < event_id),
            )
            .values(acked_seq=event_id, acked_at=now, acked_by=by)
        )
        session.refresh(registration)
        return ack_state(registration)


def ack_state(registration: Registration) -> dict[str, Any]:
    return {
        "registration_id": registration.id,
        "acknowledged_event_id": registration.acked_seq,
        "acknowledged_at": registration.acked_at.isoformat() if registration.acked_at else None,
        "acknowledged_by": registration.acked_by or None,
        "pending": pending(registration),
    }
