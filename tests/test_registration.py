"""収受登録: gapless receipt numbers per 文書記号 and fiscal year, on SQLite
and PostgreSQL; dismissal, cancellation and the 収受簿 CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailintake.errors import BadRequest, Conflict, NotFound
from mailintake.jpdates import JST
from mailintake.people.accounts import UserInfo
from mailintake.records.book import book_csv
from mailintake.records.registry import RegistrationRequest, Registry
from mailintake.services import Services

from .factories import designate, make_user, stored_message

SOUMU = "soumu@city.example.jp"
ZAISEI = "zaisei@city.example.jp"


@pytest.fixture
def people(services: Services) -> dict[str, UserInfo]:
    designate(services, SOUMU, "総務課")
    designate(services, ZAISEI, "財政課")
    return {
        "clerk": make_user(services, "sato", password=None, sections=["総務課"]),
        "chief": make_user(services, "suzuki", password=None, role="section_admin", sections=["総務課"]),
        "other": make_user(services, "tanaka", password=None, sections=["財政課"]),
    }


def request_for(message_id: int, day: dt.date = dt.date(2026, 11, 20), **extra: object) -> RegistrationRequest:
    values: dict[str, object] = {
        "message_id": message_id,
        "subject": "会議資料の送付について",
        "sender": "山田 太郎",
        "received_on": day,
        "retention": "5年",
    }
    values.update(extra)
    return RegistrationRequest(**values)  # type: ignore[arg-type]


def numbers(registrations: list) -> list[int]:
    return [r.number for r in registrations]


class TestReceiptNumbers:
    def test_two_mails_registered_at_once_get_consecutive_numbers_in_the_sections_format(
        self, services: Services, people: dict[str, UserInfo]
    ) -> None:
        ids = [stored_message(services, SOUMU) for _ in range(2)]
        done = services.registry.register(people["clerk"], [request_for(i) for i in ids])
        assert [r.receipt_number for r in done] == ["総務第1号", "総務第2号"]
        assert {r.section for r in done} == {"総務課"}
        assert all(r.fiscal_year == 2026 for r in done)

    def test_fifty_parallel_registrations_get_fifty_distinct_consecutive_numbers(
        self, services: Services, people: dict[str, UserInfo]
    ) -> None:
        ids = [stored_message(services, SOUMU) for _ in range(50)]
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(lambda i: services.registry.register(people["clerk"], [request_for(i)])[0], ids))
        assert sorted(numbers(results)) == list(range(1, 51))
        assert len({r.message_id for r in results}) == 50

    def test_numbering_restarts_at_one_on_april_first_japan_time(
        self, services: Services, people: dict[str, UserInfo]
    ) -> None:
        last_of_year = dt.datetime(2026, 3, 31, 23, 59, 59, tzinfo=JST)
        first_of_year = dt.datetime(2026, 4, 1, 0, 0, 0, tzinfo=JST)
        before = [stored_message(services, SOUMU, received_at=last_of_year) for _ in range(3)]
        after = stored_message(services, SOUMU, received_at=first_of_year)
        services.registry.register(people["clerk"], [request_for(i, last_of_year.date()) for i in before])
        # 2026-03-31 15:00 UTC is already April 1st in Japan.
        assert first_of_year.astimezone(dt.UTC).date() == dt.date(2026, 3, 31)
        new_year = services.registry.register(people["clerk"], [request_for(after, first_of_year.date())])[0]
        assert (new_year.fiscal_year, new_year.number, new_year.receipt_number) == (2026, 1, "総務第1号")
        late = stored_message(services, SOUMU, received_at=last_of_year)
        old_year = services.registry.register(people["clerk"], [request_for(late, last_of_year.date())])[0]
        assert (old_year.fiscal_year, old_year.number) == (2025, 4)

    def test_a_failed_batch_uses_no_number(self, services: Services, people: dict[str, UserInfo]) -> None:
        good, other = stored_message(services, SOUMU), stored_message(services, SOUMU)
        with pytest.raises(BadRequest):
            services.registry.register(people["clerk"], [request_for(good), request_for(other, classification_id=999)])
        done = services.registry.register(people["clerk"], [request_for(good), request_for(other)])
        assert numbers(done) == [1, 2]

    def test_the_classification_path_is_kept_as_it_read_at_registration(
        self, services: Services, people: dict[str, UserInfo]
    ) -> None:
        top = services.registry.add_classification("総務")
        child = services.registry.add_classification("契約", parent_id=top)
        assert [(c.id, c.path) for c in services.registry.classification_choices()] == [
            (top, "総務"),
            (child, "総務 > 契約"),
        ]
        with pytest.raises(BadRequest):
            services.registry.add_classification("契約", parent_id=top)
        done = services.registry.register(
            people["clerk"], [request_for(stored_message(services, SOUMU), classification_id=child)]
        )
        assert done[0].classification == "総務 > 契約"

    def test_a_mail_cannot_be_registered_twice(self, services: Services, people: dict[str, UserInfo]) -> None:
        message = stored_message(services, SOUMU)
        services.registry.register(people["clerk"], [request_for(message)])
        with pytest.raises(Conflict):
            services.registry.register(people["clerk"], [request_for(message)])

    def test_the_number_format_is_configurable(self, services: Services, people: dict[str, UserInfo]) -> None:
        registry = Registry(
            services.engine, number_format="{era_year}年度{symbol}収第{number}号", retention_periods=["5年"]
        )
        done = registry.register(people["clerk"], [request_for(stored_message(services, SOUMU))])
        assert done[0].receipt_number == "令和8年度総務収第1号"

    def test_the_section_symbol_is_what_administrators_set(
        self, services: Services, people: dict[str, UserInfo]
    ) -> None:
        section = next(s for s in services.accounts.sections() if s.name == "総務課")
        services.accounts.set_symbol(section.id, "総総")
        done = services.registry.register(people["clerk"], [request_for(stored_message(services, SOUMU))])
        assert done[0].receipt_number == "総総第1号"


class TestDismissAndCancel:
    def test_dismissal_needs_a_reason_and_can_be_undone(self, services: Services, people: dict[str, UserInfo]) -> None:
        message = stored_message(services, SOUMU)
        with pytest.raises(BadRequest):
            services.registry.dismiss(people["clerk"], message, " ")
        services.registry.dismiss(people["clerk"], message, "広告メール")
        with pytest.raises(Conflict):
            services.registry.register(people["clerk"], [request_for(message)])
        services.registry.undismiss(people["clerk"], message)
        assert numbers(services.registry.register(people["clerk"], [request_for(message)])) == [1]

    def test_cancelling_keeps_the_number_and_it_is_never_reused(
        self, services: Services, people: dict[str, UserInfo]
    ) -> None:
        first, second = stored_message(services, SOUMU), stored_message(services, SOUMU)
        registered = services.registry.register(people["clerk"], [request_for(first)])[0]
        with pytest.raises(NotFound):  # clerks do not cancel; their section admin does
            services.registry.cancel(people["clerk"], registered.id, "誤登録")
        cancelled = services.registry.cancel(people["chief"], registered.id, "誤登録")
        assert (cancelled.status, cancelled.receipt_number) == ("cancelled", "総務第1号")
        again = services.registry.register(people["clerk"], [request_for(first), request_for(second)])
        assert numbers(again) == [2, 3]
        book = services.registry.book(people["clerk"], again[0].id and _section_id(services, "総務課"), 2026)
        assert [(r.number, r.status) for r in book] == [(1, "cancelled"), (2, "active"), (3, "active")]

    def test_another_sections_mail_cannot_be_registered_dismissed_or_seen(
        self, services: Services, people: dict[str, UserInfo]
    ) -> None:
        theirs = stored_message(services, ZAISEI)
        with pytest.raises(NotFound):
            services.registry.register(people["clerk"], [request_for(theirs)])
        with pytest.raises(NotFound):
            services.registry.dismiss(people["clerk"], theirs, "対象外")
        with pytest.raises(NotFound):
            services.registry.book(people["clerk"], _section_id(services, "財政課"), 2026)
        # Nothing was left behind by the refused attempts.
        assert numbers(services.registry.register(people["other"], [request_for(theirs)])) == [1]

    def test_every_action_is_in_the_audit_log(self, services: Services, people: dict[str, UserInfo]) -> None:
        message = stored_message(services, SOUMU)
        services.registry.dismiss(people["clerk"], message, "重複")
        services.registry.undismiss(people["clerk"], message)
        registered = services.registry.register(people["clerk"], [request_for(message)])[0]
        services.registry.cancel(people["chief"], registered.id, "誤登録")
        entries = services.audit.entries(people["chief"])
        assert [(e.action, e.username, e.message_id) for e in reversed(entries)] == [
            ("dismiss", "sato", message),
            ("undismiss", "sato", message),
            ("register", "sato", message),
            ("cancel", "suzuki", message),
        ]
        assert entries[0].detail == "総務第1号: 誤登録"
        assert services.audit.entries(people["other"]) == []


def _section_id(services: Services, name: str) -> int:
    section_id = services.accounts.section_id(name)
    assert section_id is not None
    return section_id


class TestBookCsv:
    def test_utf8_with_bom_and_cp932_carry_the_same_rows(self, services: Services, people: dict[str, UserInfo]) -> None:
        message = stored_message(services, SOUMU)
        services.registry.register(
            people["clerk"],
            [request_for(message, subject="①㈱髙橋商事からの請求書", sender="㈱髙橋商事", remarks="至急")],
        )
        rows = services.registry.book(people["clerk"], _section_id(services, "総務課"), 2026)
        utf8 = book_csv(rows, "utf-8")
        assert utf8.startswith(b"\xef\xbb\xbf")
        cp932 = book_csv(rows, "cp932")
        for data, encoding in ((utf8, "utf-8-sig"), (cp932, "cp932")):
            table = list(csv.reader(io.StringIO(data.decode(encoding))))
            assert table[0][:4] == ["収受番号", "収受日", "件名", "発信者"]
            assert table[1][:4] == ["総務第1号", "令和8年11月20日", "①㈱髙橋商事からの請求書", "㈱髙橋商事"]
            assert table[1][6:9] == ["総務課", "至急", "有効"]
