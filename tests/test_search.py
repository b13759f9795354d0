"""Japanese search in the clerks' list: two-character words, one-character
queries, 〜/～ and half-width forms, attachment names; through an index."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from mailintake.models import Message
from mailintake.people.accounts import UserInfo
from mailintake.records import search
from mailintake.records.inbox import InboxFilter
from mailintake.services import Services

from .factories import designate, make_user, stored_message

SOUMU = "soumu@city.example.jp"


@pytest.fixture
def clerk(services: Services) -> UserInfo:
    designate(services, SOUMU, "総務課")
    return make_user(services, "sato", password=None, sections=["総務課"])


@pytest.fixture
def corpus(services: Services, clerk: UserInfo) -> dict[str, int]:
    mails = {
        "meeting": stored_message(services, SOUMU, subject="資料送付", body="来週の会議資料を送付します。"),
        "budget": stored_message(services, SOUMU, subject="令和9年度予算要求について", body="よろしくお願いします。"),
        "wave": stored_message(services, SOUMU, subject="受付期間 4月1日～4月30日", body="詳細は別紙"),
        "kana": stored_message(services, SOUMU, subject="ｶﾀｶﾅの件名", body="半角カナで届いたメール"),
        "file": stored_message(
            services,
            SOUMU,
            subject="添付のみ",
            body="",
            attachments=(("工事請負契約書.pdf", b"%PDF-1.4", "application/pdf"),),
        ),
        "sender": stored_message(services, SOUMU, subject="ご案内", body="本文", from_name="髙橋 一郎"),
    }
    search.index_all(services.engine)
    return mails


def found(services: Services, user: UserInfo, q: str) -> set[int]:
    page = services.inbox.page(user, InboxFilter(status=None, q=q, limit=100))
    return {row.id for row in page.rows}


class TestJapaneseSearch:
    def test_a_two_character_word_from_the_body_is_found(
        self, services: Services, clerk: UserInfo, corpus: dict[str, int]
    ) -> None:
        assert found(services, clerk, "会議") == {corpus["meeting"]}
        assert found(services, clerk, "予算") == {corpus["budget"]}

    def test_longer_words_match_as_a_whole_not_as_scattered_bigrams(
        self, services: Services, clerk: UserInfo, corpus: dict[str, int]
    ) -> None:
        assert found(services, clerk, "会議資料") == {corpus["meeting"]}
        assert found(services, clerk, "資料会議") == set()

    def test_a_one_character_query_works(self, services: Services, clerk: UserInfo, corpus: dict[str, int]) -> None:
        assert found(services, clerk, "件") == {corpus["kana"]}
        assert found(services, clerk, "髙") == {corpus["sender"]}

    def test_a_one_character_query_finds_the_character_anywhere_in_a_word(
        self, services: Services, clerk: UserInfo, corpus: dict[str, int]
    ) -> None:
        assert found(services, clerk, "議") == {corpus["meeting"]}  # inside 会議資料
        # 送付 (last of a run), 添付のみ and 受付期間 (inside)
        assert found(services, clerk, "付") == {corpus["meeting"], corpus["file"], corpus["wave"]}
        assert found(services, clerk, "受") == {corpus["wave"]}  # first of a run
        assert found(services, clerk, "ｶ") == {corpus["kana"]}  # half-width, as カ

    def test_both_wave_dash_forms_match(self, services: Services, clerk: UserInfo, corpus: dict[str, int]) -> None:
        assert found(services, clerk, "1日〜4月") == {corpus["wave"]}
        assert found(services, clerk, "1日～4月") == {corpus["wave"]}

    def test_half_and_full_width_katakana_match_each_other(
        self, services: Services, clerk: UserInfo, corpus: dict[str, int]
    ) -> None:
        assert found(services, clerk, "カタカナ") == {corpus["kana"]}
        assert found(services, clerk, "ﾒｰﾙ") == {corpus["kana"]}

    def test_attachment_names_and_senders_are_searched(
        self, services: Services, clerk: UserInfo, corpus: dict[str, int]
    ) -> None:
        assert found(services, clerk, "請負契約") == {corpus["file"]}
        assert found(services, clerk, "髙橋") == {corpus["sender"]}

    def test_space_separated_words_must_all_match(
        self, services: Services, clerk: UserInfo, corpus: dict[str, int]
    ) -> None:
        assert found(services, clerk, "令和 予算") == {corpus["budget"]}
        assert found(services, clerk, "令和 会議") == set()

    def test_mail_the_indexer_has_not_reached_yet_is_still_found(
        self, services: Services, clerk: UserInfo, corpus: dict[str, int]
    ) -> None:
        fresh = stored_message(services, SOUMU, subject="新着", body="臨時の会議について")
        assert found(services, clerk, "会議") == {corpus["meeting"], fresh}
        assert search.index_pending(services.engine) == 1
        assert found(services, clerk, "会議") == {corpus["meeting"], fresh}

    def test_the_query_goes_through_the_index(
        self, services: Services, clerk: UserInfo, corpus: dict[str, int]
    ) -> None:
        """The plan of the condition the list page uses, not of a hand-written query."""
        with services.engine.connect() as conn:
            condition = search.condition(conn, "会議")
            assert condition is not None
            statement = select(Message.id).where(condition)
            compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
            if conn.dialect.name == "sqlite":
                plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
                assert any("VIRTUAL TABLE INDEX" in str(row) for row in plan), plan
            else:
                conn.execute(text("SET enable_seqscan = off"))
                plan = conn.exec_driver_sql(f"EXPLAIN {compiled}").all()
                # GIN, or RUM where the extension is installed (both serve @@).
                assert any(
                    index in str(row) for row in plan for index in ("ix_message_search_terms", "ix_message_search_rum")
                ), plan
