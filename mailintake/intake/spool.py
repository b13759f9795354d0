"""The durable spool: raw mail is on disk before the SMTP relay answers 250.

One file per message, ``new/<id>.msg``::

    <the message bytes exactly as received, after dot-unstuffing>
    <record: JSON with the envelope, size and sha256 of the bytes>\\n
    MAILINTAKE-SPOOL <record length, 10 digits>\\n

A file is written under ``tmp/`` and renamed into ``new/``; then one
``syncfs`` of the spool filesystem, run by a commit thread for every message
committed meanwhile (group commit), makes it durable before the relay
answers 250.
A crash mid-write leaves a ``tmp/`` file, never acknowledged and removed at
start-up; a crash before the flush may leave a ``new/`` file whose bytes never
reached the disk. Every entry is therefore verified when read: one whose
footer, record, size or hash does not check out is moved to ``corrupt/`` and
never presented as a message. (It was never acknowledged either: the MTA
still holds the mail and sends it again.)

Small messages are buffered in memory and written in one go at the end;
larger ones spill to their ``tmp/`` file as they arrive, so memory use
per connection stays bounded.
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

from ..errors import SpoolError
from ..fsync import CommitThread, SpoolCorrupt, flush_filesystem, read_exactly, storage_error

log = logging.getLogger(__name__)

SPILL_BYTES = 256 * 1024
_FOOTER_PREFIX = b"MAILINTAKE-SPOOL "
_FOOTER_LEN = len(_FOOTER_PREFIX) + 10 + 1
_SUFFIX = ".msg"


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
    def from_json(cls, data: dict[str, Any]) -> Envelope:
        return cls(
            mail_from=data["mail_from"],
            rcpt_tos=tuple(data["rcpt_tos"]),
            client_address=data.get("client_address", ""),
            received_at=dt.datetime.fromisoformat(data["received_at"]),
            helo=data.get("helo", ""),
        )


@dataclass(frozen=True)
class SpooledMessage:
    """A committed spool entry; the message is the first ``size`` bytes of ``path``."""

    spool_id: str
    envelope: Envelope
    path: Path
    size: int
    sha256: str


class SpoolWriter:
    """Receives one message; hashes as it goes."""

    def __init__(self, spool: Spool, spool_id: str) -> None:
        self._spool = spool
        self.spool_id = spool_id
        self.path = spool.tmp / f"{spool_id}{_SUFFIX}"
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._fh: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self.size = 0
        self.finished = False

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)
        if self._fh is None:
            self._buffer.append(data)
            self._buffered += len(data)
            if self._buffered > SPILL_BYTES:
                self._spill()
            return
        try:
            self._fh.write(data)
        except OSError as exc:
            raise storage_error(exc, "writing spool file") from exc

    def _spill(self) -> None:
        self._fh = self._spool._create(self.path)
        try:
            self._fh.writelines(self._buffer)
        except OSError as exc:
            raise storage_error(exc, "writing spool file") from exc
        self._buffer, self._buffered = [], 0

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def abort(self) -> None:
        """Discard what was received; safe to call more than once."""
        self._buffer, self._buffered = [], 0
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None
        if not self.finished:
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
        self.poison = root / "poison"
        self._committer: CommitThread | None = None

    def ensure(self) -> None:
        for folder in (self.tmp, self.new, self.corrupt, self.poison):
            folder.mkdir(parents=True, exist_ok=True)

    # -- receiving ---------------------------------------------------------

    def check_writable(self) -> None:
        """Cheap pre-check before DATA (no file is created)."""
        if not os.access(self.tmp, os.W_OK):
            raise SpoolError("spool folder is not writable")

    def open(self) -> SpoolWriter:
        return SpoolWriter(self, f"{time.time_ns():020d}-{secrets.token_hex(6)}")

    def _create(self, path: Path) -> BinaryIO:
        try:
            return open(path, "xb", buffering=SPILL_BYTES)
        except OSError as exc:
            raise storage_error(exc, "creating spool file") from exc

    def write_and_rename(self, writer: SpoolWriter, envelope: Envelope) -> SpooledMessage:
        """Finish the file and move it into ``new/``; not yet durable.

        Blocking; the relay runs it through :meth:`commit_async`.
        """
        record = dict(envelope.to_json(), size=writer.size, sha256=writer.sha256)
        trailer = json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
        footer = _FOOTER_PREFIX + b"%010d\n" % len(trailer)
        final = self.new / writer.path.name
        try:
            if writer._fh is None:
                writer._fh = self._create(writer.path)
                writer._fh.writelines(writer._buffer)
                writer._buffer, writer._buffered = [], 0
            fh = writer._fh
            fh.write(trailer + footer)
            fh.close()
            writer._fh = None
            os.rename(writer.path, final)
            writer.finished = True
        except OSError as exc:
            writer.abort()
            raise storage_error(exc, "writing spool file") from exc
        return SpooledMessage(writer.spool_id, envelope, final, writer.size, writer.sha256)

    async def commit_async(self, writer: SpoolWriter, envelope: Envelope) -> SpooledMessage:
        """Write, rename and flush in the commit thread, sharing one flush
        with every message committed meanwhile (group commit). On failure
        nothing is left in ``new/``, so nothing is stored without its 250."""
        if self._committer is None:
            self._committer = CommitThread(lambda: flush_filesystem(self.new), name="spool-commit")
        try:
            return await self._committer.commit(lambda: self.write_and_rename(writer, envelope), self._take_back)
        except SpoolError:
            raise
        except OSError as exc:
            raise storage_error(exc, "flushing spool") from exc

    def commit(self, writer: SpoolWriter, envelope: Envelope) -> SpooledMessage:
        """Blocking commit for tools (``mailintake import``)."""
        spooled = self.write_and_rename(writer, envelope)
        try:
            flush_filesystem(self.new)
        except OSError as exc:
            self._take_back(spooled)
            raise storage_error(exc, "flushing spool") from exc
        return spooled

    def _take_back(self, spooled: SpooledMessage) -> None:
        try:
            spooled.path.unlink()
        except OSError:
            pass

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()
            self._committer = None

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
        if removed:
            log.warning("removed %d unacknowledged partial spool file(s)", removed)
        return removed

    def pending(self) -> list[str]:
        """Committed spool ids, oldest first."""
        try:
            names = os.listdir(self.new)
        except FileNotFoundError:
            return []
        return sorted(name[: -len(_SUFFIX)] for name in names if name.endswith(_SUFFIX))

    def backlog(self) -> int:
        return len(self.pending())

    def load(self, spool_id: str) -> SpooledMessage:
        """Read and verify a committed entry; raises :class:`SpoolCorrupt`."""
        path = self.new / f"{spool_id}{_SUFFIX}"
        try:
            with open(path, "rb") as fh:
                file_size = os.fstat(fh.fileno()).st_size
                if file_size < _FOOTER_LEN:
                    raise SpoolCorrupt(f"{spool_id}: too short for a spool file")
                fh.seek(file_size - _FOOTER_LEN)
                footer = fh.read(_FOOTER_LEN)
                if not footer.startswith(_FOOTER_PREFIX) or not footer.endswith(b"\n"):
                    raise SpoolCorrupt(f"{spool_id}: no spool footer (truncated?)")
                trailer_len = int(footer[len(_FOOTER_PREFIX) : -1])
                size = file_size - _FOOTER_LEN - trailer_len
                if size < 0:
                    raise SpoolCorrupt(f"{spool_id}: footer does not fit the file")
                fh.seek(size)
                record = json.loads(fh.read(trailer_len))
                envelope = Envelope.from_json(record)
                if int(record["size"]) != size:
                    raise SpoolCorrupt(f"{spool_id}: message is {size} bytes, record says {record['size']}")
                fh.seek(0)
                digest = hashlib.sha256()
                for chunk in read_exactly(fh, size):
                    digest.update(chunk)
                if digest.hexdigest() != record["sha256"]:
                    raise SpoolCorrupt(f"{spool_id}: message does not match its sha256")
        except FileNotFoundError as exc:
            raise SpoolCorrupt(f"{spool_id}: spool file vanished") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise SpoolCorrupt(f"{spool_id}: unreadable spool record ({exc})") from exc
        return SpooledMessage(spool_id, envelope, path, size, str(record["sha256"]))

    def quarantine(self, spool_id: str) -> None:
        self.corrupt.mkdir(parents=True, exist_ok=True)
        src = self.new / f"{spool_id}{_SUFFIX}"
        if src.exists():
            os.replace(src, self.corrupt / src.name)

    def remove(self, spool_id: str) -> None:
        """Forget an entry once it is stored."""
        for path in (self.new / f"{spool_id}{_SUFFIX}", self.poison / spool_id, self.poison / f"{spool_id}.crashed"):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def mark_poison(self, spool_id: str) -> None:
        """Record that parsing this entry hung or crashed the parser."""
        self.poison.mkdir(parents=True, exist_ok=True)
        (self.poison / spool_id).touch()

    def crashed_before(self, spool_id: str) -> bool:
        """Record that the parser died (from outside, say) while on this
        entry; True if it had happened before. One death may be chance (an
        administrator's kill, the OOM killer taking the biggest process); a
        second one on the same entry is the entry."""
        self.poison.mkdir(parents=True, exist_ok=True)
        marker = self.poison / f"{spool_id}.crashed"
        if marker.exists():
            return True
        marker.touch()
        return False

    def is_poison(self, spool_id: str) -> bool:
        return (self.poison / spool_id).exists()

    def writable(self) -> bool:
        probe = self.tmp / f".probe-{secrets.token_hex(4)}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
            return True
        except OSError:
            return False
