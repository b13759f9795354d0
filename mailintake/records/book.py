"""The 収受簿 as CSV, and how the hand-off state reads in it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import jpdates
from .registrations import RegistrationInfo
from .spreadsheet import csv_bytes

BOOK_COLUMNS = (
    "収受番号",
    "収受日",
    "件名",
    "発信者",
    "文書分類",
    "保存期間",
    "担当課",
    "備考",
    "状態",
    "取消理由",
    "登録者",
    "登録日時",
    # Added later, so at the end: a sheet that reads the columns above by
    # position keeps working.
    "先方文書番号",
    "回答期限",
    "連携",
    "発信者組織名",
    "文書日付",
    "受付方法",
    "要回答",
)


def book_csv(rows: Sequence[RegistrationInfo], encoding: str) -> bytes:
    """The 収受簿 as CSV (see spreadsheet.csv_bytes for the encodings)."""
    return csv_bytes(BOOK_COLUMNS, (_book_row(row) for row in rows), encoding)


def _book_row(row: RegistrationInfo) -> list[Any]:
    return [
        row.receipt_number,
        row.received_on_wareki,
        row.subject,
        row.sender,
        row.classification,
        row.retention,
        row.section,
        row.remarks,
        row.status_label,
        row.cancel_reason,
        row.registered_by,
        jpdates.to_jst(row.registered_at).strftime("%Y-%m-%d %H:%M"),
        row.sender_reference,
        jpdates.wareki(row.reply_due) if row.reply_due else "",
        handoff_label(row),
        row.sender_org,
        jpdates.wareki(row.document_date) if row.document_date else "",
        row.receipt_method,
        "要" if row.reply_required else "",
    ]


def handoff_label(row: RegistrationInfo) -> str:
    """連携済 (with the time) once the document system acknowledged the newest event."""
    if row.handed_off_at is not None and not row.handoff_pending:
        return "連携済 " + jpdates.to_jst(row.handed_off_at).strftime("%Y-%m-%d %H:%M")
    return "連携待ち"
