"""The shapes of a 収受登録: what a clerk asks for (a registration, an
amendment), what is skipped, what the registry answers, and the 収受番号's
format."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import update
from sqlalchemy.orm import Session

from .. import jpdates
from ..db import insert_unless_present
from ..errors import BadRequest, ConfigError
from ..models import Message, ReceiptCounter, Registration, RegistrationStatus, Section
from ..people.accounts import UserInfo
from . import classifications

# 受付方法: a mail is 電子メール; paper that arrives otherwise is entered by hand.
RECEIPT_METHODS = ("電子メール", "郵送", "持参", "FAX")


@dataclass(frozen=True)
class RegistrationRequest:
    message_id: int
    subject: str
    sender: str
    received_on: dt.date
    retention: str
    classification_id: int | None = None
    remarks: str = ""
    attachment_ids: Sequence[int] = field(default_factory=tuple)
    sender_reference: str = ""
    reply_due: dt.date | None = None
    sender_org: str = ""
    document_date: dt.date | None = None
    receipt_method: str = "電子メール"
    reply_required: bool = False
    # 担当課 when not the address's (a clerk of several sections chooses).
    section_id: int | None = None


@dataclass(frozen=True)
class TakenMail:
    """A mail skipped at registration: registered or dismissed meanwhile."""

    message_id: int
    subject: str
    status: str


@dataclass(frozen=True)
class Amendment:
    """訂正 of a registration's descriptive fields; the number, the mail and
    the documents chosen stay."""

    subject: str
    sender: str
    retention: str
    classification_id: int | None = None
    remarks: str = ""
    sender_reference: str = ""
    reply_due: dt.date | None = None
    sender_org: str = ""
    document_date: dt.date | None = None
    receipt_method: str = "電子メール"
    reply_required: bool = False


@dataclass(frozen=True)
class RegistrationInfo:
    id: int
    message_id: int
    receipt_number: str
    number: int
    fiscal_year: int
    symbol: str
    section: str
    received_on: dt.date
    subject: str
    sender: str
    classification: str
    retention: str
    remarks: str
    status: str
    registered_by: str
    registered_at: dt.datetime
    cancelled_at: dt.datetime | None
    cancel_reason: str
    section_id: int = 0
    classification_id: int | None = None
    sender_reference: str = ""
    reply_due: dt.date | None = None
    sender_org: str = ""
    document_date: dt.date | None = None
    receipt_method: str = "電子メール"
    reply_required: bool = False
    # The document system's acknowledgement of the newest event, if given.
    handed_off_at: dt.datetime | None = None
    handoff_pending: bool = False

    @property
    def received_on_wareki(self) -> str:
        return jpdates.wareki(self.received_on)

    @property
    def status_label(self) -> str:
        return "取消" if self.status == RegistrationStatus.CANCELLED else "有効"


def format_receipt_number(template: str, symbol: str, fiscal_year: int, number: int) -> str:
    try:
        return template.format(
            symbol=symbol,
            number=number,
            fiscal_year=fiscal_year,
            era_year=jpdates.era_year(fiscal_year, dt.date(fiscal_year, 4, 1)),
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"receipt_number_format {template!r} is invalid: {exc}") from exc


def next_number(session: Session, symbol: str, fiscal_year: int) -> int:
    """The next 収受番号 of a 文書記号 and year, taken in the caller's
    transaction: the counter row queues concurrent registrations and a
    rollback returns the number."""
    session.execute(
        insert_unless_present(
            session.get_bind().dialect.name,
            ReceiptCounter,
            {"symbol": symbol, "fiscal_year": fiscal_year, "last_number": 0},
            conflict=["symbol", "fiscal_year"],
        )
    )
    number = session.scalar(
        update(ReceiptCounter)
        .where(ReceiptCounter.symbol == symbol, ReceiptCounter.fiscal_year == fiscal_year)
        .values(last_number=ReceiptCounter.last_number + 1)
        .returning(ReceiptCounter.last_number)
    )
    assert number is not None
    return int(number)


def describe(session: Session, registration: Registration, given: RegistrationRequest | Amendment) -> None:
    """The fields a clerk writes, at registration and at 訂正 alike."""
    registration.subject = given.subject.strip()
    registration.sender = given.sender.strip()
    registration.sender_org = given.sender_org.strip()
    if registration.classification_path is None or given.classification_id != registration.classification_id:
        registration.classification_path = classifications.path_of(session, given.classification_id)
    registration.classification_id = given.classification_id
    registration.retention = given.retention
    registration.remarks = given.remarks.strip()
    registration.sender_reference = given.sender_reference.strip()
    registration.document_date = given.document_date
    registration.receipt_method = given.receipt_method
    # A 回答期限 means an answer is asked for.
    registration.reply_required = given.reply_required or given.reply_due is not None
    registration.reply_due = given.reply_due


def section_for(session: Session, user: UserInfo, message: Message, section_id: int | None) -> Section:
    """The 担当課 that numbers the registration: the one chosen on the form,
    which must be one of the clerk's, or else the address's."""
    if section_id is not None:
        section = session.get(Section, section_id)
        if section is None or not (user.is_system_admin or section_id in {s.id for s in user.sections}):
            raise BadRequest("担当課は自分の所属する課から選んでください")
        return section
    if message.address.section is None:
        raise BadRequest(
            f"「{message.subject}」の宛先には担当課がありません。宛先の画面で担当課を決めてから登録してください。"
        )
    return message.address.section


def with_default_retention(session: Session, request: RegistrationRequest) -> RegistrationRequest:
    """A row left without 保存期間 takes the one its 文書分類 gives."""
    if request.retention:
        return request
    return replace(request, retention=classifications.default_retention(session, request.classification_id))
