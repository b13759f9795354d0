"""What the service writes to its log (the journal, under systemd): one
line per event, each once; one line per HTTP request only when asked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from mailintake.config import Settings

from .conftest import wait_for


def serve_and_log(settings: Settings, tmp_path: Path, **env: str) -> list[str]:
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailintake", "serve", "--data-dir", str(settings.data_dir),
             "--smtp-port", str(settings.smtp_port), "--http-port", str(settings.http_port)],
            env=dict(os.environ, MAILINTAKE_CONFIG="", MAILINTAKE_LOG_LEVEL="INFO", **env),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{settings.http_port}"
        wait_for(lambda: "data in" in log.read_text(errors="replace"), 30)
        for _ in range(2):
            assert httpx.get(f"{base}/login").status_code == 200
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return log.read_text(errors="replace").splitlines()


def messages(lines: list[str]) -> list[str]:
    """The lines without their time stamps."""
    return [line.split(" ", 2)[2] if line[:2] == "20" else line for line in lines]


@pytest.mark.slow
def test_each_event_is_logged_once_and_requests_only_with_access_log(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    quiet = messages(serve_and_log(make_settings(), tmp_path))
    assert not [m for m in quiet if "GET /login" in m]
    for event in ("SMTP relay on", "web/API on", "SIGTERM received; stopping", "stopped"):
        assert sum(event in m for m in quiet) == 1, (event, quiet)
    assert len(quiet) == len(set(quiet)), quiet
    assert not [m for m in quiet if "Traceback" in m]

    logged = messages(serve_and_log(make_settings(), tmp_path, MAILINTAKE_ACCESS_LOG="true"))
    assert len([m for m in logged if "GET /login" in m and "200" in m]) == 2
