"""filelink: throughput, pick-up latency and memory.

- Throughput: 10,000 files of 1 KB dropped at once into one outbox,
  delivered to 2 inboxes by ``filelink run --once``; the baseline, in the
  same run, is a plain loop doing the same file-system work a careful copier
  must do (copy to a temporary name, fsync, rename, fsync the folder) without
  journal, hashing or archive.
- Latency: with ``filelink run`` (inotify) running, files renamed into the
  outbox one at a time; median and p90 time until the file is in the inbox.
- Memory: peak RSS of ``filelink run --once`` delivering one 2 GB file,
  against the peak RSS of the same command with nothing to do.

    python -m bench.filelink [--files 10000] [--latency-files 200] [--big-gb 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from filelink import permissions
from filelink.config import Config, parse

CHUNK = os.urandom(1 << 20)


def make_config(base: Path, destinations: tuple[str, ...] = ("bunsho", "zaimu")) -> tuple[Path, Config]:
    data = {
        "engine": {
            "root": str(base / "share"),
            "state_dir": str(base / "state"),
            "account": "root",
            "rescan_seconds": 5,
        },
        "systems": {s: {"name": s, "group": "root"} for s in ("jinji", *destinations)},
        "routes": [{"id": "jinji-idou", "source": "jinji", "kind": "異動情報", "destinations": list(destinations)}],
    }
    config = parse(data)
    permissions.apply(config)
    lines = ["[engine]"] + [f"{k} = {json.dumps(v)}" for k, v in data["engine"].items()]
    for system, values in data["systems"].items():
        lines += [f"[systems.{system}]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    lines += ["[[routes]]"] + [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in data["routes"][0].items()]
    path = base / "filelink.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, config


def drop_files(outbox: Path, count: int, size: int = 1024) -> None:
    body = os.urandom(size)
    for i in range(count):
        temporary = outbox / f".f{i:06d}.tmp"
        temporary.write_bytes(body)
        os.rename(temporary, outbox / f"f{i:06d}.csv")


def baseline_copy(outbox: Path, inboxes: list[Path]) -> None:
    for entry in sorted(os.scandir(outbox), key=lambda e: e.name):
        for inbox in inboxes:
            temporary = inbox / f".{entry.name}.tmp"
            with open(entry.path, "rb") as src, open(temporary, "wb") as dst:
                shutil.copyfileobj(src, dst)
                dst.flush()
                os.fsync(dst.fileno())
            os.rename(temporary, inbox / entry.name)
            fd = os.open(inbox, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        os.unlink(entry.path)


def filelink(config_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "filelink", "run", "--config", str(config_path), "--log-level", "WARNING", *args],
        check=True,
        capture_output=True,
    )


def throughput(files: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-filelink-") as tmp:
        base = Path(tmp)
        config_path, config = make_config(base / "engine")
        route = config.routes[0]
        outbox = config.outbox(route)
        drop_files(outbox, files)
        began = time.monotonic()
        filelink(config_path, "--once")
        engine_seconds = time.monotonic() - began
        delivered = len(list(config.inbox(route, "zaimu").iterdir()))
        assert delivered == files, delivered

        plain = base / "plain"
        (plain / "out").mkdir(parents=True)
        inboxes = [plain / "a", plain / "b"]
        for inbox in inboxes:
            inbox.mkdir()
        drop_files(plain / "out", files)
        began = time.monotonic()
        baseline_copy(plain / "out", inboxes)
        baseline_seconds = time.monotonic() - began
    return {
        "files": files,
        "engine_files_per_s": round(files / engine_seconds, 1),
        "baseline_files_per_s": round(files / baseline_seconds, 1),
        "ratio": round(baseline_seconds / engine_seconds, 3),
    }


def latency(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-filelink-") as tmp:
        config_path, config = make_config(Path(tmp))
        route = config.routes[0]
        outbox, inbox = config.outbox(route), config.inbox(route, "zaimu")
        engine = subprocess.Popen(
            [sys.executable, "-m", "filelink", "run", "--config", str(config_path), "--log-level", "WARNING"]
        )
        try:
            time.sleep(1.0)  # watcher started
            samples = []
            for i in range(count):
                temporary = outbox / f".l{i:05d}.tmp"
                temporary.write_bytes(b"x" * 512)
                began = time.monotonic()
                os.rename(temporary, outbox / f"l{i:05d}.csv")
                target = inbox / f"l{i:05d}.csv"
                deadline = began + 30
                while not target.exists():
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{target.name} not delivered within 30 s")
                    time.sleep(0.001)
                samples.append((time.monotonic() - began) * 1000)
                time.sleep(0.02)
        finally:
            engine.terminate()
            engine.wait(30)
    samples.sort()
    return {
        "files": count,
        "median_ms": round(statistics.median(samples), 1),
        "p90_ms": round(samples[int(len(samples) * 0.9)], 1),
        "max_ms": round(samples[-1], 1),
    }


def peak_rss_kb(config_path: Path) -> int:
    """Peak RSS of one ``filelink run --once``, from a fresh child."""
    code = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], check=True, capture_output=True);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, sys.executable, "-m", "filelink", "run", "--once", "--config", str(config_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(result.stdout.strip())


def memory(big_gb: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-filelink-", dir=os.environ.get("BENCH_TMP")) as tmp:
        config_path, config = make_config(Path(tmp), destinations=("zaimu",))
        route = config.routes[0]
        idle = peak_rss_kb(config_path)
        outbox = config.outbox(route)
        temporary = outbox / ".big.tmp"
        with open(temporary, "wb") as fh:
            for _ in range(int(big_gb * 1024)):
                fh.write(CHUNK)
        os.rename(temporary, outbox / "big.csv")
        began = time.monotonic()
        busy = peak_rss_kb(config_path)
        seconds = time.monotonic() - began
        delivered = (config.inbox(route, "zaimu") / "big.csv").stat().st_size
        assert delivered == int(big_gb * 1024) << 20, delivered
    return {
        "file_gb": big_gb,
        "idle_peak_rss_mb": round(idle / 1024, 1),
        "delivering_peak_rss_mb": round(busy / 1024, 1),
        "ratio": round(busy / idle, 2),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--latency-files", type=int, default=200)
    parser.add_argument("--big-gb", type=float, default=2.0)
    args = parser.parse_args()
    print(json.dumps({"throughput": throughput(args.files)}, ensure_ascii=False), flush=True)
    print(json.dumps({"latency": latency(args.latency_files)}, ensure_ascii=False), flush=True)
    print(json.dumps({"memory": memory(args.big_gb)}, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
