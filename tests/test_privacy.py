"""Mail is personal data: whatever the caller's umask, everything the
service, the CLI and `backup` store is readable by the service account
only; generated MTA commands go where only their owner can write; root is
stopped before it writes into the service account's data folder."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

from mailintake.config import Settings

from .conftest import ServiceProcess, require, wait_for
from .mails import make_message, send

SOUMU = "soumu@city.example.jp"


def cli(settings: Settings, *args: str, umask: int = 0o022, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mailintake", *args, "--data-dir", str(settings.data_dir)],
        env=dict(os.environ, MAILINTAKE_DATABASE_URL=settings.database_url, MAILINTAKE_CONFIG=""),
        capture_output=True,
        timeout=120,
        preexec_fn=lambda: os.umask(umask),
        **kwargs,  # type: ignore[arg-type]
    )


def open_to_others(root: Path) -> list[str]:
    """Every file or folder under ``root`` (itself included) that group or
    others can read, write or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if mode & 0o077:
            found.append(f"{path.relative_to(root)} {stat.filemode(mode)}")
    return found


def test_data_and_backups_are_private_under_a_permissive_umask(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """GIVEN umask 022 WHEN an address is added, `serve` stores a mail with
    an attachment and `backup` copies everything THEN every file is 0600 and
    every folder 0700 (database, spool, originals, blobs, metrics, backup)."""
    settings = make_settings()
    assert cli(settings, "section", "add", "総務課").returncode == 0
    assert cli(settings, "address", "add", SOUMU, "--section", "総務課").returncode == 0
    old = os.umask(0o022)
    try:
        service = ServiceProcess(settings, tmp_path / "service.log").start()
    finally:
        os.umask(old)
    try:
        send(settings.smtp_port, make_message(attachments=[("資料.pdf", b"%PDF-1.4 private", "application/pdf")]))
        wait_for(
            lambda: (
                any((settings.data_dir / "blobs").rglob("*"))
                and not any((settings.data_dir / "spool" / "new").iterdir())
            ),
            30,
        )
        backup = tmp_path / "backup"
        made = cli(settings, "backup", str(backup))
        assert made.returncode == 0, made.stderr
    finally:
        service.terminate()
    stored = [p.name for p in settings.data_dir.rglob("*") if p.is_file()]
    assert "mailintake.db" in stored and len(stored) >= 5
    assert open_to_others(settings.data_dir) == []
    assert open_to_others(backup) == []


def test_generated_mta_commands_are_written_only_into_a_private_folder(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    assert cli(settings, "section", "add", "総務課").returncode == 0
    assert cli(settings, "address", "add", SOUMU, "--section", "総務課").returncode == 0

    private = tmp_path / "mta"
    written = cli(settings, "mta-config", "postfix", "--output", str(private))
    assert written.returncode == 0, written.stderr
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert stat.S_IMODE((private / "commands.sh").stat().st_mode) == 0o700
    assert open_to_others(private) == []

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    refused = cli(settings, "mta-config", "postfix", "--output", str(shared))
    assert refused.returncode != 0 and b"writable by others" in refused.stderr
    assert list(shared.iterdir()) == []

    link = tmp_path / "link"
    link.symlink_to(private)
    assert cli(settings, "mta-config", "postfix", "--output", str(link)).returncode != 0

    streamed = cli(settings, "mta-config", "postfix", "--output", "-")
    assert streamed.returncode == 0
    with tarfile.open(fileobj=io.BytesIO(streamed.stdout)) as tar:
        names = tar.getnames()
        commands = tar.getmember("commands.sh")
    assert "commands.sh" in names and "main.cf" in names and commands.mode == 0o700


def test_root_is_refused_in_a_data_folder_owned_by_the_service_account(
    make_settings: Callable[..., Settings],
) -> None:
    require(os.geteuid() == 0, "only root can be refused; the tests run as root")
    settings = make_settings()
    assert cli(settings, "section", "add", "総務課").returncode == 0
    assert cli(settings, "address", "add", SOUMU, "--section", "総務課").returncode == 0
    os.chown(settings.data_dir, 65534, 65534)  # nobody
    try:
        refused = cli(settings, "address", "list")
    finally:
        os.chown(settings.data_dir, 0, 0)
    assert refused.returncode == 1
    message = refused.stderr.decode()
    assert "root ではなく" in message and "sudo -u nobody" in message
