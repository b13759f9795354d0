"""Two nodes behind a real Postfix, on one PostgreSQL with the database blob
store: node A is killed with ``kill -9`` while 1,000 mails come through
Postfix and is restarted later. Every mail is stored exactly once; a clerk
signed in through node B opens and downloads what node A received; the
search indexer and the hand-off writer run on one node at a time and move
to node B within seconds of the kill."""

from __future__ import annotations

import hashlib
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import func, select

from mailintake.config import Settings
from mailintake.leases import lease_key
from mailintake.models import Message
from mailintake.records.registry import RegistrationRequest
from mailintake.services import build_services

from .conftest import ServiceProcess, free_port, require, wait_for
from .factories import designate, make_user
from .mails import make_message
from .postfix_instance import PostfixInstance, ensure_postfix
from .web import add_user

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

MAILS = 1000
KILL_AT, RESTART_AT = 300, 700
TAKEOVER_LIMIT = 10.0
SOUMU = "soumu@city.example.jp"


def postfix_to(relays: list[Settings], base: Path) -> PostfixInstance:
    """A Postfix whose transport lists both nodes, as `mta-config` writes it."""
    instance = PostfixInstance(base / "postfix", free_port())
    instance.etc.mkdir(parents=True, exist_ok=True)
    relay_options = [arg for node in relays for arg in ("--relay", f"127.0.0.1:{node.smtp_port}")]
    generated = subprocess.run(
        [sys.executable, "-m", "mailintake", "mta-config", "postfix", "--mode", "divert", *relay_options,
         "--output", str(instance.etc), "--map-dir", str(instance.etc), "--data-dir", str(relays[0].data_dir)],
        capture_output=True, text=True, check=True,
        env=dict(os.environ, MAILINTAKE_DATABASE_URL=relays[0].database_url),
    )  # fmt: skip
    assert ", [127.0.0.1]:" in (instance.etc / "mailintake_transport").read_text(), generated.stdout
    instance.configure((instance.etc / "main.cf").read_text())
    instance.start()
    return instance


class LeaseWatch:
    """Which node's process holds each lease, seen from PostgreSQL (the
    holder's session is named after its process), sampled in a thread."""

    def __init__(self, url: str, names: tuple[str, ...]) -> None:
        self.engine = sqlalchemy.create_engine(url)
        with self.engine.connect() as conn:
            schema = str(conn.scalar(sqlalchemy.text("SELECT current_schema()")))
        self.keys = {name: lease_key(name, schema) for name in names}
        self.samples: list[tuple[float, dict[str, list[int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def holders(self, name: str) -> list[int]:
        """The process groups (nodes) of the sessions holding ``name``."""
        key = self.keys[name]
        with self.engine.connect() as conn:
            names = conn.scalars(
                sqlalchemy.text(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                    "AND l.classid::bigint = :high AND l.objid::bigint = :low"
                ),
                {"high": key >> 32, "low": key & 0xFFFFFFFF},
            ).all()
        groups = []
        for application_name in names:
            pid = int(application_name.rsplit(" ", 1)[1])
            try:
                groups.append(os.getpgid(pid))
            except ProcessLookupError:
                groups.append(-pid)  # a session whose process is gone (not yet noticed)
        return groups

    def start(self) -> LeaseWatch:
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.samples.append((time.monotonic(), {name: self.holders(name) for name in self.keys}))

    def first_held_by(self, group: int, name: str, after: float) -> float | None:
        for at, holders in self.samples:
            if at >= after and holders[name] == [group]:
                return at - after
        return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.engine.dispose()


@pytest.fixture
def cluster(postgres_url: str, make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[dict[str, Any]]:
    require(ensure_postfix(), "Debian package postfix not installable")
    outbox = tmp_path / "outbox"  # the linkage engine's folder, shared by the nodes
    outbox.mkdir(mode=0o700)
    nodes = {
        name: make_settings(
            database_url=postgres_url,
            data_dir=tmp_path / f"node-{name}",
            blob_store="database",
            handoff_push_dir=outbox,
        )
        for name in ("a", "b")
    }
    services = build_services(nodes["a"])
    designate(services, SOUMU, "総務課")
    add_user(services, "sato", ["総務課"])
    processes = {name: ServiceProcess(settings, tmp_path / f"node-{name}.log") for name, settings in nodes.items()}
    base = Path(tempfile.mkdtemp(prefix="mailintake-postfix-"))
    base.chmod(0o755)  # Postfix's own users reach the queue
    postfix = None
    try:
        processes["a"].start()
        postfix = postfix_to([nodes["a"], nodes["b"]], base)
        yield {"services": services, "nodes": nodes, "processes": processes, "postfix": postfix, "outbox": outbox}
    finally:
        if postfix is not None:
            postfix.stop()
        for process in processes.values():
            process.terminate()
        services.close()
        shutil.rmtree(base, ignore_errors=True)


def test_two_nodes_behind_postfix_store_every_mail_once_while_one_is_killed_and_restarted(
    cluster: dict[str, Any], postgres_url: str, browsers: Any
) -> None:
    services, postfix = cluster["services"], cluster["postfix"]
    node_a, node_b = cluster["processes"]["a"], cluster["processes"]["b"]
    client = smtplib.SMTP("127.0.0.1", postfix.port, timeout=60)
    pdf = b"%PDF-1.4 received by node A " + os.urandom(4000)

    # A mail only node A can take: node B is not running yet.
    client.sendmail("kikaku@example.co.jp", [SOUMU], make_message(subject="ノードAが受けたメール",
                    to=SOUMU, attachments=[("ノードAの資料.pdf", pdf, "application/pdf")]))  # fmt: skip
    wait_for(lambda: services.messages.count() == 1, 60)
    with services.engine.connect() as conn:
        first, raw_sha256, received_at = conn.execute(select(Message.id, Message.raw_sha256, Message.received_at)).one()
    node_b.start()
    watch = LeaseWatch(postgres_url, ("search-indexer", "handoff-push")).start()
    try:
        group_a = node_a.proc.pid
        wait_for(
            lambda: watch.holders("search-indexer") == [group_a] and watch.holders("handoff-push") == [group_a], 30
        )

        killed_at = 0.0
        for i in range(MAILS):
            if i == KILL_AT:
                node_a.kill()
                killed_at = time.monotonic()
                served_by_b = _clerk_downloads_through(browsers, cluster["nodes"]["b"], first, pdf, raw_sha256)
            if i == RESTART_AT:
                node_a.start()
            client.sendmail("kikaku@example.co.jp", [SOUMU], make_message(subject=f"二台構成 {i:04d}", to=SOUMU))
        client.quit()

        group_b = node_b.proc.pid
        wait_for(lambda: watch.holders("search-indexer") == [group_b], 30)
        wait_for(lambda: _all_in(services, cluster, MAILS + 1), 300, interval=1.0)
    finally:
        watch.stop()

    # Every mail exactly once.
    with services.engine.connect() as conn:
        subjects = conn.execute(select(Message.subject, func.count()).group_by(Message.subject)).all()
    counts = dict(subjects)
    assert len(counts) == MAILS + 1 and set(counts.values()) == {1}
    assert all(counts.get(f"二台構成 {i:04d}") == 1 for i in range(MAILS))

    # Node B served node A's mail while node A was dead.
    assert served_by_b

    # Each lease had one holder at every sample, and moved to node B within seconds.
    assert all(len(holders[name]) <= 1 for _, holders in watch.samples for name in holders)
    for name in ("search-indexer", "handoff-push"):
        moved = watch.first_held_by(group_b, name, killed_at)
        assert moved is not None and moved <= TAKEOVER_LIMIT, (name, moved)
        print(f"{name}: on node B {moved:.1f} s after the kill")
    # Restarted, node A waits: the leases stay with node B.
    assert watch.samples[-1][1] == {"search-indexer": [group_b], "handoff-push": [group_b]}

    # The hand-off writer works on node B: a registration reaches the outbox.
    clerk = make_user(services, "suzuki", password=None, sections=["総務課"])
    services.registry.register(clerk, [RegistrationRequest(message_id=first, subject="ノードAが受けたメール",
                               sender="企画課", received_on=received_at.date(),
                               retention="1年")])  # fmt: skip
    wait_for(lambda: any(cluster["outbox"].iterdir()), 30)


def _clerk_downloads_through(browsers: Any, node: Settings, message_id: int, pdf: bytes, raw_sha256: str) -> bool:
    """A clerk signed in through node B opens node A's mail and downloads its
    attachment and original."""
    clerk = browsers(f"http://127.0.0.1:{node.http_port}")
    assert clerk.login("sato").status_code == 303
    page = clerk.get(f"/messages/{message_id}")
    assert page.status_code == 200 and "ノードAの資料.pdf" in page.text
    link = page.text.split(f'href="/messages/{message_id}/attachments/', 1)[1].split('"', 1)[0]
    attachment = clerk.get(f"/messages/{message_id}/attachments/{link}")
    original = clerk.get(f"/messages/{message_id}/original.eml")
    return (
        attachment.status_code == 200
        and attachment.content == pdf
        and original.status_code == 200
        and hashlib.sha256(original.content).hexdigest() == raw_sha256
    )


def _all_in(services: Any, cluster: dict[str, Any], expected: int) -> bool:
    from mailintake.intake.spool import Spool

    if "Mail queue is empty" not in cluster["postfix"].queue():
        cluster["postfix"].flush()
        return False
    spools_empty = all(Spool(s.spool_dir).backlog() == 0 for s in cluster["nodes"].values())
    return spools_empty and services.messages.count() == expected
