"""A real Postfix relays designated addresses to mailintake through the
configuration `mailintake mta-config postfix` generates."""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from mailintake.services import build_services
from tests.factories import designate

from .conftest import ServiceThread, free_port, require, wait_for
from .mails import make_message
from .postfix_instance import PostfixInstance, ensure_postfix

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postfix_available() -> bool:
    return ensure_postfix()


@pytest.fixture
def intake(make_settings):
    """Settings with two designated addresses, and an API token."""
    settings = make_settings()
    services = build_services(settings)
    designate(services, "soumu@city.example.jp", "総務課")
    designate(services, "jinji@city.example.jp", "人事課")
    token = services.tokens.create("postfix-test")
    services.close()
    return settings, token


@pytest.fixture
def postfix_with(postfix_available: bool, intake):
    require(postfix_available, "Debian package postfix not installable")
    settings, _ = intake
    started: list[PostfixInstance] = []
    # Not under pytest's tmp_path: its folders are 0700 and Postfix's own
    # users must reach the queue and mailboxes.
    base = Path(tempfile.mkdtemp(prefix="mailintake-postfix-"))
    base.chmod(0o755)

    def factory(mode: str) -> PostfixInstance:
        instance = PostfixInstance(base / f"postfix-{mode}", free_port())
        instance.etc.mkdir(parents=True, exist_ok=True)
        generated = subprocess.run(
            [
                sys.executable,
                "-m",
                "mailintake",
                "mta-config",
                "postfix",
                "--mode",
                mode,
                "--relay",
                f"127.0.0.1:{settings.smtp_port}",
                "--output",
                str(instance.etc),
                "--map-dir",
                str(instance.etc),
                "--data-dir",
                str(settings.data_dir),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, MAILINTAKE_DATABASE_URL=settings.database_url),
        )
        assert "wrote" in generated.stdout
        # mta-config wrote its lines as etc/main.cf; configure() writes the
        # instance's full main.cf with them appended.
        instance.configure((instance.etc / "main.cf").read_text())
        instance.start()
        started.append(instance)
        return instance

    yield factory
    for instance in started:
        instance.stop()
    shutil.rmtree(base, ignore_errors=True)


def _submit(instance: PostfixInstance, rcpt: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", instance.port, timeout=30) as client:
        client.sendmail("sender@example.co.jp", [rcpt], make_message(subject=subject, to=rcpt))


def _stored(settings, token: str) -> list[dict]:
    response = httpx.get(
        f"http://127.0.0.1:{settings.http_port}/api/v1/messages", headers={"Authorization": f"Bearer {token}"}
    )
    return response.json()["items"]


@pytest.mark.parametrize("mode", ["copy", "divert"])
def test_designated_mail_reaches_mailintake_and_other_mail_does_not(
    mode: str, intake, postfix_with, start_service
) -> None:
    settings, token = intake
    start_service(settings)
    postfix = postfix_with(mode)
    _submit(postfix, "soumu@city.example.jp", "総務課あての文書")
    _submit(postfix, "other@city.example.jp", "ほかの人あて")
    items = wait_for(lambda: _stored(settings, token), timeout=20, interval=0.2)
    assert [(i["address"], i["subject"]) for i in items] == [("soumu@city.example.jp", "総務課あての文書")]
    wait_for(lambda: postfix.mailbox("other"), timeout=20, interval=0.2)
    time.sleep(1)  # anything else would have arrived by now
    assert len(_stored(settings, token)) == 1
    if mode == "copy":
        kept = wait_for(lambda: postfix.mailbox("soumu"), timeout=20, interval=0.2)
        assert len(kept) == 1  # the mailbox keeps its mail
    else:
        assert postfix.mailbox("soumu") == []


def test_postfix_defers_while_mailintake_is_down_and_delivers_once_after(intake, postfix_with, tmp_path: Path) -> None:
    settings, token = intake
    postfix = postfix_with("divert")
    _submit(postfix, "jinji@city.example.jp", "停止中に届いた異動情報")
    wait_for(lambda: "status=deferred" in postfix.tail(), timeout=30, interval=0.2)
    assert "jinji@city.example.jp" in postfix.queue()

    service = ServiceThread(settings).start()
    try:
        postfix.flush()
        items = wait_for(lambda: _stored(settings, token), timeout=30, interval=0.2)
        wait_for(lambda: "Mail queue is empty" in postfix.queue(), timeout=30, interval=0.2)
        time.sleep(1)
        items = _stored(settings, token)
        assert [(i["address"], i["subject"]) for i in items] == [("jinji@city.example.jp", "停止中に届いた異動情報")]
    finally:
        service.stop()


def _probe(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailintake", "probe", *args, "--data-dir", str(settings.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, MAILINTAKE_DATABASE_URL=settings.database_url),
    )


def test_a_probe_through_postfix_reports_its_arrival_and_stays_out_of_lists(
    intake, postfix_with, start_service
) -> None:
    settings, token = intake
    start_service(settings)
    postfix = postfix_with("divert")
    result = _probe(settings, "soumu@city.example.jp", "--via", f"127.0.0.1:{postfix.port}", "--timeout", "30")
    assert result.returncode == 0, result.stderr
    assert "arrived in" in result.stdout
    assert _stored(settings, token) == []  # not in the lists


def test_a_probe_that_does_not_arrive_is_reported(intake, postfix_with) -> None:
    settings, _ = intake
    postfix = postfix_with("divert")  # mailintake is not running: Postfix defers
    result = _probe(settings, "soumu@city.example.jp", "--via", f"127.0.0.1:{postfix.port}", "--timeout", "3")
    assert result.returncode == 1
    assert "not arrived within 3 s" in result.stderr
