"""Nothing answered with 250 is lost: crashes, full or read-only spools, and
an unavailable database."""

from __future__ import annotations

import json
import smtplib
import sqlite3
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailintake.config import Settings
from mailintake.intake.spool import Envelope, Spool
from mailintake.models import Message
from mailintake.services import build_services
from tests.factories import designate

from .conftest import require, wait_for
from .mails import make_message, send
from .proxy import TcpProxy


def _subjects_stored(settings: Settings) -> dict[str, int]:
    services = build_services(settings)
    try:
        with Session(services.engine) as session:
            rows = session.execute(select(Message.subject, func.count()).group_by(Message.subject))
            return {subject: int(n) for subject, n in rows}
    finally:
        services.close()


class TestCrash:
    def test_kill_9_during_load_loses_nothing_and_stores_nothing_twice(
        self, settings: Settings, services, designated: str, service_process
    ) -> None:
        """GIVEN 6 connections sending 100+ mails each WHEN the server is
        killed with SIGKILL mid-way and restarted, and the MTA re-sends what
        got no 250 THEN every mail is stored exactly once."""
        per_connection = 110
        mails = {
            f"crash-{c}-{i}": make_message(subject=f"crash-{c}-{i}", body=f"本文 {c} {i}\n" * 20)
            for c in range(6)
            for i in range(per_connection)
        }
        acked: set[str] = set()
        lock = threading.Lock()

        def sender(connection: int, subjects: list[str]) -> None:
            client = smtplib.SMTP("127.0.0.1", settings.smtp_port, timeout=30)
            try:
                for subject in subjects:
                    client.sendmail("mta@city.example.jp", [designated], mails[subject])
                    with lock:
                        acked.add(subject)
                client.quit()
            except (smtplib.SMTPException, OSError):
                pass  # the server died under us; unacknowledged mail is re-sent later

        proc = service_process(settings)
        threads = [
            threading.Thread(target=sender, args=(c, [f"crash-{c}-{i}" for i in range(per_connection)]))
            for c in range(6)
        ]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(acked) >= 250, timeout=60, interval=0.005)
        proc.kill()
        for thread in threads:
            thread.join(30)
        acked_before_kill = set(acked)
        assert 250 <= len(acked_before_kill) < len(mails), "the kill must land mid-way"

        service_process(settings)  # restart: recovery, then ingestion of the spool
        unacked = sorted(set(mails) - acked_before_kill)
        for start in range(0, len(unacked), 50):
            with smtplib.SMTP("127.0.0.1", settings.smtp_port, timeout=30) as client:
                for subject in unacked[start : start + 50]:
                    client.sendmail("mta@city.example.jp", [designated], mails[subject])

        stored = wait_for(lambda: (s := _subjects_stored(settings)) and len(s) == len(mails) and s, timeout=60)
        assert set(stored) == set(mails)
        assert set(stored.values()) == {1}
        assert Spool(settings.spool_dir).backlog() == 0


class TestSpoolRecovery:
    def test_a_truncated_spool_entry_is_never_presented_as_a_message(
        self, settings: Settings, services, designated: str, start_service, tmp_path: Path
    ) -> None:
        spool = services.spool
        for raw, cut in (
            (make_message(subject="正常なメール"), False),
            (make_message(subject="途中で切れたメール"), True),
        ):
            writer = spool.open()
            writer.write(raw)
            spooled = spool.commit(
                writer,
                Envelope("a@example.jp", (designated,), "127.0.0.1", datetime.now().astimezone()),
            )
            if cut:
                with open(spooled.path, "r+b") as fh:
                    fh.truncate(len(raw) // 2)
        start_service(settings)
        wait_for(lambda: services.spool.backlog() == 0, timeout=5)
        assert _subjects_stored(settings) == {"正常なメール": 1}
        assert [p.suffix for p in spool.corrupt.iterdir()] == [".msg"]

    def test_partial_files_of_an_interrupted_reception_are_removed_at_start(
        self, settings: Settings, services, designated: str, start_service
    ) -> None:
        spool = services.spool
        (spool.tmp / "123-abc.msg").write_bytes(b"Subject: half\r\n\r\nhal")
        start_service(settings)
        assert list(spool.tmp.iterdir()) == []
        assert _subjects_stored(settings) == {}


@pytest.fixture
def service_on_tmpfs_spool(make_settings, database_url: str, tmp_path: Path, start_service, mount_available: bool):
    """A running service whose spool is a small tmpfs the test can fill or
    make read-only; returns (settings, spool mount point)."""
    require(mount_available, "needs permission to mount a small tmpfs")
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(spool_dir)], check=True)
    settings = make_settings(database_url=database_url, spool_dir=spool_dir)
    services = build_services(settings)
    designate(services, "soumu@city.example.jp", "総務課")
    services.close()
    start_service(settings)
    try:
        yield settings, spool_dir
    finally:
        subprocess.run(["umount", "-l", str(spool_dir)], check=False)


def _remount(spool_dir: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(spool_dir)], check=True)


class TestSpoolFaults:
    def test_a_full_spool_gives_452_and_mail_is_accepted_again_once_there_is_room(self, service_on_tmpfs_spool) -> None:
        settings, spool_dir = service_on_tmpfs_spool
        big = make_message(attachments=[("大きな資料.bin", b"\0" * 2_000_000, "application/octet-stream")])
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(settings.smtp_port, big)
        assert refused.value.smtp_code == 452
        assert refused.value.smtp_error.startswith(b"4.3.1")
        # The partial file was removed, so the next mail fits.
        assert send(settings.smtp_port, make_message(subject="小さなメール")) == {}
        # More room (the MTA's retry): the big one is accepted too.
        _remount(spool_dir, "size=8m")
        assert send(settings.smtp_port, big) == {}
        wait_for(lambda: len(_subjects_stored(settings)) == 2, timeout=5)

    def test_a_read_only_spool_gives_451_and_recovers(self, service_on_tmpfs_spool) -> None:
        settings, spool_dir = service_on_tmpfs_spool
        _remount(spool_dir, "ro")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(settings.smtp_port, make_message())
        assert refused.value.smtp_code == 451
        _remount(spool_dir, "rw")
        assert send(settings.smtp_port, make_message(subject="復旧後")) == {}
        wait_for(lambda: _subjects_stored(settings) == {"復旧後": 1}, timeout=5)


class TestDatabaseOutage:
    @pytest.mark.postgresql
    def test_mail_is_accepted_while_postgresql_is_unreachable_and_appears_when_it_is_back(
        self, make_settings, postgres_url: str, start_service
    ) -> None:
        parts = urlsplit(postgres_url)
        proxy = TcpProxy(parts.port or 5432).start()
        via_proxy = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
        settings = make_settings(database_url=via_proxy)
        services = build_services(settings)
        designate(services, "soumu@city.example.jp", "総務課")
        services.close()
        start_service(settings)
        try:
            proxy.stop()
            assert send(settings.smtp_port, make_message(subject="障害中に届いたメール")) == {}
            time.sleep(1)  # the ingester tries and fails meanwhile
            assert Spool(settings.spool_dir).backlog() == 1
        finally:
            proxy.start()
        wait_for(lambda: _subjects_stored(settings) == {"障害中に届いたメール": 1}, timeout=15)
        assert Spool(settings.spool_dir).backlog() == 0

    def test_mail_is_accepted_while_sqlite_is_locked_and_appears_when_released(
        self, make_settings, start_service, tmp_path: Path
    ) -> None:
        settings = make_settings(database_url=f"sqlite:///{tmp_path / 'locked.db'}")
        services = build_services(settings)
        designate(services, "soumu@city.example.jp", "総務課")
        start_service(settings)
        locker = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), timeout=1)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            assert send(settings.smtp_port, make_message(subject="ロック中に届いたメール")) == {}
            time.sleep(0.5)
            assert Spool(settings.spool_dir).backlog() == 1
        finally:
            locker.rollback()
            locker.close()
        wait_for(lambda: _subjects_stored(settings) == {"ロック中に届いたメール": 1}, timeout=40)
        services.close()

    @pytest.mark.postgresql
    def test_healthz_reports_the_backlog_and_a_missing_database(
        self, make_settings, postgres_url: str, start_service
    ) -> None:
        parts = urlsplit(postgres_url)
        proxy = TcpProxy(parts.port or 5432).start()
        settings = make_settings(
            database_url=urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
        )
        services = build_services(settings)
        designate(services, "soumu@city.example.jp", "総務課")
        services.close()
        service = start_service(settings)
        try:
            proxy.stop()
            send(settings.smtp_port, make_message())
            response = httpx.get(f"{service.base_url}/healthz", timeout=10)
            assert response.status_code == 503
            body = response.json()
            assert body["database"] is False and body["backlog"] == 1 and body["spool_writable"] is True
        finally:
            proxy.start()
        wait_for(lambda: httpx.get(f"{service.base_url}/healthz", timeout=10).json()["backlog"] == 0, timeout=15)
        assert json.loads(httpx.get(f"{service.base_url}/healthz").text)["status"] == "ok"
