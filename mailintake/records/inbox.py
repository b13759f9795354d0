"""The clerks' view of stored mail (受信一覧 and メール詳細), limited to the
addresses of the user's sections."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, Select, and_, exists, func, literal, or_, select
from sqlalchemy.orm import Session, selectinload

from .. import jpdates
from ..errors import BadRequest, NotFound
from ..mail.addresses import normalize_address
from ..models import (
    Address,
    Attachment,
    Message,
    MessageRead,
    MessageStatus,
    Registration,
    RegistrationStatus,
    Section,
)
from ..people.accounts import UserInfo
from ..people.visibility import Scope, visible_addresses, visible_message
from . import search
from .listing import (  # noqa: F401 - the listing's shapes, imported from here by the web edge
    COUNT_CAP,
    PAGE_SIZES,
    STATUS_LABELS,
    AddressChoice,
    InboxFilter,
    InboxPage,
    InboxRow,
    StatusCounts,
)
from .messages import decode_cursor, encode_cursor

# A search on PostgreSQL looks at the newest week of mail first, and doubles
# the span until the page (or the capped count) is full or all mail is seen.
FIRST_WINDOW = dt.timedelta(days=7)
MAX_GROWTH = 16.0


class Inbox:
    def __init__(self, engine: Engine, ordered_search: bool = True) -> None:
        self.engine = engine
        # False: searches always take the GIN path (a test compares the two).
        self.ordered_search = ordered_search

    def addresses(self, user: UserInfo) -> list[AddressChoice]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(Address.id, Address.address, Address.label, func.coalesce(Section.name, ""))
                .outerjoin(Section, Section.id == Address.section_id)
                .where(Address.id.in_(visible_addresses(user)))
                .order_by(Section.name, Address.address)
            ).all()
            return [AddressChoice(*row) for row in rows]

    def page(self, who: UserInfo | Scope, wanted: InboxFilter) -> InboxPage:
        """One page of the list: the one listing of the clerks' pages (a
        person: their sections and unread marks) and the API (a token's scope)."""
        scope = who if isinstance(who, Scope) else Scope.of(who)
        with Session(self.engine) as session:
            address_ids = self._address_ids(session, scope, wanted)
            listed = self._listed(session, _summaries(scope), scope, address_ids, wanted, wanted.limit + 1)
            return _page_of(session, listed, wanted.limit)

    def page_with_counts(
        self, who: UserInfo | Scope, wanted: InboxFilter, cap: int = COUNT_CAP
    ) -> tuple[InboxPage, StatusCounts]:
        """The list page and the counts beside it. A search's first page,
        newest first, is taken from the counts' own search (its newest
        ``cap`` + 1 matches of every status) whenever those hold the page:
        the words are looked up once, not twice."""
        if wanted.q and not wanted.cursor and not wanted.oldest_first:
            scope = who if isinstance(who, Scope) else Scope.of(who)
            any_status = dataclasses.replace(wanted, status=None)
            with Session(self.engine) as session:
                address_ids = self._address_ids(session, scope, wanted)
                newest = self._listed(session, _summaries(scope), scope, address_ids, any_status, cap + 1)
                counts = _search_counts(Counter(str(row.status) for row in newest), cap)
                chosen = [row for row in newest if wanted.status is None or row.status == wanted.status]
                # Past the cap, rows of this status may lie beyond what was read.
                if len(chosen) > wanted.limit or len(newest) <= cap:
                    return _page_of(session, chosen[: wanted.limit + 1], wanted.limit), counts
                return self.page(who, wanted), counts
        return self.page(who, wanted), self.counts(who, wanted, cap)

    def counts(self, who: UserInfo | Scope, wanted: InboxFilter, cap: int = COUNT_CAP) -> StatusCounts:
        """How many mails each status holds under the other filters. Without
        a search, one capped index count per status; with one, the search
        runs once and its matches (at most ``cap``) are grouped by status:
        a common word in a million mails is shown as 「1,000件以上」, not
        waited for, and never searched three times."""
        scope = who if isinstance(who, Scope) else Scope.of(who)
        any_status = dataclasses.replace(wanted, status=None, cursor=None)
        with Session(self.engine) as session:
            address_ids = self._address_ids(session, scope, wanted)

            def matching(status: str | None, limit: int) -> Any:
                stmt = _summaries(scope).with_only_columns(Message.status).limit(limit)
                stmt = _in_addresses(stmt, scope, address_ids, wanted)
                return _filtered(session, stmt, dataclasses.replace(any_status, status=status)).subquery()

            if wanted.q:
                statuses = _summaries(scope).with_only_columns(Message.status)
                newest_first = dataclasses.replace(any_status, oldest_first=False)
                newest = self._listed(session, statuses, scope, address_ids, newest_first, cap + 1)
                return _search_counts(Counter(str(status) for (status,) in newest), cap)
            counts = {
                status: int(session.scalar(select(func.count()).select_from(matching(status, cap + 1))) or 0)
                for status in STATUS_LABELS
            }
            return StatusCounts(counts, frozenset(status for status, n in counts.items() if n > cap))

    def count_of(self, who: UserInfo | Scope, wanted: InboxFilter, cap: int = COUNT_CAP) -> int:
        """How many mails the filter (without search words) holds, counted
        up to ``cap`` + 1: one capped index count, for the quick filters."""
        scope = who if isinstance(who, Scope) else Scope.of(who)
        plain = dataclasses.replace(wanted, q="", cursor=None)
        with Session(self.engine) as session:
            address_ids = self._address_ids(session, scope, plain)
            stmt = _summaries(scope).with_only_columns(Message.status).limit(cap + 1)
            found = _filtered(session, _in_addresses(stmt, scope, address_ids, plain), plain).subquery()
            return int(session.scalar(select(func.count()).select_from(found)) or 0)

    def _listed(
        self,
        session: Session,
        stmt: Select[*tuple[Any, ...]],
        scope: Scope,
        address_ids: list[int],
        wanted: InboxFilter,
        needed: int,
    ) -> list[Any]:
        """The first ``needed`` rows of ``stmt`` under ``wanted``, in its
        order. A search newest first (SQLite; PostgreSQL with its time
        index) looks at the matches of the newest week (before the cursor),
        then wider spans (as far as the rows found so far suggest, at least
        twice as wide), until ``needed`` rows pass the other filters or the
        span reaches the oldest mail. Rows inside a span are all there, so
        the page is what searching everything would give. Anything else is
        one query."""
        conn = session.connection()
        # Decided before any query: PostgreSQL without the index pays
        # nothing for the spans.
        in_spans = (
            wanted.q
            and not wanted.oldest_first
            and self.ordered_search
            and search.query_runs(wanted.q)
            and search.time_index(conn)
        )
        if not in_spans:
            query = _in_addresses(stmt.limit(needed), scope, address_ids, wanted)
            return list(session.execute(_ordered_after(_filtered(session, query, wanted), wanted)).all())
        top = decode_cursor(wanted.cursor)[0] if wanted.cursor else None
        if wanted.date_to:
            end = _jst_midnight(wanted.date_to + dt.timedelta(days=1)) - dt.timedelta(microseconds=1)
            top = min(top, end) if top else end
        oldest = session.scalar(select(func.min(Message.received_at)))
        floor = _jst_midnight(wanted.date_from) if wanted.date_from else oldest
        if floor is None:
            return []
        newest = top or session.scalar(select(func.max(Message.received_at))) or floor
        others = dataclasses.replace(wanted, q="")
        fresh = search.fresh_condition(conn, wanted.q)
        # A clerk (or one address) searches only their addresses inside the
        # index; everyone's mail needs no address condition there.
        restricted = address_ids if scope.section_ids is not None or wanted.address_id is not None else None
        span = FIRST_WINDOW
        while True:
            since = max(newest - span, floor)
            found = search.matches_since(conn.dialect.name, wanted.q, since, top, restricted)
            query = _in_addresses(stmt.limit(needed), scope, address_ids, wanted)
            query = _filtered(session, query, others).where(
                or_(Message.id.in_(select(found.c.message_id)), fresh), Message.received_at >= since
            )
            rows = list(session.execute(_ordered_after(query, wanted)).all())
            if len(rows) >= needed or since <= floor:
                return rows
            # Grow as far as the rows found so far suggest (with room), at
            # least double, so that a rarer word takes a few steps, not many.
            span *= min(MAX_GROWTH, max(2.0, 1.5 * needed / max(len(rows), 1)))

    def next_new(self, user: UserInfo, after: Message | None = None) -> InboxRow | None:
        """The 未処理 mail that comes next in the list (newest first): the
        next one older than ``after``, else the newest."""
        cursor = encode_cursor(after.received_at, after.id) if after is not None else None
        rows = self.page(user, InboxFilter(status=MessageStatus.NEW, cursor=cursor, limit=1)).rows
        if not rows and after is not None:
            rows = self.page(user, InboxFilter(status=MessageStatus.NEW, limit=1)).rows
        return rows[0] if rows else None

    def _address_ids(self, session: Session, scope: Scope, wanted: InboxFilter) -> list[int]:
        address_ids: list[int] = list(session.scalars(visible_addresses(scope)))
        if wanted.address is not None:
            found = session.scalar(select(Address.id).where(Address.address == normalize_address(wanted.address)))
            if found is None or found not in address_ids:
                raise BadRequest(f"unknown address: {wanted.address}")
            return [found]
        if wanted.address_id is not None:
            if wanted.address_id not in address_ids:
                raise NotFound(f"no address {wanted.address_id}")
            return [wanted.address_id]
        return address_ids

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
    registered = [row.id for row in rows if row.status == MessageStatus.REGISTERED]
    if not registered:
        return rows
    dues = dict(
        session.execute(
            select(Registration.message_id, Registration.reply_due).where(
                Registration.message_id.in_(registered),
                Registration.status == RegistrationStatus.ACTIVE,
                Registration.reply_due.is_not(None),
            )
        ).all()
    )
    return [dataclasses.replace(row, reply_due=dues.get(row.id)) for row in rows]


def _page_of(session: Session, listed: list[Any], limit: int) -> InboxPage:
    """A page of ``limit`` rows out of ``limit`` + 1 read (the extra one
    says there is a next page)."""
    rows = [InboxRow(*row) for row in listed]  # type: ignore[call-arg]
    page = _with_reply_dues(session, rows[:limit])
    next_cursor = encode_cursor(page[-1].received_at, page[-1].id) if len(rows) > limit else None
    return InboxPage(page, next_cursor)


def _search_counts(found: Mapping[str, int], cap: int) -> StatusCounts:
    """The counts of a search's matches per status (at most ``cap`` + 1 read)."""
    counts = {status: found.get(status, 0) for status in STATUS_LABELS}
    # Past the cap every count is only a lower bound.
    return StatusCounts(counts, frozenset(counts) if sum(counts.values()) > cap else frozenset())


def _summaries(scope: Scope) -> Select[*tuple[Any, ...]]:
    """The list's columns only: a page never loads message bodies."""
    if scope.user_id is not None:
        unread = ~exists().where(MessageRead.user_id == scope.user_id, MessageRead.message_id == Message.id)
    else:
        unread = literal(False)
    return (
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
    )


def _in_addresses(
    stmt: Select[*tuple[Any, ...]], scope: Scope, address_ids: list[int], wanted: InboxFilter
) -> Select[*tuple[Any, ...]]:
    # One address (the usual clerk) compares with =, which lets the
    # (address, status, received) index deliver rows in order.
    if len(address_ids) == 1:
        return stmt.where(Message.address_id == address_ids[0])
    if scope.section_ids is not None or wanted.address_id is not None:
        return stmt.where(Message.address_id.in_(address_ids))
    return stmt


def _filtered(session: Session, stmt: Select[*tuple[Any, ...]], wanted: InboxFilter) -> Select[*tuple[Any, ...]]:
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
    return stmt


def _ordered_after(stmt: Select[*tuple[Any, ...]], wanted: InboxFilter) -> Select[*tuple[Any, ...]]:
    """Newest (or oldest) first, after the cursor's row (keyset paging)."""
    if wanted.oldest_first:
        stmt = stmt.order_by(Message.received_at.asc(), Message.id.asc())
    else:
        stmt = stmt.order_by(Message.received_at.desc(), Message.id.desc())
    if not wanted.cursor:
        return stmt
    received_at, last_id = decode_cursor(wanted.cursor)
    if wanted.oldest_first:
        return stmt.where(
            or_(Message.received_at > received_at, and_(Message.received_at == received_at, Message.id > last_id))
        )
    return stmt.where(
        or_(Message.received_at < received_at, and_(Message.received_at == received_at, Message.id < last_id))
    )
