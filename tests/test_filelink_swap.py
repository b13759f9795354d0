"""A sending system cannot make the engine deliver what it may not read, nor
stop it: an outbox file swapped, between the engine's check and its claim,
for a symbolic link, a FIFO or a hard link is refused into the sender's
error folder, never read, and the scan goes on."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from filelink import permissions
from filelink.config import Config
from filelink.engine import Engine

from .linkage import (
    ENGINE_USER,
    group_name,
    in_process_as,
    python_as,
    shared_base,
    tree_config,
    user_name,
)

SECRET = b"ENGINE-ONLY SECRET 0123456789"
DESTINATIONS = ("kyuyo", "shomu", "bunsho", "zaimu")


def secret_file(config: Config) -> Path:
    """A file only the engine's account may read, in its state folder."""
    path = config.state_dir / "engine-secret.txt"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


def everything_delivered(config: Config) -> dict[str, bytes]:
    route = config.routes[0]
    out = {}
    for destination in DESTINATIONS:
        for path in config.inbox(route, destination).iterdir():
            if path.is_file() and not path.is_symlink():
                out[f"{destination}/{path.name}"] = path.read_bytes()
    return out


SWAPS: dict[str, Callable[[Path, Path], None]] = {
    "symbolic link": lambda target, secret: os.symlink(secret, target),
    "FIFO": lambda target, secret: os.mkfifo(target),
    "hard link": lambda target, secret: os.link(secret, target),
}


@pytest.fixture
def engine_tree(tmp_path: Path, acl_tools: None) -> Iterator[tuple[Config, Engine]]:
    config = tree_config(tmp_path)
    permissions.apply(config)
    engine = Engine(config)
    yield config, engine
    engine.close()


@pytest.mark.parametrize("swap", sorted(SWAPS))
def test_a_file_swapped_after_the_check_is_refused_and_never_read(
    engine_tree: tuple[Config, Engine], swap: str
) -> None:
    """GIVEN a regular file the engine has found complete WHEN the sender
    swaps it for a link to the engine's secret, a FIFO or a hard link before
    the claim THEN nothing is delivered, the entry is in the error folder
    with a reason, and processing returns at once."""
    config, engine = engine_tree
    route = config.routes[0]
    secret = secret_file(config)
    outbox = config.outbox(route)
    (outbox / "IDOU.csv").write_bytes(b"1001,ok\r\n")
    [found] = engine.complete_files(route)
    swapped = outbox / ".swap"
    SWAPS[swap](swapped, secret)
    os.replace(swapped, found)  # the swap, inside the window

    transfer = engine.claim(route, found)
    assert transfer is not None
    worker = threading.Thread(target=engine.process, args=(transfer,), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "the engine blocked on the swapped entry"

    assert everything_delivered(config) == {}
    refused = [p for p in config.error_dir(route.source).iterdir() if not p.name.endswith(".reason.txt")]
    assert len(refused) == 1
    reasons = " ".join(p.read_text(encoding="utf-8") for p in config.error_dir(route.source).glob("*.reason.txt"))
    assert "受け付けません" in reasons
    assert secret.read_bytes() == SECRET  # untouched, and still where it was
    # The engine goes on: the next file is delivered everywhere.
    (outbox / "NEXT.csv").write_bytes(b"1002,next\r\n")
    engine.scan_once()
    assert sorted(everything_delivered(config)) == sorted(f"{d}/NEXT.csv" for d in DESTINATIONS)


SENDER_LOOP = """
import os, sys
outbox, secret, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(rounds):
    name = os.path.join(outbox, f"a{i}.csv")
    tmp = os.path.join(outbox, f".a{i}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(b"1001,ok\\r\\n")
    os.rename(tmp, name)
    swap = os.path.join(outbox, f".s{i}.tmp")
    if i % 2:
        os.symlink(secret, swap)
    else:
        os.mkfifo(swap)
    try:
        os.replace(swap, name)
    except FileNotFoundError:
        os.unlink(swap)
with open(os.path.join(outbox, ".final.tmp"), "wb") as fh:
    fh.write(b"final\\r\\n")
os.rename(os.path.join(outbox, ".final.tmp"), os.path.join(outbox, "final.csv"))
"""


@pytest.mark.slow
def test_a_live_engine_under_a_swapping_sender_delivers_nothing_foreign_and_keeps_going(
    filelink_accounts: None,
) -> None:
    """GIVEN the engine running as its own account and 人事's account
    writing files and swapping each for a link to the engine's secret or a
    FIFO, 300 times WHEN the sender then writes an ordinary file THEN no
    inbox ever holds the secret and the ordinary file reaches everyone."""
    with shared_base() as base:
        config = tree_config(base, account=ENGINE_USER, group_of=group_name)
        permissions.apply(config)
        secret = secret_file(config)
        os.chown(secret, *_ids(ENGINE_USER))
        route = config.routes[0]

        def engine_until_final() -> None:
            engine = Engine(config)
            stop = threading.Event()
            deadline = time.monotonic() + 60

            def watch() -> None:
                while time.monotonic() < deadline:
                    if all((config.inbox(route, d) / "final.csv").exists() for d in DESTINATIONS):
                        break
                    time.sleep(0.05)
                stop.set()

            threading.Thread(target=watch, daemon=True).start()
            try:
                engine.run(stop)
            finally:
                engine.close()

        pid_done: list[int] = []
        runner = threading.Thread(target=lambda: pid_done.append(in_process_as(ENGINE_USER, engine_until_final)))
        runner.start()
        sent = python_as(user_name("jinji"), SENDER_LOOP, str(config.outbox(route)), str(secret), "300")
        assert sent.returncode == 0, sent.stderr
        runner.join(90)
        assert pid_done == [0]
        delivered = everything_delivered(config)
        assert SECRET not in delivered.values()
        assert all(delivered.get(f"{d}/final.csv") == b"final\r\n" for d in DESTINATIONS)


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid
