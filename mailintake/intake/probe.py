"""Probes: a test mail sent through the organisation's MTA to a designated
address, to show that the forwarding path works and how fast it is.

A probe carries ``X-Mailintake-Probe: <id>.<HMAC>``, signed with a key kept
in the data folder, and the service records each probe it sends (address,
Message-ID, expiry). A mail is kept out of the clerks' lists only when its
header is genuine, names a recorded probe not used yet, and arrives for that
probe's address with that probe's Message-ID before it expires; the probe is
then used up. Anything else — a forged signature, a copy of a genuine header
on another mail (replayed), another address, a late arrival — is listed like
any other mail with a 「不正なプローブ」 note, so nobody can hide a mail by
adding the header.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session

from ..models import Probe, utcnow

HEADER = "X-Mailintake-Probe"
FORGED_NOTE = (
    "不正なプローブ: 疎通確認（プローブ）を装う見出しが付いていますが、この受信者・このメールあての"
    "有効なプローブではありません。通常のメールとして確認してください。"
)
# A probe's arrival counts within this time (an MTA may queue it a while).
PROBE_LIFETIME = dt.timedelta(days=1)


def _key(data_dir: Path) -> bytes:
    path = data_dir / "probe.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return key


def make_token(data_dir: Path) -> tuple[str, str]:
    """(probe id, header value)."""
    probe_id = f"{int(time.time())}-{secrets.token_hex(8)}"
    signature = hmac.new(_key(data_dir), probe_id.encode(), hashlib.sha256).hexdigest()
    return probe_id, f"{probe_id}.{signature}"


def verify(data_dir: Path, value: str) -> str | None:
    """The probe id of a genuine header value, else None."""
    probe_id, _, signature = value.strip().rpartition(".")
    if not probe_id or not (data_dir / "probe.key").exists():
        return None
    expected = hmac.new(_key(data_dir), probe_id.encode(), hashlib.sha256).hexdigest()
    return probe_id if hmac.compare_digest(expected, signature) else None


def claim(session: Session, probe_id: str, address: str, message_id_header: str) -> bool:
    """Use up the recorded probe ``probe_id`` if this arrival is the one it
    was sent as; in the caller's transaction, so a rolled-back batch leaves
    it unused. True at most once per probe."""
    now = utcnow()
    used = session.execute(
        update(Probe)
        .where(
            Probe.probe_id == probe_id,
            Probe.used_at.is_(None),
            Probe.address == address,
            Probe.message_id_header == message_id_header.strip(),
            Probe.expires_at > now,
        )
        .values(used_at=now)
    )
    return used.rowcount == 1  # type: ignore[attr-defined]
