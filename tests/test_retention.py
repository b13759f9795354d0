"""Retention: unregistered mail is deleted after the configured days
(未処理 and 対象外 separately); mail with a 収受番号 never is; files go
only when nothing else needs them; the run is audited."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailintake.config import Settings
from mailintake.models import Attachment, Message
from mailintake.records import retention, search
from mailintake.records.registry import RegistrationRequest
from mailintake.services import Services

from .conftest import ServiceThread, wait_for
from .factories import make_user, stored_message

SOUMU = "soumu@city.example.jp"
PDF = b"%PDF-1.4 shared bytes"


def days_ago(days: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(days=days)


def files_of(services: Services, message_id: int) -> tuple[list[str], str]:
    with Session(services.engine) as session:
        message = session.get(Message, message_id)
        assert message is not None
        return [a.sha256 for a in message.attachments], message.raw_sha256


def test_old_unregistered_mail_goes_and_everything_with_a_receipt_number_stays(
    services: Services, designated: str
) -> None:
    clerk = make_user(services, "sato", password=None, role="section_admin", sections=["総務課"])
    old_new = stored_message(
        services,
        SOUMU,
        subject="古い未処理",
        received_at=days_ago(100),
        attachments=(("一時.pdf", b"%PDF-1.4 only here", "application/pdf"),),
    )
    old_shared = stored_message(
        services,
        SOUMU,
        subject="古い共有",
        received_at=days_ago(100),
        attachments=(("共有.pdf", PDF, "application/pdf"),),
    )
    old_dismissed = stored_message(services, SOUMU, subject="古い対象外", received_at=days_ago(400))
    old_registered = stored_message(services, SOUMU, subject="古い収受済", received_at=days_ago(400))
    old_cancelled = stored_message(services, SOUMU, subject="古い取消", received_at=days_ago(400))
    recent = stored_message(services, SOUMU, subject="最近の未処理", received_at=days_ago(3),
                            attachments=(("共有.pdf", PDF, "application/pdf"),))  # fmt: skip
    services.registry.dismiss(clerk, old_dismissed, "広告")
    done = services.registry.register(
        clerk,
        [
            RegistrationRequest(message_id=i, subject="件名", sender="差出人", received_on=dt.date(2025, 10, 1),
                                retention="5年")
            for i in (old_registered, old_cancelled)
        ],
    )  # fmt: skip
    services.registry.cancel(clerk, done[1].id, "誤登録")
    search.index_all(services.engine)
    only_here, old_raw = files_of(services, old_new)
    shared, _ = files_of(services, old_shared)

    rule = retention.PurgeRule.from_days(new_days=90, dismissed_days=365)
    planned = retention.plan(services.engine, rule)
    assert (planned.new, planned.dismissed) == (2, 1)

    result = retention.purge(services.engine, services.blobs, services.originals, rule)

    assert (result.new, result.dismissed) == (2, 1)
    assert sorted(result.ids) == sorted([old_new, old_shared, old_dismissed])
    with Session(services.engine) as session:
        left = set(session.scalars(select(Message.id)))
        assert left == {old_registered, old_cancelled, recent}
        assert set(session.scalars(select(Attachment.sha256))) == set(shared)
    assert not services.blobs.exists(only_here[0])
    assert services.blobs.exists(shared[0])  # the recent mail still carries it
    assert not services.originals.exists(old_raw)
    with services.engine.connect() as conn:
        condition = search.condition(conn, "古い")
        assert condition is not None
        found = set(conn.scalars(select(Message.id).where(condition)))
    assert found == {old_registered, old_cancelled}
    admin = make_user(services, "admin", password=None, role="system_admin")
    purges = [e for e in services.audit.entries(admin) if e.action == "purge"]
    assert len(purges) == 1 and "未処理 2 件、対象外 1 件" in purges[0].detail

    assert retention.purge(services.engine, services.blobs, services.originals, rule).messages == 0


def test_the_purge_command_counts_in_a_dry_run_and_leaves_a_running_service_to_purge_itself(
    services: Services, service: ServiceThread
) -> None:
    stored_message(services, SOUMU, received_at=days_ago(40))
    env = dict(os.environ, MAILINTAKE_DATABASE_URL=services.settings.database_url, MAILINTAKE_CONFIG="")
    base = [sys.executable, "-m", "mailintake", "purge", "--data-dir", str(services.settings.data_dir)]
    dry = subprocess.run([*base, "--new-days", "30", "--dry-run"], env=env, capture_output=True, text=True)
    assert dry.returncode == 0 and "未処理 1 件" in dry.stdout
    refused = subprocess.run([*base, "--new-days", "30"], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "サービスが動いています" in refused.stderr
    with Session(services.engine) as session:
        assert len(session.scalars(select(Message.id)).all()) == 1


class TestTheRunningService:
    @pytest.fixture
    def settings(self, make_settings: Any, database_url: str) -> Settings:
        return make_settings(database_url=database_url, purge_new_after_days=30)

    def test_the_ingester_purges_by_itself_when_idle(self, services: Services, service: ServiceThread) -> None:
        old = stored_message(services, SOUMU, received_at=days_ago(40))
        young = stored_message(services, SOUMU, received_at=days_ago(10))

        def ids() -> set[int]:
            with Session(services.engine) as session:
                return set(session.scalars(select(Message.id)))

        wait_for(lambda: ids() == {young}, 30)
        assert old not in ids()
