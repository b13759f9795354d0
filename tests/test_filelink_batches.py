"""The files of one scan travel together: one journal commit for all their
claims, one for all their final names, one for all their completions, and
each inbox made durable once. A crash at any point inside a batch still
leaves every file exactly once in every destination, and nothing behind."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import filelink.engine as engine_module
from filelink import permissions
from filelink.config import Config
from filelink.engine import Engine

from .linkage import tree_config

FILES = 12
DESTINATIONS = ("kyuyo", "shomu", "bunsho", "zaimu")


class Crash(BaseException):
    """The process dies here (nothing after this point runs)."""


@pytest.fixture
def config(tmp_path: Path, acl_tools: None) -> Config:
    made = tree_config(tmp_path)
    permissions.apply(made)
    return made


@pytest.fixture
def engines(config: Config) -> Iterator[Callable[[], Engine]]:
    started: list[Engine] = []

    def start() -> Engine:
        started.append(Engine(config))
        return started[-1]

    yield start
    for engine in started:
        engine.close()


def drop_files(config: Config) -> dict[str, str]:
    outbox = config.outbox(config.routes[0])
    expected = {}
    for i in range(FILES):
        body = f"職員番号,氏名\r\n{i},山田 太郎\r\n".encode("cp932") + os.urandom(100 + i)
        name = f"IDOU_{i:03d}.csv"
        (outbox / f".{name}.tmp").write_bytes(body)
        os.rename(outbox / f".{name}.tmp", outbox / name)
        expected[name] = hashlib.sha256(body).hexdigest()
    return expected


def assert_each_file_once_everywhere(config: Config, expected: dict[str, str]) -> None:
    route = config.routes[0]
    for destination in DESTINATIONS:
        inbox = config.inbox(route, destination)
        found = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in inbox.iterdir()}
        assert found == expected, destination  # no second generation, no temporary name
    assert list(config.outbox(route).iterdir()) == []
    assert list(config.work_dir.iterdir()) == []
    assert len(list(config.archive_dir.rglob("*.data"))) == FILES


def test_one_scan_delivers_its_files_with_three_journal_commits(
    config: Config, engines: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = drop_files(config)
    engine = engines()
    commits: list[str] = []
    for name in ("begin_claims", "linking_many", "finish_many"):
        original = getattr(engine.journal, name)

        def counted(*args: Any, _original: Any = original, _name: str = name) -> Any:
            commits.append(_name)
            return _original(*args)

        monkeypatch.setattr(engine.journal, name, counted)
    assert engine.scan_once() == FILES
    assert commits == ["begin_claims", "linking_many", "finish_many"]
    assert_each_file_once_everywhere(config, expected)
    assert engine.journal.unfinished() == []


def _crash_on_call(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, call: int, after: bool) -> None:
    original = getattr(owner, name)
    calls = {"n": 0}

    def crashing(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == call and not after:
            raise Crash(name)
        result = original(*args, **kwargs)
        if calls["n"] == call and after:
            raise Crash(name)
        return result

    monkeypatch.setattr(owner, name, crashing)


# (what, the call at which the process dies, before or after that call)
CRASH_POINTS = [
    ("begin_claims", 1, True),  # claims recorded, nothing renamed yet
    ("rename", 5, True),  # five files taken from the outbox
    ("copy_file", 7, True),  # temporary copies half made
    ("linking_many", 1, False),  # copies made, names not yet recorded
    ("linking_many", 1, True),  # names recorded, nothing linked
    ("link", 9, True),  # some final names exist
    ("fsync_dir", 1, False),  # all linked, inboxes not yet made durable
    ("rename", FILES + 6, True),  # half archived
    ("finish_many", 1, False),  # all archived, completion not recorded
    ("finish_many", 1, True),  # all done
]


@pytest.mark.parametrize(
    ("point", "call", "after"), CRASH_POINTS, ids=[f"{p}-{c}-{'after' if a else 'before'}" for p, c, a in CRASH_POINTS]
)
def test_a_crash_inside_a_batch_delivers_each_file_exactly_once_after_the_restart(
    config: Config,
    engines: Callable[[], Engine],
    monkeypatch: pytest.MonkeyPatch,
    point: str,
    call: int,
    after: bool,
) -> None:
    expected = drop_files(config)
    engine = engines()
    with monkeypatch.context() as patch:
        owner: Any = {
            "rename": engine_module.os,
            "link": engine_module.os,
            "copy_file": engine_module,
            "fsync_dir": engine_module,
        }.get(point, engine.journal)
        _crash_on_call(patch, owner, point, call, after)
        with pytest.raises(Crash):
            engine.scan_once()
    engine.close()

    restarted = engines()
    restarted.resume()
    restarted.scan_once()
    assert_each_file_once_everywhere(config, expected)
    assert restarted.journal.unfinished() == []
