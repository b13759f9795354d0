"""Many clerks at once: 50 signed-in clerks of 10 sections (five each)
working in the web UI while mail arrives over SMTP at a steady 20 msg/s,
against a database of a million mails.

The load generator is locust (headless, ``bench/web_load_clerks.py``): each
simulated clerk signs in as its own account and, with a pause of 0.5–1.5 s
between clicks, opens the 受信一覧 (weight 6), searches (3: 議, 会議, 予算,
予算要求, 照会, 契約の), opens a mail of its list (3), registers one (1:
the form, then the POST) or asks ``/healthz`` (1, the baseline, under the
same load). Reported per request kind, counted once every clerk has signed
in (the sign-ins' deliberately slow password hashing is the morning's, not
the working day's): p50/p95/p99 in ms and as ratios to ``/healthz``; failed
registrations (anything but 303 to /registered);
afterwards the 収受番号 of every section and fiscal year must run 1…n
without a gap, and every mail sent must have been stored.

The service runs as deployed (``deploy/systemd``): ``mailintake smtp`` and
``mailintake web --processes N`` (one per core unless ``--web-processes``),
or with ``--layout serve`` as one ``mailintake serve`` (the relay's event
loop then shares the GIL with the page threads).

    python -m bench.web_load [--count 1000000] [--database sqlite|postgresql|both] [--seconds 60]
                             [--layout units|serve] [--web-processes N]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import sqlalchemy

from .smtp_throughput import wait_port
from .web_list import PASSWORD, SECTIONS, add_users, free_port, prepared

CLERKS = 50
CLERK_SECTIONS = 10
MAIL_PER_SECOND = 20
KINDS = ("list", "search", "detail", "register_form", "register", "healthz")


def send_steadily(port: int, stop: threading.Event, sent: list[int]) -> None:
    """20 messages a second to the sections' addresses, until ``stop``."""
    rng = random.Random(3)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        began = time.monotonic()
        while not stop.is_set():
            due = began + len(sent) / MAIL_PER_SECOND
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            section = rng.randrange(SECTIONS)
            msg = EmailMessage()
            msg["From"] = "山田 太郎 <yamada@example.co.jp>"
            msg["To"] = f"section{section:02d}@city.example.jp"
            msg["Subject"] = f"負荷試験中の到着メール {len(sent)}"
            msg.set_content("会議資料を送付します。\n")
            client.send_message(msg)
            sent.append(section)


def start_service(
    layout: str, data_dir: Path, url: str, http_port: int, smtp_port: int, web_processes: int = 1
) -> list[subprocess.Popen[bytes]]:
    env = dict(os.environ, MAILINTAKE_DATABASE_URL=url, MAILINTAKE_LOG_LEVEL="WARNING")
    ports = {"serve": ["--http-port", str(http_port), "--smtp-port", str(smtp_port)],
             "web": ["--http-port", str(http_port), "--processes", str(web_processes)],
             "smtp": ["--smtp-port", str(smtp_port)]}  # fmt: skip
    commands = ["serve"] if layout == "serve" else ["smtp", "web"]
    return [
        subprocess.Popen(
            [sys.executable, "-m", "mailintake", command, "--data-dir", str(data_dir), *ports[command]], env=env
        )
        for command in commands
    ]


def run_one(database: str, count: int, seconds: int, layout: str = "units", web_processes: int = 1) -> dict[str, Any]:
    with prepared(database, count) as (data_dir, url, timings):
        add_users(data_dir, url, {f"clerk{i:02d}": [f"第{i % CLERK_SECTIONS:02d}課"] for i in range(CLERKS)})
        http_port, smtp_port = free_port(), free_port()
        servers = start_service(layout, data_dir, url, http_port, smtp_port, web_processes)
        try:
            wait_port(http_port)
            wait_port(smtp_port)
            stop, sent = threading.Event(), []
            sender = threading.Thread(target=send_steadily, args=(smtp_port, stop, sent), daemon=True)
            sender.start()
            with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
                subprocess.run(
                    [
                        sys.executable, "-m", "locust", "-f", str(Path(__file__).with_name("web_load_clerks.py")),
                        "--headless", "--users", str(CLERKS), "--spawn-rate", "5", "--run-time", f"{seconds}s",
                        "--host", f"http://127.0.0.1:{http_port}", "--csv", f"{tmp}/load", "--only-summary", "--reset-stats",
                        "--loglevel", "WARNING",
                    ],
                    env=dict(os.environ, MAILINTAKE_BENCH_PASSWORD=PASSWORD),
                    check=False,
                )  # fmt: skip
                stats = read_stats(Path(f"{tmp}/load_stats.csv"))
            stop.set()
            sender.join(30)
            result: dict[str, Any] = {
                "database": database, "layout": layout, "web_processes": web_processes if layout == "units" else 1,
                "messages": count, "clerks": CLERKS, **timings,
            }  # fmt: skip
            result.update(summarise(stats))
            result["mail_sent_during_load"] = len(sent)
            result.update(check_afterwards(url, count, len(sent)))
            return result
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait(60)


def read_stats(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["Name"]: row for row in csv.DictReader(fh)}


def summarise(stats: dict[str, dict[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    base = {q: float(stats["healthz"][q]) for q in ("50%", "95%", "99%")}
    for kind in KINDS:
        row = stats.get(kind)
        if row is None:
            continue
        out[f"{kind}_requests"] = int(row["Request Count"])
        out[f"{kind}_failures"] = int(row["Failure Count"])
        for q, label in (("50%", "p50"), ("95%", "p95"), ("99%", "p99")):
            out[f"{kind}_{label}_ms"] = float(row[q])
            out[f"{kind}_{label}_ratio"] = round(float(row[q]) / max(base[q], 1.0), 1)
    return out


def check_afterwards(url: str, filled: int, sent: int) -> dict[str, Any]:
    """Numbers gapless per 文書記号 and year; every mail sent stored."""
    engine = sqlalchemy.create_engine(url)
    try:
        deadline = time.monotonic() + 60
        with engine.connect() as conn:
            while (stored := conn.scalar(sqlalchemy.text("SELECT count(*) FROM messages"))) < filled + sent:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            runs = conn.execute(
                sqlalchemy.text(
                    "SELECT symbol, fiscal_year, count(*), min(number), max(number), count(DISTINCT number)"
                    " FROM registrations GROUP BY symbol, fiscal_year"
                )
            ).all()
    finally:
        engine.dispose()
    gapless = all(n == high == distinct and low == 1 for _, _, n, low, high, distinct in runs)
    return {
        "registrations": sum(row[2] for row in runs),
        "receipt_numbers_gapless": gapless,
        "mail_stored_of_sent": f"{stored - filled}/{sent}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--layout", choices=("units", "serve"), default="units")
    parser.add_argument(
        "--web-processes", type=int, default=os.cpu_count() or 1, help="of mailintake web (default: one per core)"
    )
    args = parser.parse_args()
    databases = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    for database in databases:
        print(f"{database}: {args.count:,} messages, {CLERKS} clerks", file=sys.stderr)
        result = run_one(database, args.count, args.seconds, args.layout, args.web_processes)
        print(json.dumps(result, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
