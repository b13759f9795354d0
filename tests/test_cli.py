"""The command line: addresses, tokens, backlog import, errors."""

from __future__ import annotations

import mailbox
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailintake.config import Settings
from mailintake.models import Message
from mailintake.services import build_services

from .conftest import wait_for
from .mails import make_message, send


def run_cli(
    settings: Settings, *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MAILINTAKE_DATABASE_URL=settings.database_url)
    result = subprocess.run(
        [sys.executable, "-m", "mailintake", *args, "--data-dir", str(settings.data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        input=stdin,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _stored(settings: Settings) -> list[Message]:
    services = build_services(settings)
    try:
        with Session(services.engine) as session:
            return list(session.scalars(select(Message).order_by(Message.received_at)))
    finally:
        services.close()


class TestAddressCommands:
    def test_add_list_disable_enable(self, settings: Settings) -> None:
        assert "added 総務課 (文書記号 総務)" in run_cli(settings, "section", "add", "総務課").stdout
        assert (
            "added soumu@city.example.jp (総務課)"
            in run_cli(
                settings, "address", "add", "Soumu@City.Example.JP", "--section", "総務課", "--label", "総務課代表"
            ).stdout
        )
        listing = run_cli(settings, "address", "list").stdout
        assert "soumu@city.example.jp\tenabled \t総務課\t0 messages\tlast -  総務課代表" in listing
        run_cli(settings, "address", "disable", "soumu@city.example.jp")
        assert "disabled" in run_cli(settings, "address", "list").stdout
        run_cli(settings, "address", "enable", "SOUMU@city.example.jp")
        assert "enabled " in run_cli(settings, "address", "list").stdout

    def test_errors_are_clear_messages_with_a_nonzero_exit(self, settings: Settings) -> None:
        result = run_cli(settings, "address", "add", "not-an-address", "--section", "総務課", check=False)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            "error: 収受用アドレスとして使えません: 'not-an-address'（@ の前は英数字と . _ + - だけ、@ の後はドメイン名）"
        )
        assert "Traceback" not in result.stderr
        result = run_cli(settings, "address", "disable", "nobody@city.example.jp", check=False)
        assert result.returncode == 1 and "no such designated address" in result.stderr
        unknown = run_cli(settings, "address", "add", "a@city.example.jp", "--section", "総務課", check=False)
        assert unknown.returncode == 1 and "課「総務課」は登録されていません" in unknown.stderr  # never made on the fly
        run_cli(settings, "section", "add", "総務課")
        run_cli(settings, "address", "add", "a@city.example.jp", "--section", "総務課")
        result = run_cli(settings, "address", "add", "A@city.example.jp", "--section", "総務課", check=False)
        assert "already designated" in result.stderr

    def test_a_bad_config_file_is_reported(self, settings: Settings, tmp_path: Path) -> None:
        config = tmp_path / "bad.toml"
        config.write_text("smtp_prot = 25\n")
        result = run_cli(settings, "address", "list", "--config", str(config), check=False)
        assert result.returncode == 2
        assert "unknown setting(s)" in result.stderr and "smtp_prot" in result.stderr


class TestTokenCommands:
    def test_the_created_token_is_the_last_word_and_works(
        self, settings: Settings, services, designated: str, start_service
    ) -> None:
        token = run_cli(settings, "token", "create", "文書管理システム").stdout.split()[-1]
        service = start_service(settings)
        response = httpx.get(f"{service.base_url}/api/v1/messages", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        run_cli(settings, "token", "revoke", "文書管理システム")
        response = httpx.get(f"{service.base_url}/api/v1/messages", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401


class TestImport:
    @pytest.fixture
    def backlog(self, tmp_path: Path) -> dict[str, Path]:
        eml = tmp_path / "single.eml"
        eml.write_bytes(make_message(subject="単独のメール").replace(b"\r\n", b"\n"))
        mbox_path = tmp_path / "archive.mbox"
        box = mailbox.mbox(mbox_path)
        for i in range(3):
            box.add(make_message(subject=f"mbox のメール {i}"))
        box.flush()
        box.close()
        maildir_path = tmp_path / "Maildir"
        md = mailbox.Maildir(maildir_path)
        for i in range(2):
            md.add(make_message(subject=f"Maildir のメール {i}"))
        return {"eml": eml, "mbox": mbox_path, "maildir": maildir_path}

    def test_eml_mbox_and_maildir_are_imported_once(
        self, settings: Settings, services, designated: str, backlog: dict[str, Path]
    ) -> None:
        paths = [str(p) for p in backlog.values()]
        first = run_cli(settings, "import", "--address", designated, *paths)
        assert first.stdout.strip() == "6 found, 6 new (stored), 0 already stored"
        subjects = sorted(m.subject for m in _stored(settings))
        assert subjects == sorted(
            ["単独のメール"] + [f"mbox のメール {i}" for i in range(3)] + [f"Maildir のメール {i}" for i in range(2)]
        )
        second = run_cli(settings, "import", "--address", designated, *paths)
        assert second.stdout.strip() == "6 found, 0 new (stored), 6 already stored"
        assert len(_stored(settings)) == 6

    def test_imported_mail_keeps_its_original_arrival_time(
        self, settings: Settings, services, designated: str, tmp_path: Path
    ) -> None:
        eml = tmp_path / "old.eml"
        eml.write_bytes(
            b"Received: from mx.example.jp by mail.city.example.jp; Tue, 1 Apr 2025 09:15:00 +0900\n"
            b"Date: Mon, 31 Mar 2025 18:00:00 +0900\nSubject: old\n\nbody\n"
        )
        run_cli(settings, "import", "--address", designated, str(eml))
        (message,) = _stored(settings)
        assert message.received_at.isoformat() == "2025-04-01T00:15:00+00:00"
        assert message.client_address == "import"

    def test_import_to_an_unknown_address_is_refused(self, settings: Settings, backlog: dict[str, Path]) -> None:
        result = run_cli(settings, "import", "--address", "nobody@city.example.jp", str(backlog["eml"]), check=False)
        assert result.returncode == 1
        assert "no such designated address" in result.stderr

    def test_a_folder_that_is_not_a_maildir_is_refused(
        self, settings: Settings, services, designated: str, tmp_path: Path
    ) -> None:
        folder = tmp_path / "plain"
        folder.mkdir()
        result = run_cli(settings, "import", "--address", designated, str(folder), check=False)
        assert result.returncode == 1
        assert "not a Maildir" in result.stderr


class TestAddressAdministration:
    def test_edit_changes_section_and_label(self, settings: Settings) -> None:
        run_cli(settings, "section", "add", "総務課")
        run_cli(settings, "section", "add", "総務部総務課", "--symbol", "総総")
        run_cli(settings, "address", "add", "soumu@city.example.jp", "--section", "総務課")
        assert (
            "updated soumu@city.example.jp (総務部総務課)"
            in run_cli(
                settings, "address", "edit", "soumu@city.example.jp", "--section", "総務部総務課", "--label", "代表"
            ).stdout
        )
        assert "総務部総務課\t0 messages\tlast -  代表" in run_cli(settings, "address", "list").stdout

    def test_delete_only_while_no_mail_is_stored(
        self, settings: Settings, services, designated: str, start_service
    ) -> None:
        run_cli(settings, "section", "add", "人事課")
        run_cli(settings, "address", "add", "unused@city.example.jp", "--section", "人事課")
        assert (
            "deleted unused@city.example.jp" in run_cli(settings, "address", "delete", "unused@city.example.jp").stdout
        )
        service = start_service(settings)
        send(service.smtp_port, make_message())
        wait_for(lambda: services.messages.count() == 1, timeout=5)
        refused = run_cli(settings, "address", "delete", designated, check=False)
        assert refused.returncode == 1 and "disable it instead" in refused.stderr
        listing = run_cli(settings, "address", "list").stdout
        assert "1 messages\tlast 20" in listing and "unused@" not in listing
        stats = run_cli(settings, "address", "stats", designated, "--days", "3").stdout.splitlines()
        assert len(stats) == 3 and stats[-1].endswith("\t1")


class TestUserCommands:
    def test_add_list_disable_and_sign_in(self, settings: Settings) -> None:
        for section in ("総務課", "財政課"):
            run_cli(settings, "section", "add", section)
        added = run_cli(
            settings,
            "user",
            "add",
            "Sato",
            "--section",
            "総務課",
            "--section",
            "財政課",
            "--name",
            "佐藤 花子",
            "--password-stdin",
            stdin="long enough password\n",
        )
        assert "added sato (clerk; 総務課, 財政課)" in added.stdout
        assert run_cli(settings, "user", "list").stdout.splitlines() == [
            "sato\tclerk\t総務課,財政課\tenabled\t佐藤 花子"
        ]
        services = build_services(settings)
        try:
            assert services.accounts.authenticate("SATO", "long enough password") is not None
            assert services.accounts.authenticate("sato", "wrong password") is None
            run_cli(settings, "user", "disable", "sato")
            assert services.accounts.authenticate("sato", "long enough password") is None
        finally:
            services.close()
        assert "disabled" in run_cli(settings, "user", "list").stdout

    def test_short_passwords_and_unknown_roles_are_refused(self, settings: Settings) -> None:
        short = run_cli(settings, "user", "add", "sato", "--password-stdin", check=False, stdin="short\n")
        assert short.returncode == 1 and "10文字以上" in short.stderr
        role = run_cli(settings, "user", "add", "sato", "--role", "boss", "--no-password", check=False)
        assert role.returncode == 2 and "boss" in role.stderr
