"""The record of a 収受文書 as the document system reads it: one shape for
the feed, the single-registration endpoint and a package's metadata.json
(its JSON Schema is ``registration-package.schema.json`` beside this
module)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..errors import NotFound
from ..mail.filenames import download_name
from ..models import Attachment, Classification, Message, Registration, User


def registration_record(
    engine: Engine, registration_id: int, section_ids: Collection[int] | None = None
) -> dict[str, Any]:
    """One record; ``section_ids`` limits what may be read."""
    with Session(engine) as session:
        record = registration_records(session, [registration_id]).get(registration_id)
    if record is None or (section_ids is not None and record["section"]["id"] not in section_ids):
        raise NotFound(f"no registration {registration_id}")
    return record


def registration_records(session: Session, registration_ids: Collection[int]) -> dict[int, dict[str, Any]]:
    """Records by registration id, in a fixed number of queries however
    many are asked for."""
    if not registration_ids:
        return {}
    ids = sorted(registration_ids)
    registrations = list(session.scalars(select(Registration).where(Registration.id.in_(ids))))
    users = _by_id(session, User, {r.registered_by for r in registrations})
    messages = {
        row.id: row
        for row in session.execute(
            select(Message.id, Message.message_id, Message.from_address).where(
                Message.id.in_({r.message_id for r in registrations})
            )
        )
    }
    attachments = _by_id(session, Attachment, {a for r in registrations for a in r.attachment_ids})
    classifications = _by_id(session, Classification, {r.classification_id for r in registrations} - {None})
    return {
        r.id: _record(r, users.get(r.registered_by), messages[r.message_id], attachments, classifications)
        for r in registrations
    }


def _by_id(session: Session, model: Any, ids: set[Any]) -> dict[int, Any]:
    if not ids:
        return {}
    return {row.id: row for row in session.scalars(select(model).where(model.id.in_(ids)))}


def _record(
    registration: Registration,
    registered_by: User | None,
    message: Any,
    attachments: dict[int, Attachment],
    classifications: dict[int, Classification],
) -> dict[str, Any]:
    section = registration.section
    classification = classifications.get(registration.classification_id or 0)
    return {
        "id": registration.id,
        "status": registration.status,
        "receipt_number": {
            "formatted": registration.receipt_number,
            "symbol": registration.symbol,
            "fiscal_year": registration.fiscal_year,
            "number": registration.number,
        },
        "received_on": registration.received_on.isoformat(),
        "subject": registration.subject,
        "sender": {
            "name": registration.sender,
            "organisation": registration.sender_org,
            "address": message.from_address,
        },
        "sender_reference": registration.sender_reference,
        "reply_due": registration.reply_due.isoformat() if registration.reply_due else None,
        "reply_required": registration.reply_required,
        "document_date": registration.document_date.isoformat() if registration.document_date else None,
        "receipt_method": registration.receipt_method,
        "classification": (
            {
                "id": registration.classification_id,
                "code": classification.code if classification is not None else "",
                "path": registration.classification_path,
            }
            if registration.classification_id is not None
            else None
        ),
        "retention": registration.retention,
        "section": {"id": section.id, "code": section.code or "", "name": section.name},
        "remarks": registration.remarks,
        "registered_by": {
            "username": registered_by.username if registered_by else "",
            "name": (registered_by.display_name or registered_by.username) if registered_by else "",
        },
        "registered_at": registration.registered_at.isoformat(),
        "cancelled_at": registration.cancelled_at.isoformat() if registration.cancelled_at else None,
        "cancel_reason": registration.cancel_reason,
        "source": {"message_id": registration.message_id, "message_id_header": message.message_id},
        "attachments": [_attachment(attachments[a]) for a in registration.attachment_ids if a in attachments],
    }


def _attachment(attachment: Attachment) -> dict[str, Any]:
    return {
        "id": attachment.id,
        "filename": download_name(attachment.filename, f"attachment-{attachment.id}.bin"),
        "content_type": attachment.content_type,
        "size": attachment.size,
        "sha256": attachment.sha256,
    }
