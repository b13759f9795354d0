"""The two blob stores keep the same promises: a file comes back byte-exact
in pieces, is stored once per sha256, is never whole in memory, and is
moved between the stores with its sha256 checked. The database store also
holds up when two nodes store the same file at once, and when a purge on
one node meets another node's ingester storing that file again."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import func, insert, select

from mailintake.blobs import CHUNK, STORES, BlobStore, OriginalStore, open_stores
from mailintake.config import Settings
from mailintake.intake.ingest import FilesGone, Ingester
from mailintake.intake.spool import Envelope
from mailintake.models import Attachment, StoredChunk, StoredFile
from mailintake.operations import blob_moving
from mailintake.records import retention
from mailintake.services import Services

from .factories import designate, stored_message
from .mails import make_message

SOUMU = "soumu@city.example.jp"


@pytest.fixture(params=STORES)
def stores(request: pytest.FixtureRequest, services: Services) -> tuple[BlobStore, OriginalStore]:
    """Both stores on both databases."""
    return open_stores(services.settings, services.engine, request.param)


def _original(tmp_path: Path, size: int) -> tuple[Path, bytes, str]:
    """A spool-like file: the message, then a record after it."""
    data = os.urandom(size)
    path = tmp_path / f"spooled-{size}"
    path.write_bytes(data + b"\nRECORD AFTER THE MESSAGE\n")
    return path, data, hashlib.sha256(data).hexdigest()


def test_files_come_back_byte_exact_in_pieces_and_are_stored_once(
    stores: tuple[BlobStore, OriginalStore], services: Services, tmp_path: Path
) -> None:
    blobs, originals = stores
    small = b"%PDF-1.4 small"
    large = os.urandom(2 * CHUNK + 123)
    small_sha = blobs.put_bytes(small)
    assert blobs.put_bytes(small) == small_sha  # again: nothing new
    streamed_sha, size = blobs.put_stream(large[i : i + 7000] for i in range(0, len(large), 7000))
    path, data, sha = _original(tmp_path, CHUNK + 5)
    originals.keep(path, len(data), sha)
    blobs.flush()
    originals.flush()

    assert (streamed_sha, size) == (hashlib.sha256(large).hexdigest(), len(large))
    assert b"".join(blobs.chunks(small_sha)) == small
    pieces = list(blobs.chunks(streamed_sha))
    assert b"".join(pieces) == large and max(len(p) for p in pieces) <= CHUNK
    assert b"".join(originals.chunks(sha, len(data))) == data  # the record after it is not part of it
    assert b"".join(originals.chunks(sha, 10)) == data[:10]
    if blobs.kind == "database":
        with services.engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(StoredFile)) == 3
            assert conn.scalar(select(func.count()).select_from(StoredChunk)) == 1 + 3 + 2
    assert not blobs.exists("0" * 64)
    with pytest.raises(FileNotFoundError):
        list(blobs.chunks("0" * 64))


def test_a_thirty_megabyte_original_is_never_whole_in_memory(
    stores: tuple[BlobStore, OriginalStore], tmp_path: Path
) -> None:
    _, originals = stores
    path, data, sha = _original(tmp_path, 30 * 1024 * 1024)
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        originals.keep(path, len(data), sha)
        originals.flush()
        for piece in originals.chunks(sha, len(data)):
            digest.update(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == sha
    assert peak < 6 * CHUNK, f"peak {peak / CHUNK:.1f} MiB"


@pytest.mark.postgresql
def test_two_nodes_storing_the_same_large_file_at_once_store_it_once(postgres_url: str, make_settings: Any) -> None:
    settings = make_settings(database_url=postgres_url, blob_store="database")
    from mailintake.services import build_services

    services = build_services(settings)
    data = os.urandom(3 * CHUNK)
    results: list[Any] = []

    def store() -> None:
        blobs, _ = open_stores(settings, services.engine)
        try:
            results.append(blobs.put_stream(iter([data])))
        except Exception as exc:  # pragma: no cover - reported below
            results.append(exc)

    threads = [threading.Thread(target=store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    services_blobs, _ = open_stores(settings, services.engine)
    try:
        assert results == [(hashlib.sha256(data).hexdigest(), len(data))] * 4
        with services.engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(StoredFile)) == 1
            assert conn.scalar(select(func.count()).select_from(StoredChunk)) == 3
        assert b"".join(services_blobs.chunks(hashlib.sha256(data).hexdigest())) == data
    finally:
        services.close()


@pytest.mark.postgresql
def test_a_purge_waits_for_an_ingester_holding_a_file_and_then_keeps_it(
    postgres_url: str, make_settings: Callable[..., Settings]
) -> None:
    """Node B's ingester stored a file again (same sha256 as a purged mail's)
    and is adding the rows that refer to it; node A's purge must not remove
    it in between."""
    from mailintake.services import build_services

    services = build_services(make_settings(database_url=postgres_url, blob_store="database"))
    try:
        designate(services, SOUMU, "総務課")
        message_id = stored_message(services, SOUMU, attachments=(("a.pdf", b"%PDF shared", "application/pdf"),))
        sha = hashlib.sha256(b"%PDF shared").hexdigest()
        with services.engine.begin() as conn:  # the purge deleted the old mail's rows
            conn.execute(sqlalchemy.delete(Attachment))
        ingester = services.engine.connect()
        transaction = ingester.begin()
        assert services.blobs.lock(ingester, {sha}) == {sha}  # node B holds it ...
        removed: list[int] = []
        purge = threading.Thread(
            target=lambda: removed.append(
                retention._remove_unused_files(services.engine, services.blobs, services.originals, {sha}, set(), set())
            )
        )
        purge.start()
        time.sleep(1.0)
        assert purge.is_alive() and not removed  # ... so node A's purge waits
        ingester.execute(
            insert(Attachment).values(message_id=message_id, position=0, filename="a.pdf",
                                      content_type="application/pdf", size=11, sha256=sha)
        )  # fmt: skip
        transaction.commit()
        ingester.close()
        purge.join(30)
        assert removed == [0] and services.blobs.exists(sha)
    finally:
        services.close()


def test_a_batch_whose_files_a_purge_removed_meanwhile_is_stored_again_with_them(
    settings: Settings, services: Services, designated: str
) -> None:
    """Only the database store is shared by nodes (the files store's one
    ingester and its purge hold the same ingest lock)."""
    send_to_spool(
        services, make_message(subject="消された添付", attachments=[("資料.pdf", b"%PDF again", "application/pdf")])
    )
    ingester = Ingester(settings.replace(blob_store="database"), services.engine, services.spool)
    pending = services.spool.pending()
    items = ingester._load_and_parse(pending)
    sha = hashlib.sha256(b"%PDF again").hexdigest()
    ingester.blobs.flush()
    ingester.blobs.remove([sha])  # a purge elsewhere, between parsing and storing
    with pytest.raises(FilesGone):
        ingester.ingest_batch(pending)
    assert services.messages.count() == 0 and services.spool.pending() == pending
    assert ingester.ingest_batch(pending) == len(items)
    assert ingester.blobs.exists(sha) and services.messages.count() == 1


def send_to_spool(services: Services, raw: bytes) -> None:
    writer = services.spool.open()
    writer.write(raw)
    services.spool.commit(writer, Envelope("kikaku@example.co.jp", (SOUMU,), "127.0.0.1", dt.datetime.now(dt.UTC)))


@pytest.fixture
def filled(services: Services, designated: str) -> Iterator[Services]:
    for i in range(3):
        stored_message(
            services,
            designated,
            subject=f"移す {i}",
            attachments=((f"{i}.pdf", b"%PDF " + bytes([i]) * 50, "application/pdf"),),
        )
    yield services


def test_moving_between_the_stores_checks_every_sha256_and_can_be_repeated(filled: Services) -> None:
    services = filled
    here = (services.blobs, services.originals)
    other_kind = "database" if services.blobs.kind == "files" else "files"
    there = open_stores(services.settings, services.engine, other_kind)
    first = blob_moving.move(services.engine, here, there)
    assert (first.copied, first.present, first.missing, first.damaged) == (6, 0, [], [])
    assert blob_moving.move(services.engine, here, there).present == 6  # nothing to do twice
    back = blob_moving.move(services.engine, there, here, remove_source=True)
    assert (back.present, back.removed) == (6, 6)
    with services.engine.connect() as conn:
        shas = list(conn.scalars(select(Attachment.sha256)))
    assert all(services.blobs.exists(s) and not there[0].exists(s) for s in shas)


def test_a_damaged_file_is_reported_and_not_moved(filled: Services, tmp_path: Path) -> None:
    services = filled
    files = open_stores(services.settings, services.engine, "files")
    database = open_stores(services.settings, services.engine, "database")
    if services.blobs.kind == "database":
        blob_moving.move(services.engine, database, files, remove_source=True)
    with services.engine.connect() as conn:
        damaged = conn.scalars(select(Attachment.sha256).order_by(Attachment.id)).first()
    assert damaged is not None
    files[0].path_for(damaged).write_bytes(b"%PDF not what was stored")  # type: ignore[attr-defined]
    result = blob_moving.move(services.engine, files, database)
    assert result.damaged == [damaged] and not database[0].exists(damaged)
    assert result.copied + result.present == 5
