"""Reading stored messages: one in detail, its original and attachments, the
keyset cursor of the list (records/inbox.py lists), and literal matching."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Engine, func, or_, select
from sqlalchemy.orm import Session, selectinload

from ..errors import BadRequest, NotFound
from ..mail.filenames import download_name
from ..models import Address, Attachment, Message, MessageStatus

STATUSES = tuple(status.value for status in MessageStatus)
MAX_PAGE = 200


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

    def detail(self, message_id: int, sections: Collection[int] | None = None) -> dict[str, Any]:
        with Session(self.engine) as session:
            message = session.scalar(
                select(Message).options(selectinload(Message.attachments)).where(Message.id == message_id)
            )
            if message is None or (sections is not None and message.address.section_id not in sections):
                raise NotFound(f"no message {message_id}")
            return _detail(message)

    def raw_ref(self, message_id: int, sections: Collection[int] | None = None) -> tuple[str, int]:
        """(sha256, size) of the original message."""
        with Session(self.engine) as session:
            row = session.execute(
                select(Message.raw_sha256, Message.raw_size, Address.section_id)
                .join(Address, Address.id == Message.address_id)
                .where(Message.id == message_id)
            ).first()
            if row is None or (sections is not None and row.section_id not in sections):
                raise NotFound(f"no message {message_id}")
            return row.raw_sha256, int(row.raw_size)

    def attachment(self, attachment_id: int, sections: Collection[int] | None = None) -> Attachment:
        with Session(self.engine) as session:
            row = session.get(Attachment, attachment_id)
            if row is None or (sections is not None and row.message.address.section_id not in sections):
                raise NotFound(f"no attachment {attachment_id}")
            session.expunge(row)
            return row

    def count(self) -> int:
        """Stored messages, probes excluded."""
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count(Message.id)).where(Message.probe_id.is_(None))) or 0)


def _detail(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "address": message.address.address,
        "section": message.address.section_name,
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
        "attachments": _attachments(message.attachments),
        "status": message.status,
        "problems": message.problems,
    }


def _attachments(attachments: list[Attachment]) -> list[dict[str, Any]]:
    # One map, not a scan per attachment: a mail may carry thousands.
    ids_by_position: dict[int | None, int] = {a.position: a.id for a in attachments}
    return [_attachment(a, ids_by_position.get(a.parent_position)) for a in attachments]


def _attachment(attachment: Attachment, parent: int | None) -> dict[str, Any]:
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
        "part_of": parent,
    }
