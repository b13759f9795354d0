"""Stored messages made directly in the database, for tests about what
happens after intake (registration, search) that need many or dated mails;
designated addresses and users with the sections they need (a test starts
from an empty database, where an administrator would make the sections
first)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailintake.intake.addresses import AddressInfo
from mailintake.models import Address, Attachment, Message
from mailintake.people.accounts import UserInfo
from mailintake.services import Services


def ensure_sections(services: Services, *names: str) -> None:
    known = {s.name for s in services.accounts.sections()}
    for name in names:
        if name.strip() and name not in known:
            services.accounts.add_section(name)
            known.add(name)


def designate(services: Services, address: str, section: str, label: str = "") -> AddressInfo:
    """``address`` designated for ``section``, made first if new."""
    ensure_sections(services, section)
    return services.addresses.add(address, section, label)


def make_user(services: Services, username: str, **options: Any) -> UserInfo:
    """``accounts.add_user`` with the sections it names made first if new."""
    ensure_sections(services, *options.get("sections") or [])
    return services.accounts.add_user(username, **options)


def stored_message(
    services: Services,
    address: str,
    *,
    subject: str = "会議資料の送付について",
    body: str = "来週の会議資料を送付します。",
    from_name: str = "山田 太郎",
    from_address: str = "yamada@example.co.jp",
    received_at: dt.datetime | None = None,
    attachments: tuple[tuple[str, bytes, str], ...] = (),
) -> int:
    with Session(services.engine) as session, session.begin():
        address_id = session.scalar(select(Address.id).where(Address.address == address))
        assert address_id is not None, address
        raw = f"Subject: {subject}\r\n\r\n{body}\r\n{secrets.token_hex(8)}\r\n".encode()
        source = services.settings.data_dir / f"factory-{secrets.token_hex(6)}.eml"
        source.write_bytes(raw)
        services.originals.keep(source, len(raw), hashlib.sha256(raw).hexdigest())
        services.originals.flush()
        source.unlink()
        message = Message(
            address_id=address_id,
            rcpt_to=address,
            received_at=received_at or dt.datetime.now(dt.UTC),
            raw_sha256=hashlib.sha256(raw).hexdigest(),
            raw_size=len(raw),
            subject=subject,
            from_name=from_name,
            from_address=from_address,
            text_body=body,
            attachment_count=len(attachments),
            attachment_bytes=sum(len(data) for _, data, _ in attachments),
        )
        session.add(message)
        session.flush()
        for position, (filename, data, content_type) in enumerate(attachments):
            sha = services.blobs.put_bytes(data)
            services.blobs.flush()
            session.add(
                Attachment(
                    message_id=message.id,
                    position=position,
                    filename=filename,
                    content_type=content_type,
                    size=len(data),
                    sha256=sha,
                )
            )
        return message.id
