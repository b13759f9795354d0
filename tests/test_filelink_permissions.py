"""Only the systems in an exchange may read, change or delete its files:
checked with real OS users and groups created by the test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from filelink import permissions
from filelink.config import Config
from filelink.engine import Engine

from .linkage import (
    ENGINE_USER,
    config_data,
    group_name,
    in_process_as,
    python_as,
    shared_base,
    tree_config,
    user_name,
    write_config,
)

KIND = "異動情報"
WRITE = "import sys; open(sys.argv[1], 'wb').write(b'x')"
READ = "import sys; open(sys.argv[1], 'rb').read()"
DELETE = "import os, sys; os.unlink(sys.argv[1])"
LIST = "import os, sys; os.listdir(sys.argv[1])"


@pytest.fixture
def tree(filelink_accounts: None) -> Iterator[Config]:
    with shared_base() as base:
        config = tree_config(base, account=ENGINE_USER, group_of=group_name)
        permissions.apply(config)
        yield config


def allowed(user: str, code: str, path: Path) -> bool:
    return python_as(user, code, str(path)).returncode == 0


def filelink(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    path = write_config(config_data(config), config.state_dir.parent / "filelink.toml")
    command = [sys.executable, "-m", "filelink", *args, "--config", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/")


class TestFolderPermissions:
    def test_init_leaves_nothing_for_check_to_report(self, tree: Config) -> None:
        result = filelink(tree, "check")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "permissions as intended" in result.stdout

    def test_the_sender_writes_its_outbox_and_nobody_else_does(self, tree: Config) -> None:
        route = tree.routes[0]
        jinji_outbox = tree.outbox(route)
        assert allowed(user_name("jinji"), WRITE, jinji_outbox / "IDOU.csv")
        for other in ("bunsho", "zaimu", "kyuyo"):
            assert not allowed(user_name(other), WRITE, jinji_outbox / f"{other}.csv"), other
            assert not allowed(user_name(other), READ, jinji_outbox / "IDOU.csv"), other
        # 人事 cannot write 文書管理's outbox either.
        assert not allowed(user_name("jinji"), WRITE, tree.outbox(tree.routes[1]) / "x.csv")

    def test_each_receiver_reads_and_deletes_only_its_own_inbox(self, tree: Config) -> None:
        route = tree.routes[0]
        # The engine runs as its own unprivileged account, and still reads a
        # file the sender wrote with umask 077 (the outbox's default ACL).
        assert python_as(user_name("jinji"), WRITE, str(tree.outbox(route) / "IDOU.csv"), umask=0o077).returncode == 0

        def deliver() -> None:
            engine = Engine(tree)
            try:
                engine.resume()
                engine.scan_once()
            finally:
                engine.close()

        assert in_process_as(ENGINE_USER, deliver) == 0
        for receiver in route.destinations:
            delivered = tree.inbox(route, receiver) / "IDOU.csv"
            assert delivered.read_bytes() == b"x"
            for other in ("jinji", "bunsho", "zaimu", "kyuyo", "shomu", "kobunshokan"):
                if other == receiver:
                    continue
                assert not allowed(user_name(other), READ, delivered), (other, receiver)
                assert not allowed(user_name(other), DELETE, delivered), (other, receiver)
                assert not allowed(user_name(other), LIST, tree.inbox(route, receiver)), (other, receiver)
            assert allowed(user_name(receiver), READ, delivered)
            assert allowed(user_name(receiver), DELETE, delivered)
        assert not allowed(user_name("kobunshokan"), LIST, tree.system_dir("jinji"))

    def test_check_finds_a_loosened_mode_and_a_removed_acl(self, tree: Config) -> None:
        route = tree.routes[0]
        loosened = tree.inbox(route, "bunsho")
        os.chmod(loosened, 0o2777)
        subprocess.run(["setfacl", "-b", str(tree.outbox(route))], check=True)
        result = filelink(tree, "check")
        assert result.returncode == 1
        assert f"{loosened}: mode 2777, expected 2770" in result.stdout
        assert f"{tree.outbox(route)}: ACL" in result.stdout
        assert allowed(user_name("zaimu"), LIST, loosened) is False  # still behind 0750 bunsho/inbox
        filelink(tree, "init")
        assert filelink(tree, "check").returncode == 0
