"""Who may see which mail: a user sees the mail of the designated addresses
of their sections; a system administrator sees all. Anything else is
answered as if it did not exist (404), so ids reveal nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from .accounts import UserInfo
from .errors import NotFound
from .models import Address, Message


def visible_addresses(user: UserInfo) -> Select[Any]:
    stmt = select(Address.id)
    if not user.is_system_admin:
        stmt = stmt.where(Address.section.in_(user.section_names))
    return stmt


def visible_message(session: Session, user: UserInfo, message_id: int) -> Message:
    message = session.get(Message, message_id)
    if (
        message is None
        or message.probe_id is not None
        or (not user.is_system_admin and message.address.section not in user.section_names)
    ):
        raise NotFound(f"no message {message_id}")
    return message
