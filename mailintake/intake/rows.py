"""A parsed mail as database rows: text the databases accept (no NUL, no
lone surrogate), values in the columns' shapes."""

from __future__ import annotations

from ..mail.parsed import ParsedAttachment, ParsedMessage
from ..models import MessageStatus
from .spool import SpooledMessage


def clean_text(value: str) -> str:
    """Text every database accepts: no NUL, no lone surrogates."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        value = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in value)
    return value


def _clean(value: object) -> object:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def message_values(
    spooled: SpooledMessage, parsed: ParsedMessage, address_id: int, rcpt: str, probe_id: str | None = None
) -> dict[str, object]:
    env = spooled.envelope
    values = {
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
        "status": MessageStatus.NEW,
        "probe_id": probe_id,
        "attachment_count": len(parsed.attachments),
        "attachment_bytes": sum(a.size for a in parsed.attachments),
    }
    return {key: _clean(value) for key, value in values.items()}


def attachment_values(message_id: int, attachment: ParsedAttachment) -> dict[str, object]:
    values = {
        "message_id": message_id,
        "position": attachment.position,
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "sha256": attachment.sha256,
        "content_id": attachment.content_id,
        "disposition": attachment.disposition,
        "parent_position": attachment.parent,
    }
    return {key: _clean(value) for key, value in values.items()}
