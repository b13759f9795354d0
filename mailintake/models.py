"""Database models (SQLAlchemy 2.0, typed declarative mapping)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class Address(Base):
    """A designated receiving address (収受用アドレス), usually one per section."""

    __tablename__ = "addresses"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased: MTA lookup tables compare addresses case-insensitively.
    address: Mapped[str] = mapped_column(String(320), unique=True)
    section: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(200), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Message(Base):
    """One received mail for one designated address."""

    __tablename__ = "messages"
    __table_args__ = (
        # The same bytes re-sent by the MTA (RFC 1047) are stored once per address.
        UniqueConstraint("address_id", "raw_sha256", name="uq_messages_address_raw"),
        Index("ix_messages_address_received", "address_id", "received_at", "id"),
        Index("ix_messages_received", "received_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"))
    address: Mapped[Address] = relationship(lazy="joined")

    # Envelope
    mail_from: Mapped[str] = mapped_column(String(998), default="")
    rcpt_to: Mapped[str] = mapped_column(String(320))
    client_address: Mapped[str] = mapped_column(String(64), default="")
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    spool_id: Mapped[str] = mapped_column(String(64), default="")

    # The original message, kept as a blob by content hash.
    raw_sha256: Mapped[str] = mapped_column(String(64))
    raw_size: Mapped[int] = mapped_column(BigInteger)

    # Decoded headers and bodies
    message_id: Mapped[str] = mapped_column(Text, default="")
    from_name: Mapped[str] = mapped_column(Text, default="")
    from_address: Mapped[str] = mapped_column(Text, default="")
    to: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    cc: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    date: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    text_body: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    problems: Mapped[list[str]] = mapped_column(JSON, default=list)

    # Set for a genuine probe (see probe.py): kept out of every list.
    probe_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)

    # 未処理 new / 収受済 registered / 対象外 dismissed
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)

    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", order_by="Attachment.position", cascade="all, delete-orphan"
    )


class Attachment(Base):
    """A file carried by a message; its bytes live in the blob store by sha256,
    never at a path derived from ``filename``."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    message: Mapped[Message] = relationship(back_populates="attachments")
    position: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(Text, default="")
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    content_id: Mapped[str] = mapped_column(Text, default="")
    disposition: Mapped[str] = mapped_column(String(32), default="attachment")
    # Position of the attachment this one came out of (a forwarded message
    # or winmail.dat), if any.
    parent_position: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ApiToken(Base):
    """A bearer token for the JSON API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
