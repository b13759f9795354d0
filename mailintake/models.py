"""Database models (SQLAlchemy 2.0, typed declarative mapping)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
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


class MessageStatus(StrEnum):
    NEW = "new"  # 未処理
    REGISTERED = "registered"  # 収受済
    DISMISSED = "dismissed"  # 対象外


class RegistrationStatus(StrEnum):
    ACTIVE = "active"  # 有効
    CANCELLED = "cancelled"  # 取消


# Row ids are INTEGER: PostgreSQL refuses a larger number outright, so a
# path with one is answered 404 before it reaches the database.
MAX_ROW_ID = 2**31 - 1


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# PostgreSQL's own default names: a database created before migrations
# existed (by create_all) already carries exactly these, and SQLite's batch
# mode can then find and drop an unnamed constraint by the same name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "%(table_name)s_%(column_0_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Address(Base):
    """A designated receiving address (収受用アドレス), usually one per section."""

    __tablename__ = "addresses"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased: MTA lookup tables compare addresses case-insensitively.
    address: Mapped[str] = mapped_column(String(320), unique=True)
    # The section (担当課) whose clerks see its mail; none only for the
    # placeholder of an address deleted while its mail was still arriving.
    section_id: Mapped[int | None] = mapped_column(ForeignKey("sections.id"), index=True, nullable=True)
    section: Mapped[Section | None] = relationship(lazy="joined")
    label: Mapped[str] = mapped_column(String(200), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def section_name(self) -> str:
        return self.section.name if self.section is not None else ""


class Message(Base):
    """One received mail for one designated address."""

    __tablename__ = "messages"
    __table_args__ = (
        # The same bytes re-sent by the MTA (RFC 1047) are stored once per address.
        UniqueConstraint("address_id", "raw_sha256", name="uq_messages_address_raw"),
        Index("ix_messages_address_received", "address_id", "received_at", "id"),
        Index("ix_messages_received", "received_at", "id"),
        # In the database a partial index, WHERE probe_id IS NULL (migration
        # 0014): mail only, so the list's status counts read this index alone.
        # probe_id is always NULL there; SQLite 3.40 needs it in the index all
        # the same. The condition is not written here: postgresql_where and
        # sqlite_where would load both dialects' modules into every process
        # (about 2 MB each); Alembic does not compare it.
        Index("ix_messages_address_status_received", "address_id", "status", "received_at", "id", "probe_id"),
        # The retention purge: unregistered mail older than a cut-off, any address.
        Index("ix_messages_status_received", "status", "received_at"),
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

    # Set for a genuine probe (see intake/probe.py): kept out of every list.
    probe_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)

    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.NEW, index=True)
    dismiss_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    # Kept with the message so that a list page never aggregates attachments.
    attachment_count: Mapped[int] = mapped_column(Integer, default=0)
    attachment_bytes: Mapped[int] = mapped_column(BigInteger, default=0)

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
    # Space-separated scopes (tokens.SCOPES); tokens made before scopes
    # existed could read messages, and still can.
    scopes: Mapped[str] = mapped_column(String(200), default="messages:read", server_default="messages:read")
    # Section ids the token is limited to; None: every section.
    section_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)


class Section(Base):
    """A section (課), made by an administrator or the 組織マスタ import;
    addresses and users refer to it by id. ``symbol`` is the 文書記号 that
    prefixes its receipt numbers (総務 → 総務第12号)."""

    __tablename__ = "sections"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    symbol: Mapped[str] = mapped_column(String(50))
    # 所属コード of the personnel system's 組織マスタ, once imported.
    code: Mapped[str | None] = mapped_column(String(50), unique=True, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


user_sections = Table(
    "user_sections",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("section_id", ForeignKey("sections.id", ondelete="CASCADE"), primary_key=True),
)

ROLES = ("clerk", "section_admin", "system_admin")


class User(Base):
    """A person using the web UI. ``password_hash`` is empty for accounts
    that only sign in through the groupware."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased, like the groupware's login IDs are compared.
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(20), default="clerk")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sections: Mapped[list[Section]] = relationship(secondary=user_sections, order_by="Section.name")


class WebSession(Base):
    """A signed-in browser. Only the token's SHA-256 is stored; ``method``
    says how the user signed in (password, saml, oidc or groupware)."""

    __tablename__ = "web_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(20), default="password")
    client_address: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # What single sign-out needs from the sign-in: the OIDC ID token, or the
    # SAML NameID and SessionIndex (JSON); empty for the other methods.
    signout_hint: Mapped[str] = mapped_column(Text, default="")


class SignInOnce(Base):
    """Short-lived values of sign-ins that may be used once: an OIDC
    request's state, a SAML request's ID, a used assertion ID or hand-off
    nonce. In the database, so that every web process and node sees them."""

    __tablename__ = "signin_once"

    key_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20))
    data: Mapped[str] = mapped_column(Text, default="")
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class SignInAttempt(Base):
    """A sign-in attempt the throttle counts, per account (``u:NAME``) and
    per client address (``c:ADDRESS``). In the database, so that a clerk
    sent to another node by the proxy meets the same count."""

    __tablename__ = "signin_attempts"
    __table_args__ = (Index("ix_signin_attempts_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(400))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class StoredFile(Base):
    """A file of the ``database`` store: an attachment (``kind`` a) or an
    original message (o), by sha256. Its bytes are :class:`StoredChunk` rows,
    written in the same transaction, so a file is there whole or not at all."""

    __tablename__ = "stored_files"

    kind: Mapped[str] = mapped_column(String(1), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    chunks: Mapped[int] = mapped_column(Integer)


class StoredChunk(Base):
    """One piece (``seq`` from 0) of a stored file. Keyed like its file but
    without a foreign key: a streamed attachment's pieces are written before
    its sha256 is known, under a temporary key renamed at the end."""

    __tablename__ = "stored_chunks"

    kind: Mapped[str] = mapped_column(String(1), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class DirectoryPerson(Base):
    """A person of the latest 異動情報 (職員番号, 氏名, 所属コード), kept so
    that a single sign-on can create their account when they first come."""

    __tablename__ = "directory_people"

    staff_number: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    section_codes: Mapped[str] = mapped_column(String(500), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class MessageRead(Base):
    """Which user has opened which message (the unread mark)."""

    __tablename__ = "message_reads"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    read_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Classification(Base):
    """文書分類: a tree that administrators manage (大分類 > 中分類 > 小分類)."""

    __tablename__ = "classifications"
    __table_args__ = (UniqueConstraint("parent_id", "name", name="uq_classifications_parent_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("classifications.id"), nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    # 分類コード as the document system knows it, when the site uses codes.
    code: Mapped[str] = mapped_column(String(50), default="", server_default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # 保存期間 of documents of this 分類: the registration form's default.
    retention: Mapped[str] = mapped_column(String(50), default="", server_default="")


class ReceiptCounter(Base):
    """The last 収受番号 given per 文書記号 and fiscal year. Incremented in
    the registering transaction, so a failed registration leaves no gap."""

    __tablename__ = "receipt_counters"

    symbol: Mapped[str] = mapped_column(String(50), primary_key=True)
    fiscal_year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer, default=0)


class Registration(Base):
    """A 収受文書: one registered mail with its receipt number. Cancelling
    marks it 取消 and keeps the number; numbers are never reused."""

    __tablename__ = "registrations"
    __table_args__ = (
        UniqueConstraint("symbol", "fiscal_year", "number", name="uq_registrations_number"),
        Index("ix_registrations_section_year", "section_id", "fiscal_year", "number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    section_id: Mapped[int] = mapped_column(ForeignKey("sections.id"))
    section: Mapped[Section] = relationship(lazy="joined")
    symbol: Mapped[str] = mapped_column(String(50))
    fiscal_year: Mapped[int] = mapped_column(Integer)
    number: Mapped[int] = mapped_column(Integer)
    receipt_number: Mapped[str] = mapped_column(String(100))
    received_on: Mapped[dt.date] = mapped_column(Date)
    subject: Mapped[str] = mapped_column(Text)
    sender: Mapped[str] = mapped_column(Text)
    classification_id: Mapped[int | None] = mapped_column(ForeignKey("classifications.id"), nullable=True)
    # The classification's path as it read at registration (分類名は後で変わりうる).
    classification_path: Mapped[str] = mapped_column(Text, default="")
    retention: Mapped[str] = mapped_column(String(50))
    remarks: Mapped[str] = mapped_column(Text, default="")
    # 先方文書番号: the sender's own number for the document (8総総第123号).
    sender_reference: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # 要回答 and 回答期限, when the document asks for an answer.
    reply_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    reply_due: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    # 発信者: 組織名 beside the person's name (``sender``).
    sender_org: Mapped[str] = mapped_column(Text, default="", server_default="")
    # 文書日付: the date written on the document, not 収受日.
    document_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    # 受付方法: 電子メール, or a paper route entered by hand (郵送, 持参, FAX).
    receipt_method: Mapped[str] = mapped_column(String(20), default="電子メール", server_default="電子メール")
    attachment_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=RegistrationStatus.ACTIVE)
    registered_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    registered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_reason: Mapped[str] = mapped_column(Text, default="")
    # The hand-off (handoff/feed.py): the newest event of this registration,
    # and the newest one the document system acknowledged.
    last_event_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    acked_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    acked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    acked_by: Mapped[str] = mapped_column(String(200), default="", server_default="")


class SenderEntry(Base):
    """The sender directory the clerks grow as they register: a mail
    address (or ``@domain`` for the organisation alone) → 組織名 and 氏名,
    to prefill the next registration from the same sender."""

    __tablename__ = "sender_directory"

    key: Mapped[str] = mapped_column(String(320), primary_key=True)
    organisation: Mapped[str] = mapped_column(Text, default="")
    name: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class RegistrationEvent(Base):
    """What the document system reads, in the order the events committed
    (see records/events.py for why ``seq`` follows commit order)."""

    __tablename__ = "registration_events"
    # AUTOINCREMENT: a sequence number is never given twice on SQLite either.
    __table_args__ = ({"sqlite_autoincrement": True},)

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    registration_id: Mapped[int] = mapped_column(ForeignKey("registrations.id"), index=True)
    event: Mapped[str] = mapped_column(String(16))  # registered / amended / cancelled
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class HandoffPush(Base):
    """Push mode's progress (handoff/push.py): events up to ``last_seq`` are
    in the outbox; ``writing_seq`` is the one whose file was complete under
    its temporary name when the process last recorded progress."""

    __tablename__ = "handoff_push"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    writing_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    writing_name: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    """Who did what to which mail, and when (監査ログ)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    username: Mapped[str] = mapped_column(String(100), default="")
    action: Mapped[str] = mapped_column(String(40))
    message_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    section_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    client_address: Mapped[str] = mapped_column(String(64), default="")


class Probe(Base):
    """A probe this service sent (see intake/probe.py). Its header is honoured once,
    for this address and this Message-ID, before ``expires_at``; a copy of
    the header on any other mail keeps that mail in the lists, flagged."""

    __tablename__ = "probes"

    probe_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    message_id_header: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Set when the probe arrived and was honoured: it is used up.
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
