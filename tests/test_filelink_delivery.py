"""filelink delivery: complete files only, every destination exactly once,
atomically, with code conversion, refusals, conflicts, jobs and a log."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from filelink import permissions
from filelink.config import Config
from filelink.engine import Engine

from .linkage import tree_config

DESTINATIONS = ("kyuyo", "shomu", "bunsho", "zaimu")
KIND = "異動情報"


@pytest.fixture
def make_engine(tmp_path: Path, acl_tools: None) -> Iterator[Callable[..., tuple[Config, Engine]]]:
    engines: list[Engine] = []

    def factory(**route_options: Any) -> tuple[Config, Engine]:
        config = tree_config(tmp_path, **route_options)
        permissions.apply(config)
        engine = Engine(config)
        engines.append(engine)
        return config, engine

    yield factory
    for engine in engines:
        engine.close()


def outbox(config: Config) -> Path:
    return config.outbox(config.routes[0])


def inbox(config: Config, destination: str) -> Path:
    return config.inbox(config.routes[0], destination)


def drop(config: Config, name: str, data: bytes) -> Path:
    """A well-behaved writer: temporary name, then rename."""
    final = outbox(config) / name
    temporary = final.with_name("." + name + ".tmp")
    temporary.write_bytes(data)
    os.rename(temporary, final)
    return final


def delivered(config: Config, destination: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in inbox(config, destination).iterdir()}


class TestDelivery:
    def test_a_file_reaches_every_destination_once_byte_identical_and_is_archived(
        self, make_engine: Callable[..., tuple[Config, Engine]]
    ) -> None:
        config, engine = make_engine()
        data = "職員番号,氏名,異動後所属コード\r\n1001,山田 太郎,0120\r\n".encode("cp932")
        drop(config, "IDOU_20261121.csv", data)
        assert engine.scan_once() == 1
        for destination in DESTINATIONS:
            assert delivered(config, destination) == {"IDOU_20261121.csv": data}
            assert oct((inbox(config, destination) / "IDOU_20261121.csv").stat().st_mode & 0o777) == "0o640"
        assert list(outbox(config).iterdir()) == []
        assert list(config.work_dir.iterdir()) == []
        archived = list(config.archive_dir.rglob("*.data"))
        assert [p.read_bytes() for p in archived] == [data]
        lines = [json.loads(line) for line in config.log_path.read_text(encoding="utf-8").splitlines()]
        assert sorted(line["destination"] for line in lines if line["result"] == "delivered") == sorted(DESTINATIONS)
        assert {line["sha256"] for line in lines} == {hashlib.sha256(data).hexdigest()}
        assert engine.scan_once() == 0

    def test_a_second_file_of_the_same_name_becomes_a_new_generation(
        self, make_engine: Callable[..., tuple[Config, Engine]]
    ) -> None:
        config, engine = make_engine()
        drop(config, "SOSHIKI.csv", b"first\r\n")
        engine.scan_once()
        drop(config, "SOSHIKI.csv", b"second\r\n")
        engine.scan_once()
        assert delivered(config, "bunsho") == {"SOSHIKI.csv": b"first\r\n", "SOSHIKI.1.csv": b"second\r\n"}

    def test_with_on_conflict_error_an_existing_name_is_never_replaced_and_the_error_shows(
        self, make_engine: Callable[..., tuple[Config, Engine]]
    ) -> None:
        config, engine = make_engine(on_conflict="error")
        drop(config, "SOSHIKI.csv", b"first\r\n")
        engine.scan_once()
        drop(config, "SOSHIKI.csv", b"second\r\n")
        engine.scan_once()
        assert delivered(config, "bunsho") == {"SOSHIKI.csv": b"first\r\n"}
        status = engine.status()[0]
        assert status["retrying"] == 1 and "同名" in status["last_error"]
        # Once the receiver has taken the first file, the second follows.
        for destination in DESTINATIONS:
            (inbox(config, destination) / "SOSHIKI.csv").unlink()
        engine.resume()
        assert delivered(config, "bunsho") == {"SOSHIKI.csv": b"second\r\n"}

    def test_symlinks_and_other_special_entries_are_refused_not_followed(
        self, make_engine: Callable[..., tuple[Config, Engine]], tmp_path: Path
    ) -> None:
        config, engine = make_engine()
        secret = tmp_path / "secret.csv"
        secret.write_bytes(b"not for you")
        (outbox(config) / "link.csv").symlink_to(secret)
        os.mkfifo(outbox(config) / "pipe.csv")
        engine.scan_once()
        assert all(delivered(config, d) == {} for d in DESTINATIONS)
        assert secret.read_bytes() == b"not for you"
        errors = sorted(p.name for p in config.error_dir("jinji").iterdir())
        assert len(errors) == 4 and sum(name.endswith(".reason.txt") for name in errors) == 2
        refused_link = next(p for p in config.error_dir("jinji").iterdir() if p.name.endswith("link.csv"))
        assert refused_link.is_symlink()
        assert "シンボリックリンク" in Path(str(refused_link) + ".reason.txt").read_text(encoding="utf-8")

    def test_pre_and_post_commands_run_with_their_exit_codes_logged(
        self, make_engine: Callable[..., tuple[Config, Engine]], tmp_path: Path
    ) -> None:
        marker = tmp_path / "post.txt"
        config, engine = make_engine(
            pre=["sh", "-c", 'test -s "$FILELINK_FILE"'], post=["sh", "-c", f'echo "$FILELINK_NAME" >> {marker}']
        )
        drop(config, "A.csv", b"data\r\n")
        engine.scan_once()
        assert marker.read_text() == "A.csv\n"
        lines = [json.loads(x) for x in config.log_path.read_text(encoding="utf-8").splitlines()]
        assert [(x["result"], x["exit_code"]) for x in lines if "exit_code" in x] == [
            ("pre-command", 0),
            ("post-command", 0),
        ]

    def test_a_failing_pre_command_holds_the_delivery_back(
        self, make_engine: Callable[..., tuple[Config, Engine]]
    ) -> None:
        config, engine = make_engine(pre=["false"])
        drop(config, "A.csv", b"data\r\n")
        engine.scan_once()
        assert all(delivered(config, d) == {} for d in DESTINATIONS)
        assert engine.status()[0]["retrying"] == 1


class TestCompleteness:
    """A file still being written is never picked up early."""

    def _slow_writer(self, path: Path, chunks: int = 10, pause: float = 0.1) -> threading.Thread:
        def write() -> None:
            with open(path, "wb") as fh:
                for i in range(chunks):
                    fh.write(f"{i:04d},途中の行\r\n".encode("cp932"))
                    fh.flush()
                    time.sleep(pause)

        thread = threading.Thread(target=write)
        thread.start()
        return thread

    def _scan_while(self, engine: Engine, config: Config, thread: threading.Thread) -> None:
        while thread.is_alive():
            engine.scan_once()
            assert all(delivered(config, d) == {} for d in DESTINATIONS), "picked up while being written"
            time.sleep(0.02)

    def test_rename_strategy_ignores_the_temporary_name(
        self, make_engine: Callable[..., tuple[Config, Engine]]
    ) -> None:
        config, engine = make_engine()
        temporary = outbox(config) / "IDOU.csv.part"
        writer = self._slow_writer(temporary)
        self._scan_while(engine, config, writer)
        writer.join()
        os.rename(temporary, outbox(config) / "IDOU.csv")
        engine.scan_once()
        assert delivered(config, "zaimu")["IDOU.csv"].count(b"\r\n") == 10

    def test_done_file_strategy_waits_for_the_done_file(
        self, make_engine: Callable[..., tuple[Config, Engine]]
    ) -> None:
        config, engine = make_engine(completeness="done-file")
        writer = self._slow_writer(outbox(config) / "IDOU.csv")
        self._scan_while(engine, config, writer)
        writer.join()
        engine.scan_once()
        assert delivered(config, "zaimu") == {}
        (outbox(config) / "IDOU.csv.done").write_bytes(b"")
        engine.scan_once()
        assert delivered(config, "zaimu")["IDOU.csv"].count(b"\r\n") == 10
        assert list(outbox(config).iterdir()) == []

    def test_stable_strategy_waits_until_size_and_time_stay_still(
        self, make_engine: Callable[..., tuple[Config, Engine]]
    ) -> None:
        config, engine = make_engine(completeness="stable", stable_seconds=0.6)
        writer = self._slow_writer(outbox(config) / "IDOU.csv", chunks=8, pause=0.3)
        self._scan_while(engine, config, writer)
        writer.join()
        deadline = time.monotonic() + 5
        while not delivered(config, "zaimu") and time.monotonic() < deadline:
            engine.scan_once()
            time.sleep(0.05)
        assert delivered(config, "zaimu")["IDOU.csv"].count(b"\r\n") == 8


class TestConversion:
    TEXT = "職員番号,氏名,所属\r\n1001,①髙橋 一郎,㈱ｶﾝﾘ課\r\n"

    def test_cp932_becomes_utf8_with_route_dependent_characters_intact(
        self, make_engine: Callable[..., tuple[Config, Engine]]
    ) -> None:
        config, engine = make_engine(convert="cp932-to-utf8")
        drop(config, "IDOU.csv", self.TEXT.encode("cp932"))
        engine.scan_once()
        for destination in DESTINATIONS:
            assert delivered(config, destination)["IDOU.csv"].decode("utf-8") == self.TEXT
        assert [p.read_bytes() for p in config.archive_dir.rglob("*.data")] == [self.TEXT.encode("cp932")]

    def test_utf8_becomes_cp932(self, make_engine: Callable[..., tuple[Config, Engine]]) -> None:
        config, engine = make_engine(convert="utf8-to-cp932")
        drop(config, "IDOU.csv", ("\ufeff" + self.TEXT).encode("utf-8"))
        engine.scan_once()
        assert delivered(config, "bunsho")["IDOU.csv"] == self.TEXT.encode("cp932")

    @pytest.mark.parametrize(
        ("conversion", "data", "reason"),
        [
            ("cp932-to-utf8", "正しい行\r\n".encode("cp932") + b"\x82\xff broken\r\n", "読めない"),
            ("utf8-to-cp932", "絵文字 😀 は CP932 にない\r\n".encode(), "CP932 にない文字"),
        ],
    )
    def test_a_file_that_does_not_convert_goes_to_the_error_area_and_nowhere_else(
        self, make_engine: Callable[..., tuple[Config, Engine]], conversion: str, data: bytes, reason: str
    ) -> None:
        config, engine = make_engine(convert=conversion)
        drop(config, "IDOU.csv", data)
        engine.scan_once()
        for destination in DESTINATIONS:
            assert list(inbox(config, destination).iterdir()) == []  # no partial, no temporary file
        refused = [p for p in config.error_dir("jinji").iterdir() if not p.name.endswith(".reason.txt")]
        assert [p.read_bytes() for p in refused] == [data]
        reason_text = Path(str(refused[0]) + ".reason.txt").read_text(encoding="utf-8")
        assert reason in reason_text and "IDOU.csv" in reason_text
        assert engine.status()[0]["errors"] == 1
        assert list(config.work_dir.iterdir()) == []
