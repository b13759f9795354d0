"""Sending a probe through the organisation's MTA to a designated address
and timing its arrival (``mailintake probe`` and the admin page). The probe's
token and how the ingester honours it: intake/probe.py."""

from __future__ import annotations

import smtplib
import socket
import time
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import MailintakeError, NotFound
from ..intake.probe import HEADER, PROBE_LIFETIME, make_token
from ..models import Message, Probe, utcnow
from ..services import Services
from ..texts import cannot_connect


class ProbeFailed(MailintakeError):
    pass


@dataclass(frozen=True)
class ProbeProgress:
    """Where a probe sent from the admin page is: waiting, arrived, or not
    arrived within ``timeout`` seconds of being sent."""

    probe_id: str
    address: str
    elapsed: float
    timeout: float
    arrived_after: float | None

    @property
    def done(self) -> bool:
        return self.arrived_after is not None or self.elapsed >= self.timeout


def probe_progress(services: Services, probe_id: str, timeout: float) -> ProbeProgress:
    """Read from the database, so any web process (or node) can answer."""
    with Session(services.engine) as session:
        probe = session.get(Probe, probe_id)
        if probe is None:
            raise NotFound("その疎通確認はありません")
        arrived = session.execute(select(Message.id, Message.received_at).where(Message.probe_id == probe_id)).first()
    elapsed = (utcnow() - probe.sent_at).total_seconds()
    after = (arrived.received_at - probe.sent_at).total_seconds() if arrived is not None else None
    return ProbeProgress(probe_id, probe.address, elapsed, timeout, None if after is None else max(after, 0.0))


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
    except smtplib.SMTPResponseException as exc:
        raise ProbeFailed(
            f"メールサーバー（{host}:{port}）が疎通確認のメールを受け取りませんでした（応答 {exc.smtp_code}）。"
            "サーバーの設定とログを確認してください。"
        ) from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise ProbeFailed(
            cannot_connect(
                "メールサーバー",
                f"{host}:{port}",
                "サーバーが動いているか、経由先（設定の probe_via、または画面で指定した経由する MTA）が"
                "正しいかを確認してください。",
            )
        ) from exc
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
