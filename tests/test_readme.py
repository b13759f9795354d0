"""The README's two commands do what it says, on a fresh clone."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from .conftest import free_port, wait_for
from .mails import make_message, send

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_the_readme_has_exactly_a_run_and_a_test_command() -> None:
    assert readme_commands() == ["make run", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    commands = [
        line for line in script.splitlines() if line and not line.startswith("#") and not line.startswith("set ")
    ]
    assert commands[-1] == "exec " + readme_commands()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_the_run_command_serves_on_a_fresh_clone(tmp_path: Path) -> None:
    """GIVEN a fresh clone WHEN `make run` is started THEN a mail sent with
    smtplib to a designated address is in the API within 2 s."""
    clone = tmp_path / "clone"
    if (ROOT / ".git").exists() and shutil.which("git"):
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        # The working tree under test may hold changes not yet committed.
        for path in ("Makefile", "pyproject.toml", "mailintake", "web"):
            src = ROOT / path
            if src.is_dir():
                shutil.copytree(src, clone / path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, clone / path)
    else:
        shutil.copytree(ROOT, clone, ignore=shutil.ignore_patterns(".venv", "var", "__pycache__"))

    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILINTAKE_")}
    # The embedded defaults, unless this machine already uses those ports.
    smtp_port = 2525 if _port_free(2525) else free_port()
    http_port = 8000 if _port_free(8000) else free_port()
    env.update(MAILINTAKE_SMTP_PORT=str(smtp_port), MAILINTAKE_HTTP_PORT=str(http_port))
    log = open(tmp_path / "run.log", "wb")
    run = subprocess.Popen(
        ["make", "run"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        cli = clone / ".venv" / "bin" / "mailintake"
        # Both: another process on this machine may hold the port meanwhile.
        wait_for(lambda: (cli.exists() and not _port_free(http_port)) or run.poll() is not None, 300, interval=0.2)
        assert run.poll() is None, (tmp_path / "run.log").read_text(errors="replace")
        subprocess.run([str(cli), "section", "add", "総務課"], cwd=clone, env=env, check=True)
        subprocess.run(
            [str(cli), "address", "add", "soumu@city.example.jp", "--section", "総務課"], cwd=clone, env=env, check=True
        )
        token = subprocess.run(
            [str(cli), "token", "create", "文書管理システム"],
            cwd=clone,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[-1]
        started = time.monotonic()
        send(smtp_port, make_message(subject="初めてのメール"))
        items = wait_for(
            lambda: httpx.get(
                f"http://127.0.0.1:{http_port}/api/v1/messages", headers={"Authorization": f"Bearer {token}"}
            ).json()["items"],
            timeout=2,
        )
        assert time.monotonic() - started < 2
        assert items[0]["subject"] == "初めてのメール"
        assert (clone / "var" / "mailintake.db").exists()
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGTERM)
            try:
                run.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait(10)
        log.close()
