"""Search newest first: with PostgreSQL's index over terms and time, or
SQLite's FTS5 bounded by the ids of the span, a list page looks at the
newest week, then fortnight, month… instead of collecting every match, and
must show exactly what searching everything shows — every page, every
filter, ties in time included. On both
databases a search's first page and its counts come from one lookup."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy

from mailintake.config import Settings
from mailintake.records import search
from mailintake.records.inbox import Inbox, InboxFilter
from mailintake.services import Services, build_services
from tests.factories import designate, make_user, stored_message

WORDS = ["会議", "予算", "要求", "資料", "通知", "照会", "回答", "契約", "議事録", "防災"]


@contextlib.contextmanager
def filled(make_settings: Any, url: str) -> Iterator[Services]:
    settings: Settings = make_settings(database_url=url)
    services = build_services(settings)
    designate(services, "soumu@city.example.jp", "総務課")
    designate(services, "zaisei@city.example.jp", "財政課")
    make_user(services, "sato", password=None, sections=["総務課"])
    make_user(services, "admin", password=None, role="system_admin")
    rng = random.Random(11)
    start = dt.datetime(2025, 12, 1, tzinfo=dt.UTC)
    for n in range(700):
        # Eleven hours apart over most of a year, every fifth sharing its time
        # with the one before: the spans grow several times, ties included.
        minutes = n - (n % 5 == 1)
        words = rng.sample(WORDS, 3)
        stored_message(
            services,
            rng.choice(["soumu@city.example.jp", "zaisei@city.example.jp"]),
            subject=f"{words[0]}の{words[1]}について",
            body=f"{words[2]}を送付します。",
            received_at=start + dt.timedelta(hours=11 * minutes),
        )
    search.index_all(services.engine)
    with services.engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE messages SET status = 'registered' WHERE id % 3 = 0"))
    try:
        yield services
    finally:
        services.close()


@pytest.fixture
def any_corpus(make_settings: Any, database_url: str) -> Iterator[Services]:
    """On SQLite and on PostgreSQL."""
    with filled(make_settings, database_url) as services:
        yield services


CASES = [
    InboxFilter(q="会議", status=None, limit=25),
    InboxFilter(q="会議 資料", limit=10),
    InboxFilter(q="議", status=None, limit=50),
    InboxFilter(q="予算要求", status="new", limit=20),
    InboxFilter(q="防災", status="registered", limit=7),
    InboxFilter(q="通知", status=None, date_from=dt.date(2026, 2, 2), date_to=dt.date(2026, 4, 3), limit=5),
    InboxFilter(q="存在しない語", limit=25),
    InboxFilter(q="会議", status=None, oldest_first=True, limit=25),
]


def every_page(inbox: Inbox, who: Any, wanted: InboxFilter) -> list[list[int]]:
    pages, cursor = [], None
    while True:
        page = inbox.page(who, dataclasses.replace(wanted, cursor=cursor))
        pages.append([row.id for row in page.rows])
        cursor = page.next_cursor
        if cursor is None:
            return pages


def test_the_newest_first_search_shows_what_searching_everything_shows(any_corpus: Services, monkeypatch: Any) -> None:
    """PostgreSQL's time index against its plain GIN path; SQLite's windows
    of ids against FTS5's every match."""
    corpus = any_corpus
    with corpus.engine.connect() as conn:
        assert search.index_kind(conn) in ("gin+time", "fts5")
    ordered, gin = Inbox(corpus.engine), Inbox(corpus.engine, ordered_search=False)
    used: list[dt.datetime] = []
    real = search.matches_since
    monkeypatch.setattr(search, "matches_since", lambda *a, **k: used.append(a[2]) or real(*a, **k))
    sato, admin = (corpus.accounts.by_username(name) for name in ("sato", "admin"))
    for wanted in CASES:
        for who in (sato, admin):
            assert every_page(ordered, who, wanted) == every_page(gin, who, wanted), (wanted, who.username)
            assert ordered.counts(who, wanted) == gin.counts(who, wanted), (wanted, who.username)
            # The list's first page taken out of the counts' search: all
            # matches read, or only the newest (a cap of 30, fewer than many
            # a word has), which may not hold the page of a status.
            for cap in (1000, 30):
                first, counts = ordered.page_with_counts(who, wanted, cap)
                assert first == gin.page(who, wanted), (wanted, cap)
                # (Past a cap the counts are lower bounds: the GIN path's differ.)
                assert counts == ordered.counts(who, wanted, cap), (wanted, cap)
    assert used, "the time index was not used"
    assert len(set(used)) > 3, "no search needed wider spans"


def test_mail_the_indexer_has_not_reached_is_found_too(any_corpus: Services) -> None:
    fresh = stored_message(any_corpus, "soumu@city.example.jp", subject="会議の直前の連絡")
    page = Inbox(any_corpus.engine).page(any_corpus.accounts.by_username("sato"), InboxFilter(q="会議", limit=5))
    assert page.rows[0].id == fresh


def test_a_search_page_and_its_counts_are_what_page_and_counts_give(any_corpus: Services) -> None:
    inbox = Inbox(any_corpus.engine)
    for wanted in CASES:
        for who in (any_corpus.accounts.by_username(name) for name in ("sato", "admin")):
            for cap in (1000, 30):
                first, counts = inbox.page_with_counts(who, wanted, cap)
                assert first == inbox.page(who, wanted), (wanted, who.username, cap)
                assert counts == inbox.counts(who, wanted, cap), (wanted, who.username, cap)


def test_a_search_page_and_its_counts_look_the_words_up_once(any_corpus: Services, monkeypatch: Any) -> None:
    inbox = Inbox(any_corpus.engine)
    monkeypatch.setattr(inbox, "page", lambda *a, **k: pytest.fail("the words were looked up again for the page"))
    page, counts = inbox.page_with_counts(any_corpus.accounts.by_username("sato"), InboxFilter(q="会議", limit=25))
    assert len(page.rows) == 25 and page.next_cursor
    assert counts.of("new") > 25 and not counts.at_least


def test_a_page_the_counts_search_does_not_hold_is_looked_up_but_the_counts_are_not(
    any_corpus: Services, monkeypatch: Any
) -> None:
    """Past a small cap the newest matches of every status hold too few
    registered ones: the page is searched for, the counts come from the first search."""
    sato = any_corpus.accounts.by_username("sato")
    wanted = InboxFilter(q="会議", status="registered", limit=10)
    inbox = Inbox(any_corpus.engine)
    expected = Inbox(any_corpus.engine, ordered_search=False).page(sato, wanted)
    monkeypatch.setattr(inbox, "counts", lambda *a, **k: pytest.fail("the words were looked up again for the counts"))
    page, counts = inbox.page_with_counts(sato, wanted, cap=12)
    assert page == expected and len(page.rows) == 10
    assert counts.at_least and sum(counts.by_status.values()) == 13
