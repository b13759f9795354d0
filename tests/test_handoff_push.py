"""Push mode: each registration event arrives as a package in the document
system's inbox exactly once, through a real linkage engine (`filelink run`),
also when mailintake is killed with kill -9 at any moment of writing."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from filelink import permissions
from filelink.config import Config, parse
from mailintake.config import Settings
from mailintake.handoff import push
from mailintake.handoff.push import Pusher
from mailintake.models import HandoffPush, RegistrationEvent
from mailintake.people.accounts import UserInfo
from mailintake.records.registry import RegistrationRequest
from mailintake.services import Services, build_services

from .conftest import ServiceProcess, wait_for
from .factories import designate, make_user, stored_message
from .linkage import config_data, write_config

SOUMU = "soumu@city.example.jp"


class Crash(Exception):
    """Stands for the process dying at this point."""


@pytest.fixture
def clerk(services: Services) -> dict[str, UserInfo]:
    designate(services, SOUMU, "総務課")
    return {
        "clerk": make_user(services, "sato", password=None, sections=["総務課"]),
        "chief": make_user(services, "suzuki", password=None, role="section_admin", sections=["総務課"]),
    }


def register(services: Services, user: UserInfo, count: int) -> list[int]:
    ids = [
        stored_message(services, SOUMU, attachments=(("資料.pdf", os.urandom(64), "application/pdf"),))
        for _ in range(count)
    ]
    done = services.registry.register(
        user,
        [
            RegistrationRequest(
                message_id=i, subject="件名", sender="山田", received_on=dt.date(2026, 11, 20), retention="5年"
            )
            for i in ids
        ],
    )
    return [r.id for r in done]


def events(services: Services) -> list[tuple[int, int, str]]:
    with Session(services.engine) as session:
        return [(e.seq, e.registration_id, e.event) for e in session.scalars(select(RegistrationEvent))]


def packages(folder: Path) -> dict[int, dict[str, Any]]:
    """The packages in ``folder`` by event number (from their names)."""
    found: dict[int, dict[str, Any]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        seq = int(path.stem.rsplit("_", 1)[1].split(".")[0])
        assert seq not in found, f"event {seq} delivered twice: {path.name}"
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None, path.name
            found[seq] = json.loads(archive.read("metadata.json"))
    return found


def pusher(services: Services, outbox: Path) -> Pusher:
    return Pusher(services.engine, services.blobs, services.originals, outbox)


class TestCrashPoints:
    def test_each_event_becomes_one_package_and_a_second_run_writes_nothing(
        self, services: Services, clerk: dict[str, UserInfo], tmp_path: Path
    ) -> None:
        registered = register(services, clerk["clerk"], 3)
        services.registry.cancel(clerk["chief"], registered[0], "誤り")
        outbox = tmp_path / "outbox"
        assert pusher(services, outbox).push_pending() == 4
        assert pusher(services, outbox).push_pending() == 0
        found = packages(outbox)
        assert sorted(found) == [seq for seq, _, _ in events(services)]
        assert [found[seq]["registration"]["id"] for seq, _, _ in events(services)] == registered + [registered[0]]
        names = {p.name for p in outbox.iterdir()}
        assert {push.file_name(2026, "総務第1号", "registered", 1), "2026_総務第1号_cancelled_00000004.zip"} <= names

    def test_an_incomplete_file_from_before_a_crash_is_written_again(
        self, services: Services, clerk: dict[str, UserInfo], tmp_path: Path
    ) -> None:
        register(services, clerk["clerk"], 1)
        outbox = tmp_path / "outbox"
        outbox.mkdir()
        name = push.file_name(2026, "総務第1号", "registered", 1)
        (outbox / push.temporary_name(name)).write_bytes(b"PK\x03\x04 half a zip")
        assert pusher(services, outbox).push_pending() == 1
        assert [p.name for p in outbox.iterdir()] == [name]
        assert packages(outbox)[1]["registration"]["receipt_number"]["formatted"] == "総務第1号"

    def test_a_crash_before_the_rename_renames_once_after_restart(
        self, services: Services, clerk: dict[str, UserInfo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        register(services, clerk["clerk"], 2)
        outbox = tmp_path / "outbox"

        def dies(*args: Any) -> None:
            raise Crash

        with monkeypatch.context() as patch:
            patch.setattr(push.os, "rename", dies)
            with pytest.raises(Crash):
                pusher(services, outbox).push_pending()
        with Session(services.engine) as session:
            position = session.get(HandoffPush, push.POSITION)
            assert position is not None and position.writing_seq == 1 and position.last_seq == 0
        assert [p.name.startswith(".") for p in outbox.iterdir()] == [True]
        pusher(services, outbox).push_pending()
        assert sorted(packages(outbox)) == [1, 2]
        assert not [p for p in outbox.iterdir() if p.name.startswith(".")]

    def test_a_crash_after_the_rename_never_writes_the_package_again_even_once_the_engine_took_it(
        self, services: Services, clerk: dict[str, UserInfo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        register(services, clerk["clerk"], 2)
        outbox = tmp_path / "outbox"
        record = Pusher._record

        def dies_moving_on(self: Pusher, **values: Any) -> None:
            if "last_seq" in values:
                raise Crash
            record(self, **values)

        with monkeypatch.context() as patch:
            patch.setattr(Pusher, "_record", dies_moving_on)
            with pytest.raises(Crash):
                pusher(services, outbox).push_pending()
        [first] = list(outbox.iterdir())
        first.unlink()  # the linkage engine picked it up before the restart
        pusher(services, outbox).push_pending()
        assert sorted(packages(outbox)) == [2]


# -- through a real linkage engine, with kill -9 ----------------------------------------


def engine_config(base: Path) -> Config:
    return parse(
        {
            "engine": {"root": str(base / "share"), "state_dir": str(base / "state"), "account": "root"},
            "systems": {
                "mailintake": {"name": "メール収受", "group": "root"},
                "bunsho": {"name": "文書管理", "group": "root"},
            },
            "routes": [
                {
                    "id": "shuju",
                    "source": "mailintake",
                    "kind": "収受文書",
                    "pattern": "*.zip",
                    "destinations": ["bunsho"],
                }
            ],
        }
    )


@pytest.fixture
def linkage_engine(tmp_path: Path, acl_tools: None) -> Iterator[Config]:
    config = engine_config(tmp_path)
    permissions.apply(config)
    data = config_data(config)
    data["engine"]["rescan_seconds"] = 0.3
    path = write_config(data, tmp_path / "filelink.toml")
    with open(tmp_path / "filelink.log", "ab") as log:
        engine = subprocess.Popen(
            [sys.executable, "-m", "filelink", "run", "--config", str(path), "--log-level", "WARNING"],
            stdout=log,
            stderr=log,
        )
    yield config
    engine.terminate()
    engine.wait(30)


def test_every_event_reaches_the_document_system_once_through_the_engine_across_kill_9(
    make_settings: Callable[..., Settings],
    database_url: str,
    linkage_engine: Config,
    tmp_path: Path,
) -> None:
    """GIVEN mailintake in push mode into the engine's outbox for 文書管理
    WHEN 60 registrations and 10 cancellations are made while mailintake is
    killed with kill -9 and restarted again and again
    THEN the document system's inbox holds each event's package exactly once."""
    route = linkage_engine.routes[0]
    settings = make_settings(database_url=database_url, handoff_push_dir=str(linkage_engine.outbox(route)))
    services = build_services(settings)
    inbox = linkage_engine.inbox(route, "bunsho")
    try:
        designate(services, SOUMU, "総務課")
        clerk = make_user(services, "sato", password=None, sections=["総務課"])
        chief = make_user(services, "suzuki", password=None, role="section_admin", sections=["総務課"])
        registered: list[int] = []
        process = ServiceProcess(settings, tmp_path / "service.log").start()
        kills = 0
        try:
            for round_ in range(6):
                registered += register(services, clerk, 10)
                for registration_id in random.sample(registered, 2) if round_ % 3 == 2 else []:
                    if services.registry.get(chief, registration_id).status == "active":
                        services.registry.cancel(chief, registration_id, "重複")
                time.sleep(random.uniform(0.05, 0.6))  # somewhere in the middle of writing
                process.kill()
                kills += 1
                process = ServiceProcess(settings, tmp_path / "service.log").start()
            expected = events(services)
            wait_for(lambda: len([p for p in inbox.iterdir() if not p.name.startswith(".")]) >= len(expected), 120)
            time.sleep(1.0)  # a duplicate, were there one, would arrive now
        finally:
            process.terminate()
        found = packages(inbox)
        assert sorted(found) == [seq for seq, _, _ in expected]
        for seq, registration_id, event in expected:
            assert found[seq]["registration"]["id"] == registration_id
            if event == "cancelled":
                assert found[seq]["registration"]["status"] == "cancelled"
        assert kills == 6
        assert not [p for p in linkage_engine.outbox(route).iterdir() if not p.name.startswith(".")]
    finally:
        services.close()
