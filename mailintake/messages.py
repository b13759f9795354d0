"""Reading stored messages: listing with keyset pagination, detail, blobs."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select
from sqlalchemy.orm import Session, selectinload

from . import charsets
from .addresses import normalize_address
from .errors import BadRequest, NotFound
from .filenames import download_name
from .models import Address, Attachment, Message

STATUSES = ("new", "registered", "dismissed")
MAX_PAGE = 200


@dataclass(frozen=True)
class MessageQuery:
    address: str | None = None
    status: str | None = None
    q: str | None = None
    cursor: str | None = None
    limit: int = 50

    @classmethod
    def from_params(cls, params: Any) -> MessageQuery:
        status = params.get("status") or None
        if status is not None and status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
        raw_limit = params.get("limit") or "50"
        try:
            limit = int(raw_limit)
        except ValueError as exc:
            raise BadRequest("limit must be an integer") from exc
        if not 1 <= limit <= MAX_PAGE:
            raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
        # The same normalisation as stored text: 〜 finds ～ and − finds －.
        q = charsets.normalize((params.get("q") or "").strip()) or None
        if q is not None and len(q) > 200:
            raise BadRequest("q is longer than 200 characters")
        return cls(
            address=params.get("address") or None,
            status=status,
            q=q,
            cursor=params.get("cursor") or None,
            limit=limit,
        )


def contains_text(columns: Sequence[Any], text: str) -> Any:
    """Any of ``columns`` contains ``text`` literally (% and _ are not wildcards)."""
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return or_(*(column.like(pattern, escape="\\") for column in columns))


def encode_cursor(received_at: dt.datetime, message_id: int) -> str:
    raw = f"{received_at.isoformat()}|{message_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        when, _, ident = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
        received_at = dt.datetime.fromisoformat(when)
        if received_at.tzinfo is None:
            raise ValueError("cursor time without zone")
        return received_at, int(ident)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("invalid cursor") from exc


class MessageStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def list(
        self, query: MessageQuery, sections: Collection[str] | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of summaries; ``sections`` (names) limits it to their addresses."""
        # Summary columns only: a page never loads message bodies.
        stmt = (
            select(
                Message.id,
                Address.address,
                Message.received_at,
                Message.from_name,
                Message.from_address,
                Message.subject,
                Message.status,
                Message.attachment_count,
            )
            .join(Address, Address.id == Message.address_id)
            .where(Message.probe_id.is_(None))
            .order_by(Message.received_at.desc(), Message.id.desc())
            .limit(query.limit + 1)
        )
        with Session(self.engine) as session:
            if query.address:
                address_id = session.scalar(
                    select(Address.id).where(Address.address == normalize_address(query.address))
                )
                if address_id is None:
                    raise BadRequest(f"unknown address: {query.address}")
                stmt = stmt.where(Message.address_id == address_id)
            if sections is not None:
                stmt = stmt.where(Address.section.in_(list(sections)))
            if query.status:
                stmt = stmt.where(Message.status == query.status)
            if query.q:
                # A plain substring match for tooling; the clerk UI's indexed
                # Japanese search replaces this.
                stmt = stmt.where(contains_text([Message.subject, Message.from_name, Message.from_address], query.q))
            if query.cursor:
                received_at, last_id = decode_cursor(query.cursor)
                stmt = stmt.where(
                    or_(
                        Message.received_at < received_at,
                        and_(Message.received_at == received_at, Message.id < last_id),
                    )
                )
            rows = session.execute(stmt).all()
            page = rows[: query.limit]
            next_cursor = None
            if len(rows) > query.limit and page:
                next_cursor = encode_cursor(page[-1].received_at, page[-1].id)
            return [_summary(row) for row in page], next_cursor

    def detail(self, message_id: int, sections: Collection[str] | None = None) -> dict[str, Any]:
        with Session(self.engine) as session:
            message = session.scalar(
                select(Message).options(selectinload(Message.attachments)).where(Message.id == message_id)
            )
            if message is None or (sections is not None and message.address.section not in sections):
                raise NotFound(f"no message {message_id}")
            return _detail(message)

    def raw_ref(self, message_id: int, sections: Collection[str] | None = None) -> tuple[str, int]:
        """(sha256, size) of the original message."""
        with Session(self.engine) as session:
            row = session.execute(
                select(Message.raw_sha256, Message.raw_size, Address.section)
                .join(Address, Address.id == Message.address_id)
                .where(Message.id == message_id)
            ).first()
            if row is None or (sections is not None and row.section not in sections):
                raise NotFound(f"no message {message_id}")
            return row.raw_sha256, int(row.raw_size)

    def attachment(self, attachment_id: int, sections: Collection[str] | None = None) -> Attachment:
        with Session(self.engine) as session:
            row = session.get(Attachment, attachment_id)
            if row is None or (sections is not None and row.message.address.section not in sections):
                raise NotFound(f"no attachment {attachment_id}")
            session.expunge(row)
            return row

    def count(self) -> int:
        """Stored messages, probes excluded."""
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count(Message.id)).where(Message.probe_id.is_(None))) or 0)


def _summary(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "address": row.address,
        "received_at": row.received_at.isoformat(),
        "from": {"name": row.from_name, "address": row.from_address},
        "subject": row.subject,
        "attachment_count": int(row.attachment_count),
        "status": row.status,
    }


def _detail(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "address": message.address.address,
        "section": message.address.section,
        "received_at": message.received_at.isoformat(),
        "envelope": {
            "mail_from": message.mail_from,
            "rcpt_to": message.rcpt_to,
            "client_address": message.client_address,
        },
        "message_id": message.message_id,
        "from": {"name": message.from_name, "address": message.from_address},
        "to": message.to,
        "cc": message.cc,
        "subject": message.subject,
        "date": message.date.isoformat() if message.date else None,
        "text": message.text_body,
        "has_html": message.html_body is not None,
        "raw_size": message.raw_size,
        "raw_sha256": message.raw_sha256,
        "attachments": [_attachment(a, message.attachments) for a in message.attachments],
        "status": message.status,
        "problems": message.problems,
    }


def _attachment(attachment: Attachment, siblings: list[Attachment]) -> dict[str, Any]:
    parent = next((a.id for a in siblings if a.position == attachment.parent_position), None)
    return {
        "id": attachment.id,
        # The name a consumer may use as a file name (the one downloads
        # offer: no folders, no control characters, no reserved names);
        # the decoded name exactly as written is for display only.
        "filename": download_name(attachment.filename, f"attachment-{attachment.id}.bin"),
        "original_filename": attachment.filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "sha256": attachment.sha256,
        # The attachment (forwarded .eml or winmail.dat) this one came from.
        "part_of": parent if attachment.parent_position is not None else None,
    }
