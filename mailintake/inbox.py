"""The clerks' view of stored mail (受信一覧 and メール詳細), limited to the
addresses of the user's sections."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, exists, or_, select
from sqlalchemy.orm import Session, selectinload

from . import jpdates, search
from .accounts import UserInfo
from .errors import BadRequest, NotFound
from .messages import decode_cursor, encode_cursor
from .models import Address, Attachment, Message, MessageRead, Registration
from .visibility import visible_addresses, visible_message

STATUS_LABELS = {"new": "未処理", "registered": "収受済", "dismissed": "対象外"}
PAGE_SIZES = (25, 50, 100)


@dataclass(frozen=True)
class InboxFilter:
    status: str | None = "new"
    address_id: int | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    q: str = ""
    oldest_first: bool = False
    cursor: str | None = None
    limit: int = 50

    @classmethod
    def from_params(cls, params: Any) -> InboxFilter:
        status = params.get("status", "new")
        if status == "all":
            status = None
        elif status not in STATUS_LABELS:
            raise BadRequest("状態の指定が正しくありません")
        limit = _int(params.get("limit") or "50", "件数")
        if limit not in PAGE_SIZES:
            raise BadRequest(f"表示件数は {', '.join(map(str, PAGE_SIZES))} から選んでください")
        q = (params.get("q") or "").strip()
        if len(q) > 200:
            raise BadRequest("検索語は200文字以内にしてください")
        return cls(
            status=status,
            address_id=_int(params["address"], "アドレス") if params.get("address") else None,
            date_from=_date(params.get("from")),
            date_to=_date(params.get("to")),
            q=q,
            oldest_first=params.get("sort") == "oldest",
            cursor=params.get("cursor") or None,
            limit=limit,
        )


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise BadRequest(f"{what}の指定が正しくありません") from exc


def _date(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise BadRequest("日付は YYYY-MM-DD で指定してください") from exc


@dataclass(frozen=True)
class InboxRow:
    id: int
    address: str
    received_at: dt.datetime
    from_name: str
    from_address: str
    subject: str
    attachment_count: int
    attachment_bytes: int
    status: str
    unread: bool
    # 回答期限 of the mail's registration, for the due badge.
    reply_due: dt.date | None = None

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


@dataclass
class InboxPage:
    rows: list[InboxRow]
    next_cursor: str | None


@dataclass(frozen=True)
class AddressChoice:
    id: int
    address: str
    label: str
    section: str


class Inbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def addresses(self, user: UserInfo) -> list[AddressChoice]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(Address.id, Address.address, Address.label, Address.section)
                .where(Address.id.in_(visible_addresses(user)))
                .order_by(Address.section, Address.address)
            ).all()
            return [AddressChoice(*row) for row in rows]

    def page(self, user: UserInfo, wanted: InboxFilter) -> InboxPage:
        with Session(self.engine) as session:
            address_ids: list[int] = list(session.scalars(visible_addresses(user)))
            if wanted.address_id is not None:
                if wanted.address_id not in address_ids:
                    raise NotFound(f"no address {wanted.address_id}")
                address_ids = [wanted.address_id]
            unread = ~exists().where(MessageRead.user_id == user.id, MessageRead.message_id == Message.id)
            stmt = (
                select(
                    Message.id,
                    Address.address,
                    Message.received_at,
                    Message.from_name,
                    Message.from_address,
                    Message.subject,
                    Message.attachment_count,
                    Message.attachment_bytes,
                    Message.status,
                    unread.label("unread"),
                )
                .join(Address, Address.id == Message.address_id)
                .where(Message.probe_id.is_(None))
                .limit(wanted.limit + 1)
            )
            # One address (the usual clerk) compares with =, which lets the
            # (address, status, received) index deliver rows in order.
            if len(address_ids) == 1:
                stmt = stmt.where(Message.address_id == address_ids[0])
            elif not user.is_system_admin or wanted.address_id is not None:
                stmt = stmt.where(Message.address_id.in_(address_ids))
            if wanted.status:
                stmt = stmt.where(Message.status == wanted.status)
            if wanted.date_from:
                stmt = stmt.where(Message.received_at >= _jst_midnight(wanted.date_from))
            if wanted.date_to:
                stmt = stmt.where(Message.received_at < _jst_midnight(wanted.date_to + dt.timedelta(days=1)))
            if wanted.q:
                condition = search.condition(session.connection(), wanted.q)
                if condition is not None:
                    stmt = stmt.where(condition)
            if wanted.oldest_first:
                stmt = stmt.order_by(Message.received_at.asc(), Message.id.asc())
            else:
                stmt = stmt.order_by(Message.received_at.desc(), Message.id.desc())
            if wanted.cursor:
                received_at, last_id = decode_cursor(wanted.cursor)
                if wanted.oldest_first:
                    stmt = stmt.where(
                        or_(
                            Message.received_at > received_at,
                            and_(Message.received_at == received_at, Message.id > last_id),
                        )
                    )
                else:
                    stmt = stmt.where(
                        or_(
                            Message.received_at < received_at,
                            and_(Message.received_at == received_at, Message.id < last_id),
                        )
                    )
            rows = [InboxRow(*row) for row in session.execute(stmt).all()]  # type: ignore[call-arg]
            page = _with_reply_dues(session, rows[: wanted.limit])
        next_cursor = encode_cursor(page[-1].received_at, page[-1].id) if len(rows) > wanted.limit else None
        return InboxPage(page, next_cursor)

    def message(self, user: UserInfo, message_id: int, mark_read: bool = True) -> Message:
        """The message with its attachments and address, detached."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            message = visible_message(session, user, message_id)
            session.refresh(message, attribute_names=["attachments"])
            if mark_read and session.get(MessageRead, (user.id, message_id)) is None:
                session.add(MessageRead(user_id=user.id, message_id=message_id))
            _ = message.address
        return message

    def messages(self, user: UserInfo, message_ids: list[int]) -> list[Message]:
        """Several visible messages with their attachments and addresses, detached."""
        with Session(self.engine, expire_on_commit=False) as session:
            out = [visible_message(session, user, message_id) for message_id in message_ids]
            # One query fills in the attachments of all of them.
            session.scalars(
                select(Message).options(selectinload(Message.attachments)).where(Message.id.in_(message_ids))
            ).all()
            return out

    def attachment(self, user: UserInfo, message_id: int, attachment_id: int) -> Attachment:
        """The attachment, detached, with its message and address loaded."""
        with Session(self.engine) as session:
            message = visible_message(session, user, message_id)
            row = session.get(Attachment, attachment_id)
            if row is None or row.message_id != message_id:
                raise NotFound(f"no attachment {attachment_id}")
            row.message = message
            return row


def _jst_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=jpdates.JST)


def _with_reply_dues(session: Session, rows: list[InboxRow]) -> list[InboxRow]:
    registered = [row.id for row in rows if row.status == "registered"]
    if not registered:
        return rows
    dues = dict(
        session.execute(
            select(Registration.message_id, Registration.reply_due).where(
                Registration.message_id.in_(registered),
                Registration.status == "active",
                Registration.reply_due.is_not(None),
            )
        ).all()
    )
    return [dataclasses.replace(row, reply_due=dues.get(row.id)) for row in rows]
