"""The durable spool: raw mail is on disk before the SMTP relay answers 250.

Layout under the spool folder::

    tmp/<id>.eml         being received; never read by anyone else
    new/<id>.eml         received and fsynced
    new/<id>.json        envelope, size and sha256 of the .eml; written last,
                         so its presence is the commit record
    corrupt/<id>.*       entries that failed verification, kept for inspection

A crash mid-write leaves only ``tmp/`` files or a ``new/*.eml`` without its
``.json``; neither was acknowledged, and :meth:`Spool.recover` removes them.
A ``.json`` whose ``.eml`` does not match its recorded size and hash is moved
to ``corrupt/`` and never presented as a message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .errors import SpoolError
from .fsync import DirSyncer, storage_error

log = logging.getLogger(__name__)

_WRITE_BUFFER = 256 * 1024


@dataclass(frozen=True)
class Envelope:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    client_address: str
    received_at: dt.datetime
    helo: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "mail_from": self.mail_from,
            "rcpt_tos": list(self.rcpt_tos),
            "client_address": self.client_address,
            "received_at": self.received_at.isoformat(),
            "helo": self.helo,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Envelope":
        return cls(
            mail_from=data["mail_from"],
            rcpt_tos=tuple(data["rcpt_tos"]),
            client_address=data.get("client_address", ""),
            received_at=dt.datetime.fromisoformat(data["received_at"]),
            helo=data.get("helo", ""),
        )


@dataclass(frozen=True)
class SpooledMessage:
    spool_id: str
    envelope: Envelope
    raw_path: Path
    size: int
    sha256: str


class SpoolCorrupt(Exception):
    """A committed entry does not match its record."""


class SpoolWriter:
    """Receives one message's bytes into ``tmp/``; hashes as it goes."""

    def __init__(self, spool_id: str, path: Path, fh: BinaryIO) -> None:
        self.spool_id = spool_id
        self.path = path
        self._fh = fh
        self._hash = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        try:
            self._fh.write(data)
        except OSError as exc:
            raise storage_error(exc, "writing spool file") from exc
        self._hash.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def abort(self) -> None:
        """Discard the partial file; safe to call more than once."""
        if not self.closed:
            self.closed = True
            try:
                self._fh.close()
            except OSError:
                pass
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove partial spool file %s: %s", self.path, exc)


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.new = root / "new"
        self.corrupt = root / "corrupt"
        self._new_syncer = DirSyncer(self.new)

    def ensure(self) -> None:
        for folder in (self.tmp, self.new, self.corrupt):
            folder.mkdir(parents=True, exist_ok=True)

    # -- receiving ---------------------------------------------------------

    def open(self) -> SpoolWriter:
        spool_id = f"{time.time_ns():020d}-{secrets.token_hex(6)}"
        path = self.tmp / f"{spool_id}.eml"
        try:
            fh = open(path, "xb", buffering=_WRITE_BUFFER)
        except OSError as exc:
            raise storage_error(exc, "opening spool file") from exc
        return SpoolWriter(spool_id, path, fh)

    def commit(self, writer: SpoolWriter, envelope: Envelope) -> SpooledMessage:
        """Make the message durable. Blocking: call it from a thread.

        Only after this returns may the relay answer 250.
        """
        try:
            writer._fh.flush()
            os.fsync(writer._fh.fileno())
            writer._fh.close()
            writer.closed = True
            record = dict(envelope.to_json(), size=writer.size, sha256=writer.sha256)
            record_tmp = self.tmp / f"{writer.spool_id}.json"
            with open(record_tmp, "xb") as fh:
                fh.write(json.dumps(record, ensure_ascii=False).encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
            raw_final = self.new / f"{writer.spool_id}.eml"
            os.rename(writer.path, raw_final)
            os.rename(record_tmp, self.new / f"{writer.spool_id}.json")
            self._new_syncer.sync()
        except OSError as exc:
            writer.abort()
            self._discard(writer.spool_id)
            raise storage_error(exc, "committing spool file") from exc
        return SpooledMessage(writer.spool_id, envelope, raw_final, writer.size, writer.sha256)

    def _discard(self, spool_id: str) -> None:
        for path in (
            self.tmp / f"{spool_id}.json",
            self.new / f"{spool_id}.json",
            self.new / f"{spool_id}.eml",
        ):
            try:
                path.unlink()
            except OSError:
                pass

    # -- recovery and ingestion ---------------------------------------------

    def recover(self) -> int:
        """Remove leftovers of interrupted receptions (never acknowledged).

        Call once at relay start-up, before accepting connections.
        """
        self.ensure()
        removed = 0
        for path in self.tmp.iterdir():
            path.unlink()
            removed += 1
        for path in self.new.glob("*.eml"):
            if not path.with_suffix(".json").exists():
                path.unlink()
                removed += 1
        if removed:
            log.warning("removed %d unacknowledged partial spool file(s)", removed)
        return removed

    def pending(self) -> list[str]:
        """Committed spool ids, oldest first."""
        try:
            names = os.listdir(self.new)
        except FileNotFoundError:
            return []
        return sorted(name[:-5] for name in names if name.endswith(".json"))

    def backlog(self) -> int:
        return len(self.pending())

    def load(self, spool_id: str) -> SpooledMessage:
        """Read and verify a committed entry; raises :class:`SpoolCorrupt`."""
        record_path = self.new / f"{spool_id}.json"
        raw_path = self.new / f"{spool_id}.eml"
        try:
            record = json.loads(record_path.read_bytes())
            envelope = Envelope.from_json(record)
            size, digest = int(record["size"]), str(record["sha256"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SpoolCorrupt(f"{spool_id}: unreadable envelope record ({exc})") from exc
        try:
            actual_size = raw_path.stat().st_size
        except FileNotFoundError as exc:
            raise SpoolCorrupt(f"{spool_id}: raw message missing") from exc
        if actual_size != size:
            raise SpoolCorrupt(f"{spool_id}: raw message is {actual_size} bytes, record says {size}")
        if _file_sha256(raw_path) != digest:
            raise SpoolCorrupt(f"{spool_id}: raw message does not match its sha256")
        return SpooledMessage(spool_id, envelope, raw_path, size, digest)

    def quarantine(self, spool_id: str) -> None:
        self.corrupt.mkdir(parents=True, exist_ok=True)
        for suffix in (".eml", ".json"):
            src = self.new / f"{spool_id}{suffix}"
            if src.exists():
                os.replace(src, self.corrupt / src.name)

    def remove(self, spool_id: str) -> None:
        """Forget an entry once it is stored; the record goes first so that a
        crash in between leaves an orphan .eml that recovery removes."""
        for suffix in (".json", ".eml"):
            try:
                (self.new / f"{spool_id}{suffix}").unlink()
            except FileNotFoundError:
                pass

    def writable(self) -> bool:
        probe = self.tmp / f".probe-{secrets.token_hex(4)}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
            return True
        except OSError:
            return False


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
