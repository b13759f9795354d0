"""A registration as one zip for the document system: ``metadata.json``
(the record and the list of files with their sha256), the original mail as
``original.eml``, its text as ``本文.txt`` and the chosen attachments under
``attachments/``.

The zip is streamed: entries are compressed and sent chunk by chunk (with
data descriptors, as a zip written to a pipe is), so a 30 MB mail is never
whole in memory. The same registration gives the same bytes every time:
fixed entry order, fixed timestamps (the registration's time), fixed
compression. Attachment names are the decoded names made safe (no folder,
no name that climbs out of the zip, no reserved Windows name) and unique
ignoring case, as Windows compares them.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from .. import jpdates
from ..blobs import BlobStore, OriginalStore
from ..errors import NotFound
from ..mail.filenames import download_name
from ..models import Attachment, Message, Registration
from .records import registration_records

FORMAT_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("registration-package.schema.json")
ORIGINAL_NAME = "original.eml"
BODY_NAME = "本文.txt"
ATTACHMENT_FOLDER = "attachments/"


@dataclass(frozen=True)
class _Entry:
    name: str
    size: int
    compress: bool
    chunks: Callable[[], Iterator[bytes]]


@dataclass(frozen=True)
class Package:
    filename: str
    entries: tuple[_Entry, ...]
    date_time: tuple[int, int, int, int, int, int]

    def chunks(self) -> Iterator[bytes]:
        return _zip_chunks(self.entries, self.date_time)


def build(
    engine: Engine,
    blobs: BlobStore,
    originals: OriginalStore,
    registration_id: int,
    section_ids: Collection[int] | None = None,
) -> Package:
    """The package of one registration (its current record)."""
    with Session(engine) as session:
        registration = session.get(Registration, registration_id)
        if registration is None or (section_ids is not None and registration.section_id not in section_ids):
            raise NotFound(f"no registration {registration_id}")
        record = registration_records(session, [registration_id])[registration_id]
        message = session.execute(
            select(Message.raw_sha256, Message.raw_size, Message.text_body).where(Message.id == registration.message_id)
        ).one()
        chosen = {
            a.id: (a.sha256, a.size)
            for a in session.scalars(select(Attachment).where(Attachment.id.in_(registration.attachment_ids or [0])))
        }
        registered_at = jpdates.to_jst(registration.registered_at)
        label = f"{registration.fiscal_year}_{registration.receipt_number}"

    body = message.text_body.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    files = [
        _file(ORIGINAL_NAME, "original", message.raw_size, message.raw_sha256),
        _file(BODY_NAME, "body", len(body), hashlib.sha256(body).hexdigest()),
    ]
    entries = [
        _Entry(ORIGINAL_NAME, message.raw_size, True, lambda: originals.chunks(message.raw_sha256, message.raw_size)),
        _Entry(BODY_NAME, len(body), True, lambda: iter((body,))),
    ]
    taken = {ORIGINAL_NAME.casefold(), BODY_NAME.casefold(), "metadata.json"}
    for item in record["attachments"]:
        sha, size = chosen[item["id"]]
        name = ATTACHMENT_FOLDER + _unique(item["filename"], taken)
        files.append(_file(name, "attachment", size, sha, attachment_id=item["id"]))
        # Most documents (PDF, Office, images) are compressed already.
        entries.append(_Entry(name, size, False, partial(blobs.chunks, sha)))
    metadata = {"format": FORMAT_VERSION, "registration": record, "files": files}
    encoded = (json.dumps(metadata, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode("utf-8")
    entries.insert(0, _Entry("metadata.json", len(encoded), True, lambda: iter((encoded,))))
    return Package(
        filename=download_name(label, f"registration-{registration_id}") + ".zip",
        entries=tuple(entries),
        date_time=(
            max(registered_at.year, 1980),
            registered_at.month,
            registered_at.day,
            registered_at.hour,
            registered_at.minute,
            registered_at.second // 2 * 2,
        ),
    )


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return loaded


def _file(path: str, role: str, size: int, sha256: str, attachment_id: int | None = None) -> dict[str, Any]:
    return {"path": path, "role": role, "size": size, "sha256": sha256, "attachment_id": attachment_id}


def _unique(name: str, taken: set[str]) -> str:
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate, n = name, 1
    while (ATTACHMENT_FOLDER + candidate).casefold() in taken:
        n += 1
        candidate = f"{stem} ({n}).{ext}" if ext else f"{stem} ({n})"
    taken.add((ATTACHMENT_FOLDER + candidate).casefold())
    return candidate


class _Sink:
    """A write-only file for zipfile; what it receives is taken out in pieces."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> Iterator[bytes]:
        if self.parts:
            data, self.parts = b"".join(self.parts), []
            yield data


def _zip_chunks(entries: tuple[_Entry, ...], date_time: tuple[int, int, int, int, int, int]) -> Iterator[bytes]:
    sink = _Sink()
    # No tell(): zipfile then writes a stream (data descriptors after each entry).
    with zipfile.ZipFile(sink, "w") as archive:  # type: ignore[call-overload]
        for entry in entries:
            info = zipfile.ZipInfo(entry.name, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED if entry.compress else zipfile.ZIP_STORED
            info.external_attr = 0o600 << 16
            info.create_system = 3
            with archive.open(info, "w", force_zip64=entry.size >= zipfile.ZIP64_LIMIT) as out:
                for chunk in entry.chunks():
                    out.write(chunk)
                    yield from sink.take()
            yield from sink.take()
    yield from sink.take()
