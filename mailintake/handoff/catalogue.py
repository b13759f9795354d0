"""目録情報: the catalogue of one fiscal year's 収受文書 as CSV, for the
公文書目録 route of the linkage engine (and for people who open it in
Excel). Cancelled registrations (取消) are not documents and are left out.

保存期間満了日 follows the usual rule of 文書管理規程: a period of N years
starts on April 1st after the fiscal year of the document and ends on
March 31st N years later; 永年 and periods not in years have none.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Collection
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..models import Message, Registration, RegistrationStatus
from ..records.spreadsheet import csv_bytes

COLUMNS = (
    "年度",
    "収受番号",
    "収受日",
    "件名",
    "発信者",
    "先方文書番号",
    "文書分類",
    "保存期間",
    "保存期間満了日",
    "担当課",
)
_YEARS = re.compile(r"(\d{1,3})年")


def expiry_date(fiscal_year: int, retention: str) -> dt.date | None:
    """保存期間満了日 of a document of ``fiscal_year`` kept for ``retention``."""
    found = _YEARS.fullmatch(unicodedata.normalize("NFKC", retention).strip())
    if found is None:
        return None
    return dt.date(fiscal_year + 1 + int(found.group(1)), 3, 31)


def rows(engine: Engine, fiscal_year: int, section_ids: Collection[int] | None = None) -> list[list[Any]]:
    stmt = (
        select(Registration, Message.from_address)
        .join(Message, Message.id == Registration.message_id)
        .where(Registration.fiscal_year == fiscal_year, Registration.status == RegistrationStatus.ACTIVE)
        .order_by(Registration.section_id, Registration.symbol, Registration.number)
    )
    if section_ids is not None:
        stmt = stmt.where(Registration.section_id.in_(list(section_ids)))
    with Session(engine) as session:
        return [_row(registration, from_address) for registration, from_address in session.execute(stmt)]


def _row(registration: Registration, from_address: str) -> list[Any]:
    expiry = expiry_date(registration.fiscal_year, registration.retention)
    sender = registration.sender
    if from_address and from_address not in sender:
        sender = f"{sender} <{from_address}>"
    return [
        registration.fiscal_year,
        registration.receipt_number,
        registration.received_on.isoformat(),
        registration.subject,
        sender,
        registration.sender_reference,
        registration.classification_path,
        registration.retention,
        expiry.isoformat() if expiry else "",
        registration.section.name,
    ]


def catalogue_csv(engine: Engine, fiscal_year: int, encoding: str, section_ids: Collection[int] | None = None) -> bytes:
    return csv_bytes(COLUMNS, rows(engine, fiscal_year, section_ids), encoding)
