"""Exactly once across kill -9: 1,000 files to 4 destinations, the engine
killed twice mid-delivery; no final name ever shows a partial file. And a
SIGTERM right after deliveries stops it cleanly, with nothing in its log."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from filelink import permissions
from filelink.journal import Journal

from .conftest import wait_for
from .linkage import config_data, tree_config, write_config

FILES = 1000
DESTINATIONS = ("kyuyo", "shomu", "bunsho", "zaimu")


def _start(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "filelink", "run", "--config", str(config_path), "--log-level", "WARNING"],
            stdout=out,
            stderr=out,
        )


def test_kill_9_during_delivery_leaves_each_file_exactly_once_in_every_destination(
    tmp_path: Path, acl_tools: None
) -> None:
    config = tree_config(tmp_path)
    permissions.apply(config)
    data = config_data(config)
    data["engine"]["rescan_seconds"] = 0.5
    config_path = write_config(data, tmp_path / "filelink.toml")
    route = config.routes[0]
    outbox = config.outbox(route)
    inboxes = [config.inbox(route, d) for d in DESTINATIONS]

    expected: dict[str, str] = {}
    for i in range(FILES):
        body = os.urandom(2048 + i % 4096)
        name = f"IDOU_{i:04d}.csv"
        expected[name] = hashlib.sha256(body).hexdigest()
        (outbox / f".{name}.tmp").write_bytes(body)
        os.rename(outbox / f".{name}.tmp", outbox / name)

    violations: list[str] = []
    watching = threading.Event()
    watching.set()

    def observe() -> None:
        while watching.is_set():
            for inbox in inboxes:
                for entry in os.scandir(inbox):
                    if entry.name.startswith("."):
                        continue
                    try:
                        digest = hashlib.sha256(Path(entry.path).read_bytes()).hexdigest()
                    except FileNotFoundError:
                        continue
                    if expected.get(entry.name) != digest:
                        violations.append(f"{inbox.parent.parent.name}/{entry.name}")

    observer = threading.Thread(target=observe, daemon=True)
    observer.start()

    def delivered() -> int:
        return sum(sum(1 for e in os.scandir(inbox) if not e.name.startswith(".")) for inbox in inboxes)

    log = tmp_path / "engine.log"
    for kill_after in (600, 2200):
        engine = _start(config_path, log)
        wait_for(lambda n=kill_after, e=engine: delivered() >= n or e.poll() is not None, 120, interval=0.005)
        assert engine.poll() is None, log.read_text(errors="replace")
        engine.send_signal(signal.SIGKILL)
        engine.wait(10)
        assert delivered() < FILES * len(DESTINATIONS), "killed too late to test anything"

    engine = _start(config_path, log)
    wait_for(lambda: delivered() == FILES * len(DESTINATIONS) and not any(outbox.iterdir()), 180)
    engine.send_signal(signal.SIGTERM)
    assert engine.wait(30) == 0, log.read_text(errors="replace")
    watching.clear()
    observer.join(10)

    assert violations == []
    for inbox in inboxes:
        names = sorted(p.name for p in inbox.iterdir())
        assert names == sorted(expected), f"{inbox}: {len(names)} entries"
        for path in inbox.iterdir():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == expected[path.name]
    assert list(config.work_dir.iterdir()) == []
    journal = Journal(config.journal_path)
    try:
        assert journal.unfinished() == []
    finally:
        journal.close()


def test_a_stop_right_after_deliveries_is_clean(tmp_path: Path, acl_tools: None) -> None:
    """SIGTERM while the watcher still has events: exit 0, no error in the log."""
    config = tree_config(tmp_path)
    permissions.apply(config)
    config_path = write_config(config_data(config), tmp_path / "filelink.toml")
    route = config.routes[0]
    outbox, inbox = config.outbox(route), config.inbox(route, DESTINATIONS[0])
    log = tmp_path / "engine.log"
    for round_ in range(3):
        engine = _start(config_path, log)
        wait_for(lambda: log.exists(), 10)
        time.sleep(1.0)  # the watcher is up
        for i in range(30):
            name = f"STOP_{round_}_{i:02d}.csv"
            (outbox / f".{name}.tmp").write_bytes(b"x")
            os.rename(outbox / f".{name}.tmp", outbox / name)
            time.sleep(0.02)
        wait_for(lambda r=round_: (inbox / f"STOP_{r}_29.csv").exists(), 30)
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(20) == 0
    assert "ERROR" not in log.read_text(errors="replace"), log.read_text(errors="replace")
