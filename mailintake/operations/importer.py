"""Backlog import: .eml files, mbox files and Maildir folders.

Imported mail takes the same path as mail from the relay — into the spool,
then through the ingester — so it is decoded and stored identically, and
(address, raw sha256) uniqueness makes a re-run import nothing twice.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import mailbox
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import BadRequest, NotFound
from ..intake.lock import IngestLockHeld
from ..intake.spool import Envelope
from ..intake.worker import IngestSupervisor
from ..mail.addresses import normalize_address
from ..models import Address, Message, utcnow
from ..services import Services

_RECEIVED_DATE = re.compile(rb";\s*([^;]+?)\s*$", re.S)


@dataclass
class ImportResult:
    found: int = 0
    spooled: int = 0
    already_stored: int = 0
    ingested_now: bool = False


def _check_maildir(path: Path) -> None:
    if not all((path / sub).is_dir() for sub in ("cur", "new")):
        raise BadRequest(f"{path} is a folder but not a Maildir (no cur/ and new/)")


def iter_sources(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        if path.is_dir():
            _check_maildir(path)
            box = mailbox.Maildir(path, factory=None, create=False)
            for key in sorted(box.keys()):
                yield box.get_bytes(key)
        elif path.is_file():
            with open(path, "rb") as fh:
                head = fh.read(5)
            if head == b"From ":
                mbox = mailbox.mbox(path, factory=None, create=False)
                for key in mbox.keys():
                    yield mbox.get_bytes(key)
            else:
                yield path.read_bytes()
        else:
            raise NotFound(f"no such file or folder: {path}")


def count_sources(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        if path.is_dir():
            _check_maildir(path)
            total += len(mailbox.Maildir(path, factory=None, create=False))
        elif path.is_file():
            with open(path, "rb") as fh:
                mbox_file = fh.read(5) == b"From "
            total += len(mailbox.mbox(path, factory=None, create=False)) if mbox_file else 1
    return total


def original_arrival(raw: bytes) -> dt.datetime:
    """When the mail first arrived: the newest Received: header's date, else
    Date:, else now. The header block only is scanned."""
    headers = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    unfolded = re.sub(rb"\r?\n[ \t]+", b" ", headers)
    candidates = []
    for line in unfolded.splitlines():
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"received":
            match = _RECEIVED_DATE.search(value)
            if match:
                candidates.append(match.group(1))
                break  # the topmost is the last hop: ours
    for line in unfolded.splitlines():
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"date":
            candidates.append(value.strip())
    for candidate in candidates:
        try:
            when = email.utils.parsedate_to_datetime(candidate.decode("ascii", "replace"))
        except (TypeError, ValueError, IndexError):
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.astimezone(dt.UTC)
    return utcnow()


def _return_path(raw: bytes) -> str:
    headers = raw.split(b"\n\n", 1)[0]
    match = re.search(rb"^Return-Path:\s*<([^>]*)>", headers, re.M | re.I)
    return match.group(1).decode("ascii", "replace") if match else ""


def import_messages(
    services: Services,
    address: str,
    paths: list[Path],
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    normalized = normalize_address(address)
    with Session(services.engine) as session:
        address_id = session.scalar(select(Address.id).where(Address.address == normalized))
        if address_id is None:
            raise NotFound(f"no such designated address: {normalized} (add it with 'mailintake address add')")
        stored = set(session.scalars(select(Message.raw_sha256).where(Message.address_id == address_id)))

    result = ImportResult()
    spool = services.spool
    for raw in iter_sources(paths):
        result.found += 1
        raw = _crlf(raw)
        digest = hashlib.sha256(raw).hexdigest()
        if digest in stored:
            result.already_stored += 1
        else:
            stored.add(digest)
            writer = spool.open()
            writer.write(raw)
            spool.commit(
                writer,
                Envelope(
                    mail_from=_return_path(raw),
                    rcpt_tos=(normalized,),
                    client_address="import",
                    received_at=original_arrival(raw),
                ),
            )
            result.spooled += 1
        if progress is not None:
            progress(1)

    supervisor = IngestSupervisor(services.settings)
    try:
        supervisor.start()
    except IngestLockHeld:
        return result  # the running service ingests them
    try:
        supervisor.wake()
        while spool.backlog() > 0:
            time.sleep(0.1)
        result.ingested_now = True
    finally:
        supervisor.stop()
    return result


def _crlf(raw: bytes) -> bytes:
    """Mail on disk often has bare LF line ends; SMTP would have carried CRLF.
    Normalising makes an imported copy hash like the relayed one."""
    if b"\r\n" in raw[:2048]:
        return raw
    return raw.replace(b"\n", b"\r\n")
