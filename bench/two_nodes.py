"""Two nodes behind a real Postfix, on one PostgreSQL with the database blob
store: end-to-end SMTP throughput of 10 KB mail with one node, with two
nodes, and with two nodes of which the first is dead; and the 30 MB peak
RSS of a node on the database blob store.

Load comes from Postfix's ``smtp-source`` into a private Postfix instance
on loopback, whose transport lists the nodes the way ``mailintake
mta-config postfix --relay ... --relay ...`` writes it. A configuration's
throughput is mails / (first sent → last stored in the database). Rounds
alternate the configurations so that all see the same machine noise;
ratios are against one node in the same round.

    python -m bench.two_nodes [--count 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy

from bench.smtp_throughput import RCPT, Mailintake, ensure_smtp_source, free_port, peak_rss_for_large_message
from tests.postfix_instance import PostfixInstance

PG_URL = os.environ.get("MAILINTAKE_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SESSIONS = 10


def postfix_for(nodes: list[Mailintake], base: Path, name: str) -> PostfixInstance:
    instance = PostfixInstance(base / name, free_port())
    instance.etc.mkdir(parents=True, exist_ok=True)
    relays = [arg for node in nodes for arg in ("--relay", f"127.0.0.1:{node.smtp_port}")]
    subprocess.run(
        [sys.executable, "-m", "mailintake", "mta-config", "postfix", "--mode", "divert", *relays,
         "--output", str(instance.etc), "--map-dir", str(instance.etc), "--data-dir", str(nodes[0].data_dir)],
        check=True, capture_output=True, env=nodes[0].env,
    )  # fmt: skip
    instance.configure((instance.etc / "main.cf").read_text() + "default_destination_concurrency_limit = 20\n")
    instance.start()
    return instance


def stored(engine: sqlalchemy.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sqlalchemy.text("SELECT count(*) FROM messages")) or 0)


def through(postfix: PostfixInstance, engine: sqlalchemy.Engine, count: int, timeout: float = 600) -> float:
    """Mails per second from the first sent to the last stored."""
    before = stored(engine)
    started = time.perf_counter()
    subprocess.run(
        ["/usr/sbin/smtp-source", "-s", str(SESSIONS), "-l", "10240", "-m", str(count), "-d",
         "-f", "bench@example.jp", "-t", RCPT, f"127.0.0.1:{postfix.port}"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    while stored(engine) < before + count:
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"only {stored(engine) - before} of {count} mails stored" + postfix.tail())
        time.sleep(0.05)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/two_nodes.json"))
    args = parser.parse_args()
    ensure_smtp_source()
    schema = f"bench_{secrets.token_hex(4)}"
    admin = sqlalchemy.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    env = {"MAILINTAKE_DATABASE_URL": url, "MAILINTAKE_BLOB_STORE": "database"}
    engine = sqlalchemy.create_engine(url)
    results: dict[str, Any] = {"mails_per_round": args.count, "sessions": SESSIONS, "cpu_count": os.cpu_count()}
    base = Path(tempfile.mkdtemp(prefix="mailintake-bench-postfix-"))
    base.chmod(0o755)  # Postfix's own users reach its queue
    node_a = Mailintake(Path(tempfile.mkdtemp(prefix="node-a-")), env)
    node_b = Mailintake(Path(tempfile.mkdtemp(prefix="node-b-")), env)
    instances: list[PostfixInstance] = []
    try:
        node_a.start()
        node_b.start(prepare=False)
        one = postfix_for([node_a], base, "one")
        two = postfix_for([node_a, node_b], base, "two")
        instances += [one, two]
        rounds = []
        for _ in range(args.rounds):
            single = through(one, engine, args.count)
            both = through(two, engine, args.count)
            node_a.kill()
            first_dead = through(two, engine, args.count)
            node_a.start(prepare=False)
            rounds.append((single, both, first_dead))
            print(json.dumps({"one": single, "two": both, "two_first_dead": first_dead}), flush=True)
        results["rounds"] = [
            {"one_node_msg_per_s": round(a, 1), "two_nodes_msg_per_s": round(b, 1),
             "two_nodes_first_dead_msg_per_s": round(c, 1), "ratio_two": round(b / a, 3),
             "ratio_first_dead": round(c / a, 3)}
            for a, b, c in rounds
        ]  # fmt: skip
        results["median_ratio_two"] = round(statistics.median(b / a for a, b, _ in rounds), 3)
        results["median_ratio_first_dead"] = round(statistics.median(c / a for a, _, c in rounds), 3)
        results["stored"] = stored(engine)
        if results["stored"] != 3 * args.count * args.rounds:
            raise SystemExit(f"stored {results['stored']}, expected {3 * args.count * args.rounds}")
        # 22 MiB of attachment is a 30 MB message once base64-encoded.
        results["large_message_database_store"] = peak_rss_for_large_message(node_a, 22 * 1024 * 1024)
    finally:
        for instance in instances:
            instance.stop()
        node_a.stop()
        node_b.stop()
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2))
    print(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
