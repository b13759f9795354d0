"""Latency of the clerks' list page and Japanese search at a million mails.

Fills a fresh database with synthetic Japanese mail (20 sections, two
years, 未処理/収受済/対象外 mixed), builds the search index with the same
indexer the service runs, starts ``mailintake web`` and, signed in as a
clerk of one section and as a system administrator, times over HTTP:

- the list page (newest first, 未処理), and its next page;
- a search for a one-, two- and four-character word (議, 会議, 予算要求);
- on PostgreSQL, the searches again after dropping the index over terms and
  time (the plain GIN path on the same data), for the ratio between the two;
- the same for the administrator, who sees all 20 sections.

The baseline, timed in the same run against the same server, is
``/healthz`` (one trivial database query plus the HTTP round trip);
results are medians in ms and as ratios to it.

    python -m bench.web_list [--count 1000000] [--database sqlite|postgresql|both] [--requests 30]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy
from sqlalchemy import insert

from mailintake.config import load_settings
from mailintake.models import Address, Message, Section
from mailintake.records import search
from mailintake.services import build_services

from .smtp_throughput import wait_port

SECTIONS = 20
PG_URL = os.environ.get("MAILINTAKE_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PASSWORD = "bench password 1"

WORDS = (
    "会議 資料 送付 依頼 回答 照会 通知 予算 決算 契約 入札 工事 委託 申請 届出 報告 調査 研修 "
    "人事 異動 給与 福祉 保育 税務 住民 窓口 防災 訓練 選挙 議会 広報 観光 道路 河川 水道 下水 "
    "環境 廃棄物 文化 体育 教育 学校 図書館 健康 検診 介護 年金 国保 統計 情報 システム 更新"
).split()
PHRASES = ("予算要求", "会議資料", "入札結果", "研修案内", "調査票", "事業計画", "補助金", "説明会")
NAMES = ("山田 太郎", "佐藤 花子", "鈴木 一郎", "髙橋 次郎", "田中 美咲", "㈱中央商事", "伊藤 健", "渡辺 恵")


def sentence(rng: random.Random, words: int) -> str:
    parts = [rng.choice(WORDS) for _ in range(words)]
    if rng.random() < 0.3:
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(PHRASES))
    return "の".join(parts)


def fill(engine: sqlalchemy.Engine, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with engine.begin() as conn:
        conn.execute(insert(Section), [{"name": f"第{i:02d}課", "symbol": f"第{i:02d}"} for i in range(SECTIONS)])
        section_ids = [row[0] for row in conn.execute(sqlalchemy.select(Section.id).order_by(Section.id))]
        conn.execute(
            insert(Address),
            [
                {"address": f"section{i:02d}@city.example.jp", "section_id": section_ids[i], "label": ""}
                for i in range(SECTIONS)
            ],
        )
        address_ids = [row[0] for row in conn.execute(sqlalchemy.select(Address.id).order_by(Address.id))]
    start = dt.datetime(2024, 12, 1, tzinfo=dt.UTC)
    span = 2 * 365 * 24 * 3600
    batch = 10_000
    for offset in range(0, count, batch):
        rows = []
        for i in range(offset, min(count, offset + batch)):
            received = start + dt.timedelta(seconds=span * i / count + rng.random())
            subject = sentence(rng, rng.randint(2, 4)) + "について"
            body = "。".join(sentence(rng, rng.randint(3, 6)) for _ in range(rng.randint(2, 4))) + "。"
            status = "new" if rng.random() < 0.3 else ("registered" if rng.random() < 0.9 else "dismissed")
            attachments = rng.choice((0, 0, 0, 1, 2))
            rows.append(
                {
                    "address_id": address_ids[i % SECTIONS],
                    "rcpt_to": f"section{i % SECTIONS:02d}@city.example.jp",
                    "received_at": received,
                    "raw_sha256": hashlib.sha256(str(i).encode()).hexdigest(),
                    "raw_size": 2000 + len(body) * 3,
                    "from_name": rng.choice(NAMES),
                    "from_address": f"user{rng.randint(1, 5000)}@example.co.jp",
                    "subject": subject,
                    "text_body": body,
                    "status": status,
                    "attachment_count": attachments,
                    "attachment_bytes": attachments * rng.randint(10_000, 2_000_000),
                    "to": [],
                    "cc": [],
                    "problems": [],
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(Message), rows)
        print(f"\r  filled {min(count, offset + batch):,}/{count:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def login(client: httpx.Client, username: str) -> None:
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    response = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token.group(1), "next": "/messages"}
    )
    assert response.status_code == 303, response.text


def timed(client: httpx.Client, path: str, requests: int) -> float:
    client.get(path).raise_for_status()  # warm
    samples = []
    for _ in range(requests):
        began = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - began) * 1000)
        response.raise_for_status()
    return statistics.median(samples)


SEARCHES = {
    "search_1char": "/messages?status=all&q=議",
    "search_2char": "/messages?status=all&q=会議",
    "search_4char": "/messages?status=all&q=予算要求",
}


@contextlib.contextmanager
def services_engine(url: str) -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def time_requests(port: int, requests: int, result: dict[str, Any], suffix: str, only_searches: bool = False) -> None:
    """Medians of the list and search pages for the clerk and the administrator."""
    for who in ("clerk", "admin"):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            login(client, who)
            baseline = timed(client, "/healthz", requests)
            first = client.get("/messages").text
            cursor = re.search(r'href="(/messages\?[^"]*cursor=[^"]+)"', first)
            paths = (
                {}
                if only_searches
                else {
                    "list": "/messages",
                    "list_next_page": cursor.group(1).replace("&amp;", "&") if cursor else "/messages",
                }
            )
            paths.update(SEARCHES)
            result[f"{who}_baseline{suffix}_ms"] = round(baseline, 2)
            for name, path in paths.items():
                median = timed(client, path, requests)
                result[f"{who}_{name}{suffix}_ms"] = round(median, 1)
                result[f"{who}_{name}{suffix}_ratio"] = round(median / baseline, 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def prepared(database: str, count: int) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    """A fresh database of ``count`` synthetic mails, indexed as the service
    indexes them: (data folder, database URL, how long each step took).
    Dropped afterwards (a PostgreSQL schema of its own)."""
    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    schema = None
    if database == "postgresql":
        schema = f"bench_{os.getpid()}"
        admin = sqlalchemy.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{work / 'data' / 'mailintake.db'}"
    try:
        settings = load_settings(overrides={"data_dir": work / "data", "database_url": url}, environ={})
        services = build_services(settings)
        began = time.monotonic()
        fill(services.engine, count)
        timings: dict[str, Any] = {"fill_s": round(time.monotonic() - began, 1)}
        if database == "postgresql":
            # Built once after the bulk indexing, as the migration does on an
            # existing database.
            with services.engine.begin() as conn:
                conn.execute(sqlalchemy.text(f"DROP INDEX IF EXISTS {search.TIME_INDEX}"))
        began = time.monotonic()
        indexed = 0
        while n := search.index_pending(services.engine, batch=5000):
            indexed += n
            print(f"\r  indexed {indexed:,}/{count:,}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        timings["index_s"] = round(time.monotonic() - began, 1)
        began = time.monotonic()
        with services.engine.begin() as conn:
            search.create_time_index(conn)
        timings["ordered_index_s"] = round(time.monotonic() - began, 1)
        # As autovacuum leaves a database that has been in use: statistics,
        # and the visibility map that index-only scans (the status counts) need.
        with services.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sqlalchemy.text("VACUUM ANALYZE" if database == "postgresql" else "ANALYZE"))
        services.close()
        yield work / "data", url, timings
    finally:
        if schema is not None:
            with admin.connect() as conn:
                conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
        shutil.rmtree(work, ignore_errors=True)


def add_users(data_dir: Path, url: str, users: dict[str, list[str]], role: str = "clerk") -> None:
    settings = load_settings(overrides={"data_dir": data_dir, "database_url": url}, environ={})
    services = build_services(settings)
    try:
        for username, sections in users.items():
            services.accounts.add_user(username, password=PASSWORD, sections=sections, role=role)
    finally:
        services.close()


def run_one(database: str, count: int, requests: int) -> dict[str, Any]:
    with prepared(database, count) as (data_dir, url, timings):
        add_users(data_dir, url, {"clerk": ["第03課"]})
        add_users(data_dir, url, {"admin": []}, role="system_admin")
        port = free_port()
        env = dict(os.environ, MAILINTAKE_DATABASE_URL=url, MAILINTAKE_LOG_LEVEL="WARNING")
        server = subprocess.Popen(
            [sys.executable, "-m", "mailintake", "web", "--data-dir", str(data_dir), "--http-port", str(port)],
            env=env,
        )
        try:
            wait_port(port)
            result: dict[str, Any] = {"database": database, "messages": count, **timings}
            with services_engine(url) as engine, engine.connect() as conn:
                kind = search.index_kind(conn)
            result["search_index"] = kind
            time_requests(port, requests, result, suffix="")
            if kind == "gin+time":
                # The plain GIN path on the same data, for the ratio newest-first / GIN.
                with services_engine(url) as engine, engine.begin() as conn:
                    conn.execute(sqlalchemy.text(f"DROP INDEX {search.TIME_INDEX}"))
                time_requests(port, requests, result, suffix="_gin", only_searches=True)
                for who in ("clerk", "admin"):
                    for name in SEARCHES:
                        result[f"{who}_{name}_time_over_gin"] = round(
                            result[f"{who}_{name}_ms"] / result[f"{who}_{name}_gin_ms"], 3
                        )
            return result
        finally:
            server.terminate()
            server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    databases = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    for database in databases:
        print(f"{database}: {args.count:,} messages", file=sys.stderr)
        print(json.dumps(run_one(database, args.count, args.requests), ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
