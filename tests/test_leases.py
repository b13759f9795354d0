"""One runner per cluster: the search indexer and the hand-off pusher run
on the node that holds their lease (a PostgreSQL advisory lock on a session
of its own); when that node dies, another takes over within seconds."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from mailintake.config import Settings
from mailintake.handoff import push
from mailintake.leases import Lease
from mailintake.records.registry import RegistrationRequest
from mailintake.services import build_services

from .conftest import wait_for
from .factories import designate, make_user, stored_message

pytestmark = pytest.mark.postgresql

HOLD = """
import sys, time, sqlalchemy
from mailintake.leases import Lease
lease = Lease(sqlalchemy.create_engine(sys.argv[1]), sys.argv[2])
while not lease.held():
    time.sleep(0.1)
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def other_node() -> Iterator[Callable[[str, str], subprocess.Popen[str]]]:
    """Another node's process that takes a lease and keeps it until killed."""
    started: list[subprocess.Popen[str]] = []

    def start(url: str, name: str) -> subprocess.Popen[str]:
        process = subprocess.Popen([sys.executable, "-c", HOLD, url, name], stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout is not None and process.stdout.readline() == "held\n"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()


def takeover_seconds(lease: Lease, node: subprocess.Popen[str]) -> float:
    """Kill -9 the holder; how long until ``lease`` is held here."""
    node.send_signal(signal.SIGKILL)
    node.wait(10)
    began = time.monotonic()
    while not lease.held():
        assert time.monotonic() - began < 10, "not taken over within 10 s"
        time.sleep(0.1)
    return time.monotonic() - began


def test_a_lease_has_one_holder_and_passes_to_another_node_when_the_holder_is_killed(
    postgres_url: str, other_node: Any
) -> None:
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        node_a = other_node(postgres_url, "search-indexer")
        here = Lease(engine, "search-indexer")
        for _ in range(5):  # asked again and again: still the other node's
            assert not here.held()
            time.sleep(0.1)
        free = Lease(engine, "handoff-push")
        assert free.held()  # another lease is free
        free.release()
        assert takeover_seconds(here, node_a) < 5
        assert here.held()  # and kept
        here.release()
    finally:
        engine.dispose()


def test_installations_in_other_schemas_have_leases_of_their_own(
    postgres_url: str, postgres_admin_url: str, other_node: Any
) -> None:
    from .conftest import fresh_schema

    other_node(postgres_url, "search-indexer")
    with fresh_schema(postgres_admin_url) as elsewhere:
        engine = sqlalchemy.create_engine(elsewhere)
        lease = Lease(engine, "search-indexer")
        try:
            assert lease.held()
        finally:
            lease.release()
            engine.dispose()


def test_the_pusher_writes_nothing_while_another_node_holds_its_lease_and_takes_over_when_it_dies(
    postgres_url: str, make_settings: Callable[..., Settings], tmp_path: Path, other_node: Any
) -> None:
    outbox = tmp_path / "outbox"
    settings = make_settings(database_url=postgres_url)
    services = build_services(settings)
    designate(services, "soumu@city.example.jp", "総務課")
    clerk = make_user(services, "sato", password=None, sections=["総務課"])
    message_id = stored_message(services, "soumu@city.example.jp")
    node_a = other_node(postgres_url, "handoff-push")
    thread, stop = push.start(services.engine, services.blobs, services.originals, outbox)
    try:
        services.registry.register(
            clerk,
            [RegistrationRequest(message_id, "件名", "山田", dt.date(2026, 11, 20), "5年")],
        )
        time.sleep(3)
        assert not outbox.exists() or list(outbox.iterdir()) == []  # node A's job, and A writes nothing here
        node_a.send_signal(signal.SIGKILL)
        wait_for(lambda: outbox.exists() and len([p for p in outbox.iterdir() if p.suffix == ".zip"]) == 1, 10)
    finally:
        stop.set()
        thread.join(10)
        services.close()


def test_the_search_indexer_waits_for_its_lease_and_takes_over_when_the_holder_dies(
    postgres_url: str, make_settings: Callable[..., Settings], start_service: Any, other_node: Any
) -> None:
    from mailintake.records import search

    from .mails import make_message, send

    settings = make_settings(database_url=postgres_url)
    services = build_services(settings)
    designate(services, "soumu@city.example.jp", "総務課")
    node_a = other_node(postgres_url, "search-indexer")
    service = start_service(settings)
    try:
        send(service.smtp_port, make_message(subject="索引の引き継ぎ"))
        wait_for(lambda: services.messages.count() == 1, 20)
        time.sleep(5)  # quiet for longer than the indexer waits: node A's job
        with services.engine.connect() as conn:
            assert search.watermark(conn) == 0
        node_a.send_signal(signal.SIGKILL)

        def indexed() -> bool:
            with services.engine.connect() as conn:
                return search.watermark(conn) > 0

        wait_for(indexed, 10)
    finally:
        services.close()


def test_the_directory_import_and_a_purge_by_hand_leave_the_work_to_the_node_holding_it(
    postgres_url: str, make_settings: Callable[..., Settings], tmp_path: Path, other_node: Any
) -> None:
    """Every node's timer may run `directory import` on one shared inbox and
    an operator may run `purge` on any node: only the lease holder works."""
    settings = make_settings(database_url=postgres_url, purge_new_after_days=30)
    services = build_services(settings)
    designate(services, "soumu@city.example.jp", "総務課")
    stored_message(services, "soumu@city.example.jp", received_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=90))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "organisation.csv").write_text("所属コード,所属名\n0100,企画課\n", encoding="utf-8")
    env = {"MAILINTAKE_DATABASE_URL": postgres_url, "MAILINTAKE_PURGE_NEW_AFTER_DAYS": "30"}

    def mailintake(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mailintake", *args, "--data-dir", str(settings.data_dir)],
            capture_output=True, text=True, timeout=60, env={**os.environ, **env},
        )  # fmt: skip

    try:
        importing = other_node(postgres_url, "directory-import")
        purging = other_node(postgres_url, "retention-purge")
        skipped = mailintake("directory", "import", "--inbox", str(inbox))
        assert skipped.returncode == 0 and "別のノードが取り込み中" in skipped.stdout
        assert (inbox / "organisation.csv").exists() and "企画課" not in [s.name for s in services.accounts.sections()]
        refused = mailintake("purge")
        assert refused.returncode == 1 and "別のノード" in refused.stderr
        assert services.messages.count() == 1

        importing.kill()
        purging.kill()
        importing.wait(10)
        purging.wait(10)
        done = mailintake("directory", "import", "--inbox", str(inbox))
        assert done.returncode == 0, done.stderr
        assert not (inbox / "organisation.csv").exists() and "企画課" in [s.name for s in services.accounts.sections()]
        purged = mailintake("purge")
        assert purged.returncode == 0, purged.stderr
        assert services.messages.count() == 0
    finally:
        services.close()
