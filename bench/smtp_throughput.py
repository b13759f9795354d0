"""SMTP intake throughput and memory, against a bare aiosmtpd baseline
measured in the same run.

Load comes from Postfix's ``smtp-source`` (Debian package ``postfix``;
installed with apt-get when missing), 10 parallel sessions reusing their
connections (``-d``), on loopback only:

  (a) a bare aiosmtpd server whose handler only answers 250;
  (b) ``mailintake serve``: streaming DATA to the spool with fsync, then
      ingestion (parse, blob store, SQLite) in its worker.

Reports messages/s for 10 KB and 1 MB messages, the ratio (b)/(a), how long
the ingestion backlog takes to reach 0 after the load ends, and the peak RSS
of mailintake's process tree while it receives and ingests a 30 MB message.

    python -m bench.smtp_throughput [--small-count N] [--large-count N] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

RCPT = "soumu@city.example.jp"
SESSIONS = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def ensure_smtp_source() -> str:
    path = shutil.which("smtp-source") or ("/usr/sbin/smtp-source" if os.path.exists("/usr/sbin/smtp-source") else None)
    if path:
        return path
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "postfix"], check=True, env=env)
    return "/usr/sbin/smtp-source"


BARE_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Handler(), data_size_limit=64 * 1024 * 1024, hostname="bench"),
            "127.0.0.1", int(sys.argv[1]))
        await server.serve_forever()

    asyncio.run(main())
    """
)


def run_load(smtp_source: str, port: int, size: int, count: int) -> float:
    """Messages per second for ``count`` messages of ``size`` bytes."""
    started = time.perf_counter()
    subprocess.run(
        [
            smtp_source,
            "-s",
            str(SESSIONS),
            "-l",
            str(size),
            "-m",
            str(count),
            "-d",
            "-f",
            "bench@example.jp",
            "-t",
            RCPT,
            f"127.0.0.1:{port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return count / (time.perf_counter() - started)


class Mailintake:
    """``mailintake serve`` in a data folder of its own; ``env`` adds
    settings (a shared database and blob store for a second node)."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = workdir / "data"
        self.smtp_port = free_port()
        self.http_port = free_port()
        self.env = dict(os.environ, MAILINTAKE_LOG_LEVEL="WARNING", **(env or {}))
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "mailintake", *args, "--data-dir", str(self.data_dir)],
            check=True,
            capture_output=True,
            text=True,
            env=self.env,
        )
        return out.stdout

    def start(self, prepare: bool = True) -> None:
        if prepare:
            self.cli("section", "add", "総務課")
            self.cli("address", "add", RCPT, "--section", "総務課")
            self.token = self.cli("token", "create", "bench").split()[-1]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mailintake",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--smtp-port",
                str(self.smtp_port),
                "--http-port",
                str(self.http_port),
            ],
            env=self.env,
            start_new_session=True,  # its whole tree can be killed at once
        )
        wait_port(self.smtp_port)
        wait_port(self.http_port)

    def backlog(self) -> int:
        return int(httpx.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=10).json()["backlog"])

    def stored(self) -> int:
        total, cursor = 0, None
        headers = {"Authorization": f"Bearer {self.token}"}
        while True:
            params: dict[str, Any] = {"limit": 200}
            if cursor:
                params["cursor"] = cursor
            body = httpx.get(
                f"http://127.0.0.1:{self.http_port}/api/v1/messages", params=params, headers=headers, timeout=30
            ).json()
            total += len(body["items"])
            cursor = body["next_cursor"]
            if not cursor:
                return total

    def drain_seconds(self, timeout: float = 120) -> float:
        started = time.perf_counter()
        while self.backlog() > 0:
            if time.perf_counter() - started > timeout:
                raise RuntimeError("ingestion backlog did not drain")
            time.sleep(0.05)
        return time.perf_counter() - started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def kill(self) -> None:
        """``kill -9`` of the node's whole process tree."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(30)


def tree_rss_kb(pid: int) -> tuple[int, int]:
    """(RSS of ``pid``, RSS of ``pid`` and all its descendants) in KiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/status") as fh:
                vmrss = next((line for line in fh if line.startswith("VmRSS:")), "VmRSS: 0 kB")
        except OSError:
            continue
        child, parent = int(entry), int(fields[1])
        children.setdefault(parent, []).append(child)
        rss[child] = int(vmrss.split()[1])
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack.extend(children.get(current, []))
    return rss.get(pid, 0), total


def peak_rss_for_large_message(service: Mailintake, size: int) -> dict[str, float]:
    assert service.proc is not None
    msg = EmailMessage()
    msg["From"] = "bench@example.jp"
    msg["To"] = RCPT
    msg["Subject"] = "30MB の添付"
    msg.set_content("大きな添付ファイルです。")
    msg.add_attachment(os.urandom(size), maintype="application", subtype="octet-stream", filename="large.bin")
    raw = msg.as_bytes()
    service.drain_seconds()
    idle_main, idle_tree = tree_rss_kb(service.proc.pid)
    peaks = {"main": 0, "tree": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            main, tree = tree_rss_kb(service.proc.pid)  # type: ignore[union-attr]
            peaks["main"] = max(peaks["main"], main)
            peaks["tree"] = max(peaks["tree"], tree)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=120) as client:
        client.sendmail("bench@example.jp", [RCPT], raw)
    # The 250 came after the spool flush; the backlog is 0 once it is stored.
    while service.backlog() > 0:
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    return {
        "message_mb": round(len(raw) / 1e6, 1),
        "idle_rss_main_mb": round(idle_main / 1024, 1),
        "idle_rss_tree_mb": round(idle_tree / 1024, 1),
        "peak_rss_main_mb": round(peaks["main"] / 1024, 1),
        "peak_rss_tree_mb": round(peaks["tree"] / 1024, 1),
        "receive_and_ingest_seconds": round(elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-count", type=int, default=5000)
    parser.add_argument("--large-count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/smtp_throughput.json"))
    args = parser.parse_args()
    smtp_source = ensure_smtp_source()
    results: dict[str, Any] = {"sessions": SESSIONS, "cpu_count": os.cpu_count()}

    with tempfile.TemporaryDirectory(prefix="mailintake-bench-") as workdir:
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)])
        service = Mailintake(Path(workdir))
        try:
            wait_port(bare_port)
            service.start()
            for label, size, count in (("10KB", 10 * 1024, args.small_count), ("1MB", 1024 * 1024, args.large_count)):
                rounds = []
                # Alternate baseline and mailintake so both see the same
                # machine noise; report each round and the medians.
                for _ in range(args.rounds):
                    baseline = run_load(smtp_source, bare_port, size, count)
                    ours = run_load(smtp_source, service.smtp_port, size, count)
                    drain = service.drain_seconds()
                    rounds.append((baseline, ours, drain))
                results[label] = {
                    "messages_per_round": count,
                    "rounds": [
                        {
                            "bare_aiosmtpd_msg_per_s": round(b, 1),
                            "mailintake_msg_per_s": round(o, 1),
                            "ratio": round(o / b, 3),
                            "backlog_drain_seconds_after_load": round(d, 2),
                        }
                        for b, o, d in rounds
                    ],
                    "median_bare_aiosmtpd_msg_per_s": round(statistics.median(b for b, _, _ in rounds), 1),
                    "median_mailintake_msg_per_s": round(statistics.median(o for _, o, _ in rounds), 1),
                    "median_ratio": round(statistics.median(o / b for b, o, _ in rounds), 3),
                    "max_backlog_drain_seconds_after_load": round(max(d for _, _, d in rounds), 2),
                }
                print(label, json.dumps(results[label], ensure_ascii=False), flush=True)
            expected = (args.small_count + args.large_count) * args.rounds
            stored = service.stored()
            results["stored_messages"] = stored
            if stored != expected:
                raise SystemExit(f"stored {stored} messages, expected {expected}")
            # 22 MiB of attachment is a 30 MB message once base64-encoded.
            results["large_message"] = peak_rss_for_large_message(service, 22 * 1024 * 1024)
            print("30MB", json.dumps(results["large_message"], ensure_ascii=False), flush=True)
        finally:
            service.stop()
            bare.terminate()
            bare.wait(10)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2))
    print(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
