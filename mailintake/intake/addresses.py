"""Designated receiving addresses (収受用アドレス).

The database is the record. After each change the enabled addresses are also
written to a snapshot file in the data folder, which the SMTP relay reads, so
that (1) changes take effect without a restart and (2) the relay keeps
answering RCPT correctly while the database is unavailable.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from ..errors import AddressError, NotFound
from ..fsync import fsync_dir
from ..mail.addresses import designated_form, normalize_address, validate_address
from ..models import Address, Message
from ..people.sections import find_section

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AddressInfo:
    address: str
    section: str  # its name, for people; empty for no section
    label: str
    enabled: bool
    message_count: int
    last_received: dt.datetime | None = None
    section_id: int | None = None


class AddressService:
    def __init__(self, engine: Engine, snapshot_path: Path) -> None:
        self.engine = engine
        self.snapshot_path = snapshot_path

    def add(self, address: str, section: str | int, label: str = "") -> AddressInfo:
        """Designates ``address`` for an existing section (its id or name)."""
        normalized = validate_address(address)
        if isinstance(section, str) and not section.strip():
            raise AddressError("a section (担当課) is required")
        with Session(self.engine) as session:
            if session.scalar(select(Address).where(Address.address == normalized)):
                raise AddressError(f"address already designated: {normalized}")
            row = Address(address=normalized, section=find_section(session, section), label=label.strip())
            session.add(row)
            session.commit()
        self.write_snapshot()
        return self.get(normalized)

    def set_enabled(self, address: str, enabled: bool) -> AddressInfo:
        normalized = normalize_address(address)
        with Session(self.engine) as session:
            row = session.scalar(select(Address).where(Address.address == normalized))
            if row is None:
                raise NotFound(f"no such designated address: {normalized}")
            row.enabled = enabled
            session.commit()
        self.write_snapshot()
        return self.get(normalized)

    def get(self, address: str) -> AddressInfo:
        normalized = normalize_address(address)
        for info in self.list():
            if info.address == normalized:
                return info
        raise NotFound(f"no such designated address: {normalized}")

    def list(self) -> list[AddressInfo]:
        counts = (
            select(
                Message.address_id,
                func.count(Message.id).label("n"),
                func.max(Message.received_at).label("last"),
            )
            .where(Message.probe_id.is_(None))
            .group_by(Message.address_id)
            .subquery()
        )
        stmt = (
            select(Address, func.coalesce(counts.c.n, 0), counts.c.last)
            .outerjoin(counts, counts.c.address_id == Address.id)
            .order_by(Address.address)
        )
        with Session(self.engine) as session:
            return [
                AddressInfo(
                    row.address,
                    row.section_name,
                    row.label,
                    row.enabled,
                    int(n),
                    _aware(last),
                    row.section_id,
                )
                for row, n, last in session.execute(stmt)
            ]

    def update(self, address: str, section: str | int | None = None, label: str | None = None) -> AddressInfo:
        normalized = normalize_address(address)
        with Session(self.engine) as session:
            row = session.scalar(select(Address).where(Address.address == normalized))
            if row is None:
                raise NotFound(f"no such designated address: {normalized}")
            if section is not None:
                if isinstance(section, str) and not section.strip():
                    raise AddressError("a section (担当課) is required")
                row.section = find_section(session, section)
            if label is not None:
                row.label = label.strip()
            session.commit()
        return self.get(normalized)

    def delete(self, address: str) -> None:
        """Only an address that never stored mail can go; otherwise disable it."""
        normalized = normalize_address(address)
        with Session(self.engine) as session:
            row = session.scalar(select(Address).where(Address.address == normalized))
            if row is None:
                raise NotFound(f"no such designated address: {normalized}")
            stored = session.scalar(select(func.count(Message.id)).where(Message.address_id == row.id))
            if stored:
                raise AddressError(f"{normalized} has {stored} stored message(s); disable it instead")
            session.delete(row)
            session.commit()
        self.write_snapshot()

    def daily_counts(self, address: str, days: int, today: dt.date | None = None) -> builtins.list[tuple[dt.date, int]]:
        """Messages per day (Japan time) for the last ``days`` days, oldest first."""
        normalized = normalize_address(address)
        today = today or dt.datetime.now(JST).date()
        first = today - dt.timedelta(days=days - 1)
        since = dt.datetime.combine(first, dt.time(), JST)
        with Session(self.engine) as session:
            address_id = session.scalar(select(Address.id).where(Address.address == normalized))
            if address_id is None:
                raise NotFound(f"no such designated address: {normalized}")
            times = session.scalars(
                select(Message.received_at).where(
                    Message.address_id == address_id, Message.received_at >= since, Message.probe_id.is_(None)
                )
            ).all()
        counts = {first + dt.timedelta(days=i): 0 for i in range(days)}
        for when in times:
            day = when.astimezone(JST).date()
            if day in counts:
                counts[day] += 1
        return sorted(counts.items())

    def write_snapshot(self) -> None:
        """Atomically replace the relay's view of the enabled addresses."""
        write_snapshot(self.snapshot_path, enabled_addresses(self.engine))


JST = dt.timezone(dt.timedelta(hours=9), "JST")


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # Aggregates bypass the column type, so SQLite hands back naive UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def enabled_addresses(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(session.scalars(select(Address.address).where(Address.enabled.is_(True))))


def write_snapshot(path: Path, addresses: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"enabled": addresses}, fh, ensure_ascii=False, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class AddressBook:
    """The relay's read side: which RCPT TO addresses to accept.

    Reloads the snapshot whenever the file changes (one ``stat`` per check).
    A missing or unreadable snapshot accepts nothing, so the relay fails
    closed.
    """

    def __init__(self, snapshot_path: Path, copy_route_suffix: str = "") -> None:
        self.snapshot_path = snapshot_path
        self.copy_route_suffix = copy_route_suffix
        self._stamp: tuple[int, int, int] | None = None
        self._enabled: frozenset[str] = frozenset()

    def accepts(self, address: str) -> bool:
        self._refresh()
        return designated_form(address, self.copy_route_suffix) in self._enabled

    def _refresh(self) -> None:
        try:
            st = os.stat(self.snapshot_path)
        except FileNotFoundError:
            self._stamp, self._enabled = None, frozenset()
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.snapshot_path.read_text(encoding="utf-8"))
            self._enabled = frozenset(normalize_address(a) for a in data["enabled"])
            self._stamp = stamp
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("address snapshot %s unreadable, refusing all: %s", self.snapshot_path, exc)
            self._stamp, self._enabled = None, frozenset()
