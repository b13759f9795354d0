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
import smtplib
import socket
import time
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .errors import MailintakeError
from .models import Message, Probe, utcnow
from .services import Services

HEADER = "X-Mailintake-Probe"
FORGED_NOTE = (
    "不正なプローブ: 疎通確認（プローブ）を装う見出しが付いていますが、この受信者・このメールあての"
    "有効なプローブではありません。通常のメールとして確認してください。"
)
# A probe's arrival counts within this time (an MTA may queue it a while).
PROBE_LIFETIME = dt.timedelta(days=1)


class ProbeFailed(MailintakeError):
    pass


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


@dataclass
class ProbeResult:
    probe_id: str
    message_id: int | None
    seconds: float


def send_probe(services: Services, address: str, host: str, port: int, sender: str) -> str:
    probe_id, header = make_token(services.settings.data_dir)
    # No folding: a long unbreakable header would be re-encoded as encoded words.
    msg = EmailMessage(policy=policy.SMTP.clone(max_line_length=998))
    msg["From"] = sender
    msg["To"] = address
    msg["Subject"] = f"mailintake 疎通確認 {probe_id}"
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=socket.getfqdn() or "localhost")
    msg[HEADER] = header
    with Session(services.engine) as session, session.begin():
        session.add(
            Probe(
                probe_id=probe_id,
                address=address,
                message_id_header=msg["Message-ID"],
                expires_at=utcnow() + PROBE_LIFETIME,
            )
        )
    msg.set_content("mailintake の転送経路の疎通確認です。受信一覧には表示されません。\n")
    try:
        with smtplib.SMTP(host, port, timeout=30) as client:
            client.send_message(msg, from_addr=sender, to_addrs=[address])
    except (OSError, smtplib.SMTPException) as exc:
        raise ProbeFailed(f"the MTA at {host}:{port} did not take the probe: {exc}") from exc
    return probe_id


def wait_for_probe(services: Services, probe_id: str, timeout: float, started: float) -> ProbeResult:
    deadline = started + timeout
    while True:
        with Session(services.engine) as session:
            found = session.scalar(select(Message.id).where(Message.probe_id == probe_id))
        if found is not None:
            return ProbeResult(probe_id, found, time.monotonic() - started)
        if time.monotonic() > deadline:
            return ProbeResult(probe_id, None, time.monotonic() - started)
        time.sleep(0.2)
