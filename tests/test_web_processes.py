"""`mailintake web --processes N`: N processes answer on one port (a busy
web process uses about one core); the first one supervises the others,
starts again one that dies, and stops them all — on SIGTERM or SIGINT to
it or to the whole group, exit code 0 — and when it is killed outright
they end on their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from mailintake.config import Settings

from .conftest import _port_open, wait_for
from .test_shutdown import STOP_LIMIT_SECONDS, children


class WebProcesses:
    def __init__(self, settings: Settings, processes: int, log_path: Path, **environ: str) -> None:
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailintake", "web", "--data-dir", str(settings.data_dir),
                 "--http-port", str(settings.http_port), "--processes", str(processes)],
                env={"MAILINTAKE_LOG_LEVEL": "WARNING", **os.environ, "MAILINTAKE_DATABASE_URL": settings.database_url, **environ},
                stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        self.port = settings.http_port
        self.log_path = log_path
        wait_for(lambda: len(self.siblings()) == processes - 1 and _port_open(self.port), 30)

    def siblings(self) -> list[int]:
        return [pid for pid in children(self.proc.pid) if b"mailintake.web_siblings" in _cmdline(pid)]

    def healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        for pid in [self.proc.pid, *self.siblings()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def web_processes(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[Callable[[int], WebProcesses]]:
    started: list[WebProcesses] = []

    def start(processes: int, **environ: str) -> WebProcesses:
        started.append(WebProcesses(make_settings(), processes, tmp_path / "web.log", **environ))
        return started[-1]

    yield start
    for web in started:
        web.kill()


def test_the_siblings_answer_on_the_same_port_while_the_first_process_is_frozen(web_processes) -> None:
    web = web_processes(3)
    assert len(web.siblings()) == 2
    os.kill(web.proc.pid, signal.SIGSTOP)
    try:
        # Each connection is accepted by whichever process is free: only the siblings are.
        assert all(web.healthy() for _ in range(10))
    finally:
        os.kill(web.proc.pid, signal.SIGCONT)
    assert web.healthy()


def test_a_sibling_that_dies_is_started_again(web_processes) -> None:
    web = web_processes(2)
    (first,) = web.siblings()
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: len(web.siblings()) == 1 and web.siblings() != [first], 15)
    assert web.healthy()
    assert "starting it again" in web.log_path.read_text(errors="replace")


@pytest.mark.parametrize("how", ["SIGTERM to the main process", "SIGTERM to the group", "SIGINT"])
def test_all_web_processes_stop_cleanly(web_processes, how: str) -> None:
    web = web_processes(3)
    siblings = web.siblings()
    started = time.monotonic()
    if how == "SIGTERM to the group":
        os.killpg(web.proc.pid, signal.SIGTERM)
    else:
        os.kill(web.proc.pid, signal.SIGTERM if how.startswith("SIGTERM") else signal.SIGINT)
    assert web.proc.wait(STOP_LIMIT_SECONDS + 5) == 0, web.log_path.read_text(errors="replace")
    assert time.monotonic() - started < STOP_LIMIT_SECONDS
    assert not any(_alive(pid) for pid in siblings)
    assert not _port_open(web.port)


def test_the_siblings_end_when_the_first_process_is_killed(web_processes) -> None:
    web = web_processes(3)
    siblings = web.siblings()
    os.kill(web.proc.pid, signal.SIGKILL)
    web.proc.wait(10)
    wait_for(lambda: not any(_alive(pid) for pid in siblings), STOP_LIMIT_SECONDS)
    assert not _port_open(web.port)


def test_only_the_first_process_pushes_registrations(web_processes, tmp_path: Path) -> None:
    """Push mode hands each registration to the document system once: one pusher, not one per process."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    web = web_processes(3, MAILINTAKE_HANDOFF_PUSH_DIR=str(outbox), MAILINTAKE_LOG_LEVEL="INFO")
    wait_for(lambda: web.log_path.read_text(errors="replace").count("data in") == 3, 15)
    assert web.log_path.read_text(errors="replace").count("push mode into") == 1
