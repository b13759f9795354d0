"""受信一覧: filters by status, Japan-time date range and address; order;
keyset pages that neither repeat nor skip; the unread mark; probes hidden."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from mailintake.errors import NotFound
from mailintake.jpdates import JST
from mailintake.models import Message
from mailintake.people.accounts import UserInfo
from mailintake.records.inbox import InboxFilter
from mailintake.services import Services

from .factories import designate, make_user, stored_message

SOUMU = "soumu@city.example.jp"
SOUMU2 = "soumu-2@city.example.jp"
ZAISEI = "zaisei@city.example.jp"


@pytest.fixture
def clerk(services: Services) -> UserInfo:
    for address, section in ((SOUMU, "総務課"), (SOUMU2, "総務課"), (ZAISEI, "財政課")):
        designate(services, address, section)
    return make_user(services, "sato", password=None, sections=["総務課"])


def ids(services: Services, user: UserInfo, **wanted: object) -> list[int]:
    return [row.id for row in services.inbox.page(user, InboxFilter(**wanted)).rows]  # type: ignore[arg-type]


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=JST)


def test_dates_filter_by_japan_time_days(services: Services, clerk: UserInfo) -> None:
    # 00:30 on the 21st in Japan is still the 20th in UTC.
    late_20 = stored_message(services, SOUMU, received_at=at(20, 23, 59))
    early_21 = stored_message(services, SOUMU, received_at=at(21, 0, 30))
    early_22 = stored_message(services, SOUMU, received_at=at(22, 0, 0))
    day = dt.date(2026, 11, 21)
    assert ids(services, clerk, status=None, date_from=day, date_to=day) == [early_21]
    assert ids(services, clerk, status=None, date_to=day) == [early_21, late_20]
    assert ids(services, clerk, status=None, date_from=day) == [early_22, early_21]


def test_status_address_and_section_filters(services: Services, clerk: UserInfo) -> None:
    new = stored_message(services, SOUMU, received_at=at(20, 9))
    dismissed = stored_message(services, SOUMU, received_at=at(20, 10))
    other_address = stored_message(services, SOUMU2, received_at=at(20, 11))
    stored_message(services, ZAISEI, received_at=at(20, 12))  # another section: never listed
    services.registry.dismiss(clerk, dismissed, "広告")
    assert ids(services, clerk) == [other_address, new]  # default: 未処理 only
    assert ids(services, clerk, status="dismissed") == [dismissed]
    assert ids(services, clerk, status=None) == [other_address, dismissed, new]
    soumu_id = next(a.id for a in services.inbox.addresses(clerk) if a.address == SOUMU)
    assert ids(services, clerk, status=None, address_id=soumu_id) == [dismissed, new]
    admin = make_user(services, "kanri", password=None, role="system_admin")
    zaisei_id = next(a.id for a in services.inbox.addresses(admin) if a.address == ZAISEI)
    with pytest.raises(NotFound):
        ids(services, clerk, address_id=zaisei_id)


def test_pages_follow_each_other_without_repeats_or_gaps_in_both_orders(services: Services, clerk: UserInfo) -> None:
    same_time = at(20, 12)
    made = [stored_message(services, SOUMU, received_at=same_time if i % 3 == 0 else at(20, 9, i)) for i in range(23)]
    for oldest_first in (False, True):
        seen: list[int] = []
        cursor = None
        while True:
            page = services.inbox.page(
                clerk, InboxFilter(status=None, oldest_first=oldest_first, cursor=cursor, limit=5)
            )
            seen += [row.id for row in page.rows]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert sorted(seen) == sorted(made) and len(seen) == len(made)
        with Session(services.engine) as session:
            order = [
                (received, message_id)
                for message_id, received in session.query(Message.id, Message.received_at).filter(Message.id.in_(seen))
            ]
        expected = [m for _, m in sorted(order, reverse=not oldest_first)]
        assert seen == expected


def test_the_unread_mark_is_per_user_and_goes_when_the_mail_is_opened(services: Services, clerk: UserInfo) -> None:
    message = stored_message(services, SOUMU)
    colleague = make_user(services, "suzuki", password=None, sections=["総務課"])
    assert [row.unread for row in services.inbox.page(clerk, InboxFilter()).rows] == [True]
    services.inbox.message(clerk, message)
    assert [row.unread for row in services.inbox.page(clerk, InboxFilter()).rows] == [False]
    assert [row.unread for row in services.inbox.page(colleague, InboxFilter()).rows] == [True]


def test_probes_are_never_listed(services: Services, clerk: UserInfo) -> None:
    kept = stored_message(services, SOUMU)
    probe = stored_message(services, SOUMU)
    with Session(services.engine) as session, session.begin():
        session.execute(update(Message).where(Message.id == probe).values(probe_id="p-1"))
    assert ids(services, clerk, status=None) == [kept]
    with pytest.raises(NotFound):
        services.inbox.message(clerk, probe)


def test_a_status_count_reads_the_index_alone(services: Services, clerk: UserInfo) -> None:
    """The counts beside the list (up to 1,000 per status) never visit the
    table: at a million mails that is a thousand row reads per status."""
    for _ in range(3):
        stored_message(services, SOUMU)
    counted: list[tuple[str, object]] = []

    def remember(conn: object, cursor: object, statement: str, parameters: object, *rest: object) -> None:
        if statement.lstrip().upper().startswith("SELECT COUNT(*)"):
            counted.append((statement, parameters))

    event.listen(services.engine, "before_cursor_execute", remember)
    try:
        counts = services.inbox.counts(clerk, InboxFilter())
    finally:
        event.remove(services.engine, "before_cursor_execute", remember)
    assert counts.of("new") == 3
    assert len(counted) == 3, "one count per status"
    with services.engine.connect() as conn:
        for statement, parameters in counted:
            if conn.dialect.name == "sqlite":
                plan = str(conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all())  # type: ignore[arg-type]
                assert "COVERING INDEX ix_messages_address_status_received" in plan, plan
            else:
                # Only an index that holds every column read may be chosen.
                for scan in ("seqscan", "bitmapscan", "indexscan"):
                    conn.exec_driver_sql(f"SET enable_{scan} = off")
                plan = str(conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all())  # type: ignore[arg-type]
                assert "Index Only Scan using ix_messages_address_status_received" in plan, plan
