"""Backup while running, restore into an empty data folder: the same
messages, attachments, originals and addresses, whichever blob store each
side uses."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import httpx

from mailintake.records.inbox import InboxFilter
from mailintake.records.registry import RegistrationRequest
from mailintake.services import build_services
from tests.factories import make_user

from .conftest import wait_for
from .mails import make_message, send


def _cli(settings, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mailintake", *args, "--data-dir", str(settings.data_dir)],
        capture_output=True,
        text=True,
        env=dict(os.environ, MAILINTAKE_DATABASE_URL=settings.database_url, MAILINTAKE_BLOB_STORE=settings.blob_store),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _everything(base_url: str, token: str) -> list[dict]:
    """Every message's detail, attachment bytes and original bytes."""
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as api:
        items = api.get("/api/v1/messages", params={"limit": 200}).json()["items"]
        out = []
        for item in items:
            detail = api.get(f"/api/v1/messages/{item['id']}").json()
            detail["raw"] = api.get(f"/api/v1/messages/{item['id']}/raw").content
            detail["attachment_bytes"] = [
                api.get(f"/api/v1/attachments/{a['id']}").content for a in detail["attachments"]
            ]
            out.append(detail)
        return out


def _request(message_id: int) -> RegistrationRequest:
    return RegistrationRequest(
        message_id=message_id, subject="件名", sender="差出人", received_on=dt.date(2026, 11, 20), retention="1年"
    )


def test_backup_while_running_restores_the_same_mail(
    settings, services, designated: str, start_service, make_settings, database_url: str, tmp_path: Path
) -> None:
    token = services.tokens.create("backup-test")
    service = start_service(settings)
    for i in range(5):
        send(
            service.smtp_port,
            make_message(
                subject=f"保存するメール {i}",
                attachments=[(f"資料{i}.pdf", b"%PDF" + bytes([i]) * 100, "application/pdf")],
            ),
        )
    wait_for(lambda: services.spool.backlog() == 0 and services.messages.count() == 5, timeout=10)
    clerk = make_user(services, "sato", password=None, sections=["総務課"])
    first_two = [row.id for row in services.inbox.page(clerk, InboxFilter(limit=2)).rows]
    services.registry.register(clerk, [_request(message_id) for message_id in sorted(first_two)])
    section_id = services.accounts.section_id("総務課")
    assert section_id is not None
    book_before = services.registry.book(clerk, section_id, 2026)
    before = _everything(service.base_url, token)

    output = _cli(settings, "backup", str(tmp_path / "backup"))
    assert "backup in" in output

    target_db = database_url if database_url.startswith("postgresql") else f"sqlite:///{tmp_path / 'restored.db'}"
    if database_url.startswith("postgresql"):
        # A fresh schema for the restore target.
        target_db = database_url.replace("options=-csearch_path%3D", "options=-csearch_path%3Dr")
        import sqlalchemy

        schema = target_db.rsplit("%3D", 1)[1]
        admin = sqlalchemy.create_engine(database_url.split("?", 1)[0], isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
        admin.dispose()
    # Into the other blob store: files come back as rows, rows as files.
    other_store = "database" if settings.blob_store == "files" else "files"
    restored_settings = make_settings(data_dir=tmp_path / "restored", database_url=target_db, blob_store=other_store)
    build_services(restored_settings).close()
    assert "restored" in _cli(restored_settings, "restore", str(tmp_path / "backup"))
    restored = start_service(restored_settings)
    after = _everything(restored.base_url, token)

    assert after == before
    assert len(after) == 5 and all(d["attachment_bytes"] for d in after)
    # The designated address and the API token came back too.
    restored_services = build_services(restored_settings)
    assert restored_services.addresses.get(designated).section == "総務課"
    # Registrations, users and the receipt counter came back: numbering goes on.
    assert restored_services.registry.book(clerk, section_id, 2026) == book_before
    unregistered = next(d["id"] for d in after if d["status"] == "new")
    again = restored_services.registry.register(clerk, [_request(unregistered)])
    assert again[0].receipt_number == "総務第3号"
    restored_services.close()
    if database_url.startswith("postgresql"):
        import sqlalchemy

        admin = sqlalchemy.create_engine(database_url.split("?", 1)[0], isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def test_restore_refuses_a_database_that_is_not_empty(settings, services, designated: str, tmp_path: Path) -> None:
    _cli(settings, "backup", str(tmp_path / "backup"))
    result = subprocess.run(
        [sys.executable, "-m", "mailintake", "restore", str(tmp_path / "backup"), "--data-dir", str(settings.data_dir)],
        capture_output=True,
        text=True,
        env=dict(os.environ, MAILINTAKE_DATABASE_URL=settings.database_url, MAILINTAKE_BLOB_STORE=settings.blob_store),
    )
    assert result.returncode == 1
    assert "needs an empty database" in result.stderr
