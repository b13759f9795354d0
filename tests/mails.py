"""Builders for test mail."""

from __future__ import annotations

import smtplib
from collections.abc import Iterable
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid


def make_message(
    subject: str = "会議資料の送付について",
    body: str = "総務課 御中\n\n来週の会議資料を送付します。\n",
    sender: str = "山田 太郎 <yamada@example.co.jp>",
    to: str = "soumu@city.example.jp",
    attachments: Iterable[tuple[str, bytes, str]] = (),
    message_id: str | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = message_id or make_msgid(domain="example.co.jp")
    msg.set_content(body)
    for filename, data, content_type in attachments:
        maintype, subtype = content_type.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=SMTP)


def send(
    port: int, raw: bytes, rcpt: str | list[str] = "soumu@city.example.jp", mail_from: str = "mta@city.example.jp"
) -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        return client.sendmail(mail_from, rcpt, raw)
