"""Who may see which mail: a user sees the mail of the designated addresses
of their sections; a system administrator sees all; an API token sees its
sections, or all. Anything else is answered as if it did not exist (404),
so ids reveal nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from ..errors import NotFound
from ..models import Address, Message
from .accounts import UserInfo


@dataclass(frozen=True)
class Scope:
    """Whose view a listing is: the sections it may see (None: all) and,
    for a person, whose unread marks to show."""

    section_ids: frozenset[int] | None
    user_id: int | None = None

    @classmethod
    def of(cls, user: UserInfo) -> Scope:
        return cls(None if user.is_system_admin else frozenset(s.id for s in user.sections), user.id)


def visible_addresses(who: UserInfo | Scope) -> Select[Any]:
    scope = who if isinstance(who, Scope) else Scope.of(who)
    stmt = select(Address.id)
    if scope.section_ids is not None:
        stmt = stmt.where(Address.section_id.in_(scope.section_ids))
    return stmt


def visible_message(session: Session, user: UserInfo, message_id: int) -> Message:
    message = session.get(Message, message_id)
    if (
        message is None
        or message.probe_id is not None
        or (not user.is_system_admin and message.address.section_id not in {s.id for s in user.sections})
    ):
        raise NotFound(f"no message {message_id}")
    return message
