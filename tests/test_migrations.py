"""Schema migrations: a database made and filled by the previous release is
upgraded by `mailintake db upgrade`, survives a downgrade and a second
upgrade unchanged, and the service refuses a database at another revision."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text

from mailintake import schema
from mailintake.blobs import DatabaseBlobs, DatabaseOriginals
from mailintake.config import Settings
from mailintake.db import make_engine
from mailintake.intake.ingest import SCHEMA_CHECK_SECONDS
from mailintake.models import Attachment, Base, Message, ReceiptCounter
from mailintake.people.sessions import LoginThrottle
from mailintake.people.signin import ExternalIdentity
from mailintake.records import search
from mailintake.records.registry import RegistrationRequest
from mailintake.services import build_services

from .conftest import IN_CI, wait_for
from .mails import make_message, send

ROOT = Path(__file__).resolve().parents[1]
# The last release whose database had no alembic_version (created by create_all).
PREVIOUS_RELEASE = "a3fdabf67b4bcd89939113968fb7935b2ac382f1"
SOUMU = "soumu@city.example.jp"

# Runs the previous release's code: its module names, not today's.
FILL_WITH_PREVIOUS_RELEASE = """
import datetime as dt, sys
from pathlib import Path
import mailintake
assert mailintake.__file__.startswith(sys.argv[3]), mailintake.__file__
from mailintake import search
from mailintake.config import load_settings
from mailintake.importer import import_messages
from mailintake.registry import RegistrationRequest
from mailintake.services import build_services

settings = load_settings(overrides={"data_dir": sys.argv[1], "database_url": sys.argv[2]}, environ={})
services = build_services(settings)
services.addresses.add("soumu@city.example.jp", "総務課")
services.addresses.add("zaisei@city.example.jp", "財政課", "予算")
clerk = services.accounts.add_user("sato", password="correct horse 7", sections=["総務課"], display_name="佐藤　花子")
services.accounts.add_user("admin", password="another horse 8", role="system_admin")
services.tokens.create("文書管理システム")
corpus = sorted(Path(sys.argv[4]).glob("*.eml"))
import_messages(services, "soumu@city.example.jp", corpus)
from sqlalchemy import select
from sqlalchemy.orm import Session
from mailintake.models import Message
with Session(services.engine) as session:
    ids = list(session.scalars(select(Message.id).order_by(Message.id)))
requests = [
    RegistrationRequest(message_id=i, subject=f"件名{i}", sender="山田 太郎", received_on=dt.date(2026, 11, 20),
                        retention="5年")
    for i in ids[:3]
]
services.registry.register(clerk, requests)
services.registry.dismiss(clerk, ids[3], "広告")
services.registry.add_classification("契約")
search.index_all(services.engine)
services.close()
print(len(ids))
"""


@pytest.fixture(scope="session")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's code, taken from this repository's history."""
    where = tmp_path_factory.mktemp("previous-release")
    archive = where / "release.tar"
    made = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "-o", str(archive), PREVIOUS_RELEASE, "mailintake", "web"],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        message = f"the previous release {PREVIOUS_RELEASE[:8]} is not in this clone's history: {made.stderr}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with tarfile.open(archive) as tar:
        tar.extractall(where, filter="data")
    (where / "mailintake" / "web").symlink_to(where / "web")
    return where


def filled_by_previous_release(previous_release: Path, settings: Settings) -> int:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            FILL_WITH_PREVIOUS_RELEASE,
            str(settings.data_dir),
            settings.database_url,
            str(previous_release),
            str(ROOT / "samples" / "corpus"),
        ],
        cwd=previous_release,
        env=dict(os.environ, PYTHONPATH=str(previous_release)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return int(result.stdout.split()[-1])


def columns_of(engine: Engine) -> dict[str, list[str]]:
    """The model tables and columns a database has (an older one lacks
    what later revisions add; what they replace is compared on its own)."""
    with engine.connect() as conn:
        found = inspect(conn)
        present = set(found.get_table_names())
        return {
            table.name: [c["name"] for c in found.get_columns(table.name) if c["name"] in table.c]
            for table in Base.metadata.sorted_tables
            if table.name in present
        }


def address_sections(engine: Engine) -> list[tuple[str, str]]:
    """Each address with its section's name, before (a name column) or after
    (an id) revision 0006."""
    with engine.connect() as conn:
        names = {c["name"] for c in inspect(conn).get_columns("addresses")}
        query = (
            "SELECT a.address, s.name FROM addresses a JOIN sections s ON s.id = a.section_id ORDER BY a.address"
            if "section_id" in names
            else "SELECT address, section FROM addresses ORDER BY address"
        )
        return [(row[0], row[1]) for row in conn.execute(text(query))]


def snapshot(
    engine: Engine, queries: list[str], columns: dict[str, list[str]], as_before_0013: bool = False
) -> dict[str, Any]:
    """Every row of every table (in ``columns``), the search results and the
    counters. ``as_before_0013``: one-character searches as the previous
    release made them on PostgreSQL (every lexeme starting with the
    character), to compare with the service's search after the upgrade."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name not in columns:
                continue
            chosen = [table.c[name] for name in columns[table.name]]
            rows = [tuple(row) for row in conn.execute(select(*chosen).order_by(*table.primary_key.columns))]
            if rows:
                out[table.name] = rows
        for query in queries:
            condition = search.condition(conn, query)
            assert condition is not None
            if as_before_0013 and len(query) == 1 and conn.dialect.name == "postgresql":
                condition = text(
                    "messages.id IN (SELECT message_id FROM message_search"
                    " WHERE terms @@ to_tsquery('simple', :prefix))"
                ).bindparams(prefix=f"{search.normalize(query)}:*")
            out[f"search {query}"] = list(conn.scalars(select(Message.id).where(condition).order_by(Message.id)))
        out["watermark"] = search.watermark(conn)
    return out


def mailintake_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailintake", *args, "--data-dir", str(settings.data_dir)],
        env=dict(os.environ, MAILINTAKE_DATABASE_URL=settings.database_url, MAILINTAKE_CONFIG=""),
        capture_output=True,
        text=True,
        timeout=120,
    )


def search_words(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        subjects = [s.strip() for s in conn.scalars(select(Message.subject))]
    # Two searchable characters each (a word such as "(a" has only one).
    words = sorted({s[:2] for s in subjects if len(s) >= 2 and s[0].isalnum() and s[1].isalnum()})[:6] + ["会議"]
    # One character inside a word (0013: each character a lexeme of its own).
    inside = sorted({s[1] for s in subjects if len(s) >= 3 and s[1].isalnum() and s[2].isalnum()})[:4]
    return words + inside + ["議"]


class TestUpgradeFromThePreviousRelease:
    def test_rows_search_and_numbers_survive_upgrade_downgrade_upgrade(
        self, previous_release: Path, settings: Settings
    ) -> None:
        """GIVEN a database made and filled by the previous release (mail,
        registrations, users, tokens, search index)
        WHEN `mailintake db upgrade`, a downgrade to the baseline and an
        upgrade again run
        THEN every row and every search result are unchanged and the next
        収受番号 follows the last one."""
        stored = filled_by_previous_release(previous_release, settings)
        assert stored >= 30
        engine = make_engine(settings)
        assert schema.status(engine).state is schema.State.UNVERSIONED
        words = search_words(engine)
        columns = columns_of(engine)
        before = snapshot(engine, words, columns, as_before_0013=True)
        sections_before = address_sections(engine)
        assert ("zaisei@city.example.jp", "財政課") in sections_before
        assert any(before[f"search {w}"] for w in words)
        assert len(before["registrations"]) == 3

        refused = mailintake_cli(settings, "serve", "--smtp-port", "0", "--http-port", "0")
        assert refused.returncode == 3
        assert "mailintake db upgrade" in refused.stderr

        upgraded = mailintake_cli(settings, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        assert schema.status(engine).state is schema.State.CURRENT
        assert snapshot(engine, words, columns) == before
        assert address_sections(engine) == sections_before  # 0006: names became ids
        if engine.dialect.name == "sqlite":  # 0015: the first characters' index
            with engine.connect() as conn:
                created = conn.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'message_search'"))
            assert "prefix = '1'" in created
        if engine.dialect.name == "postgresql":  # 0011: each indexed mail's address, inside the time index
            with engine.connect() as conn:
                mismatched = conn.scalar(
                    text(
                        "SELECT count(*) FROM message_search s JOIN messages m ON m.id = s.message_id"
                        " WHERE s.address_id IS DISTINCT FROM m.address_id"
                    )
                )
                indexed = conn.scalar(text("SELECT count(*) FROM message_search"))
                assert indexed and mismatched == 0
                assert "address_id" in str(
                    conn.scalar(text("SELECT indexdef FROM pg_indexes WHERE indexname = :i"), {"i": search.TIME_INDEX})
                )
        with engine.connect() as conn:  # 0007: made from mail, an answer only with a due date
            fields = conn.execute(text("SELECT receipt_method, reply_required, reply_due FROM registrations")).all()
        assert fields and all(
            method == "電子メール" and bool(asks) == (due is not None) for method, asks, due in fields
        )

        assert mailintake_cli(settings, "db", "downgrade", schema.BASELINE).returncode == 0
        assert schema.status(engine).current == schema.BASELINE
        assert snapshot(engine, words, columns) == before
        assert address_sections(engine) == sections_before
        assert mailintake_cli(settings, "db", "upgrade").returncode == 0
        assert snapshot(engine, words, columns) == before

        with engine.connect() as conn:
            events = conn.execute(text("SELECT registration_id, event FROM registration_events ORDER BY seq")).all()
            newest = conn.execute(text("SELECT id, last_event_seq FROM registrations ORDER BY id")).all()
            scopes = conn.scalars(text("SELECT scopes FROM api_tokens")).all()
        registered = [row[0] for row in before["registrations"]]
        assert [tuple(e) for e in events] == [(r, "registered") for r in registered]
        assert all(seq is not None for _, seq in newest)
        assert scopes == ["messages:read"]

        current = mailintake_cli(settings, "db", "current")
        assert current.returncode == 0 and current.stdout.startswith(schema.head_revision())

        # 0012: the previous release's files move into the database store,
        # every original byte-exact, and a second run has nothing to do.
        moved = mailintake_cli(settings, "blobs", "move", "--to", "database")
        assert moved.returncode == 0, moved.stderr
        in_database = DatabaseOriginals(engine)
        with engine.connect() as conn:
            raws = conn.execute(select(Message.raw_sha256, Message.raw_size)).all()
            attachment_shas = set(conn.scalars(select(Attachment.sha256)))
        for sha, size in raws:
            assert hashlib.sha256(b"".join(in_database.chunks(sha, size))).hexdigest() == sha
        assert attachment_shas and all(DatabaseBlobs(engine).exists(sha) for sha in attachment_shas)
        assert f"移した {len({sha for sha, _ in raws}) + len(attachment_shas)} 件" in moved.stdout
        again = mailintake_cli(settings, "blobs", "move", "--to", "database")
        assert "移した 0 件" in again.stdout

        services = build_services(settings)
        try:
            clerk = services.accounts.by_username("sato")
            # 0005: an account of the previous release signs in by SSO, its
            # external ID matched case-insensitively, and the session keeps
            # what single sign-out needs.
            assert services.sso.signins.user_for(ExternalIdentity("saml", "SATO")).id == clerk.id
            cookie = services.sessions.start(clerk, method="saml", signout_hint='{"name_id": "SATO"}')
            assert services.sessions.resolve(cookie).signout_hint == '{"name_id": "SATO"}'  # type: ignore[union-attr]
            # 0010: the sign-in throttle counts in the database.
            throttle = LoginThrottle(services.engine, limit=1)
            assert throttle.admit("sato", "192.0.2.1") == 0.0
            assert throttle.admit("sato", "192.0.2.1") > 0
            # 0009: a 分類 of the previous release gets a 保存期間, which a
            # registration left without one takes.
            (contract,) = services.registry.classification_choices()
            assert (contract.path, contract.retention) == ("契約", "")
            services.registry.describe_classification(contract.id, "K-1", "1年")
            new_id = before["messages"][4][0]
            done = services.registry.register(
                clerk,
                [
                    RegistrationRequest(
                        message_id=new_id,
                        subject="後続",
                        sender="x",
                        received_on=dt.date(2026, 11, 20),
                        retention="",
                        classification_id=contract.id,
                    )
                ],
            )
            assert done[0].retention == "1年"
            with services.engine.connect() as conn:
                counters = conn.execute(select(ReceiptCounter.last_number)).scalars().all()
        finally:
            services.close()
            engine.dispose()
        assert done[0].number == 4
        assert counters == [4]


class TestModelsAndMigrationsAgree:
    @pytest.mark.parametrize("made_by", ["migrations", "previous release"])
    def test_autogenerate_finds_no_difference(
        self, made_by: str, settings: Settings, request: pytest.FixtureRequest
    ) -> None:
        """A schema built by the migrations, or by the previous release and
        stamped, matches the models exactly (so no change slips in without a
        migration); the search tables are never proposed for dropping."""
        if made_by == "migrations":
            engine = make_engine(settings)
            schema.upgrade(engine)
        else:
            filled_by_previous_release(request.getfixturevalue("previous_release"), settings)
            engine = make_engine(settings)
            schema.upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={"include_object": schema.include_object, "compare_type": True, "target_metadata": Base.metadata},
            )
            differences = compare_metadata(context, Base.metadata)
        engine.dispose()
        assert differences == []


class TestStartRefusal:
    def test_a_database_of_a_newer_release_is_refused_with_the_command_to_run(
        self, make_settings: Callable[..., Settings]
    ) -> None:
        settings = make_settings()
        engine = make_engine(settings)
        schema.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        engine.dispose()
        result = mailintake_cli(settings, "serve", "--smtp-port", "0", "--http-port", "0")
        assert result.returncode == 3
        assert "9999" in result.stderr and "downgrade" in result.stderr
        listed = mailintake_cli(settings, "address", "list")
        assert listed.returncode == 3

    def test_an_empty_database_is_created_at_the_newest_revision(self, make_settings: Callable[..., Settings]) -> None:
        settings = make_settings()
        made = mailintake_cli(settings, "section", "add", "総務課")
        assert made.returncode == 0, made.stderr
        added = mailintake_cli(settings, "address", "add", SOUMU, "--section", "総務課")
        assert added.returncode == 0, added.stderr
        current = mailintake_cli(settings, "db", "current")
        assert current.stdout.split()[0] == schema.head_revision()


class TestUpgradeUnderARunningRelay:
    def test_mail_is_accepted_into_the_spool_and_stored_once_the_program_matches_again(
        self, services: Any, service: Any, api: Any
    ) -> None:
        """GIVEN a running service WHEN the database is moved to a revision
        this program does not know (a newer release's `db upgrade`) THEN the
        relay still answers 250, the mail waits in the spool, and it is
        stored as soon as the revisions match again."""
        with services.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        time.sleep(SCHEMA_CHECK_SECONDS + 1)  # the ingester notices at its next check
        send(service.smtp_port, make_message(subject="移行中に届いたメール"))
        time.sleep(2)
        assert services.spool.backlog() == 1
        assert api.get("/api/v1/messages").json()["items"] == []
        with services.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": schema.head_revision()})
        items = wait_for(lambda: api.get("/api/v1/messages").json()["items"], 30)
        assert [i["subject"] for i in items] == ["移行中に届いたメール"]


def test_the_head_the_processes_check_against_is_the_migrations_head() -> None:
    assert schema.HEAD == schema.head_revision()
