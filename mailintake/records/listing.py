"""The shapes of a listing of mail: the filter a clerk (or a token) asks
for, read leniently from a query string, and what comes back — rows, a
page, counts per status, the addresses to choose from."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest
from ..models import MessageStatus

STATUS_LABELS: dict[str, str] = {
    MessageStatus.NEW: "未処理",
    MessageStatus.REGISTERED: "収受済",
    MessageStatus.DISMISSED: "対象外",
}
PAGE_SIZES = (25, 50, 100)
COUNT_CAP = 1000


@dataclass(frozen=True)
class InboxFilter:
    status: str | None = MessageStatus.NEW
    address_id: int | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    q: str = ""
    oldest_first: bool = False
    cursor: str | None = None
    limit: int = 50
    # The API names an address by its text.
    address: str | None = None

    @classmethod
    def from_params(cls, params: Any) -> tuple[InboxFilter, dict[str, str]]:
        """The filter the clerk asked for, and a message per field that could
        not be read (that field is left out; every other filter is kept)."""
        errors: dict[str, str] = {}
        status: str | None = params.get("status", MessageStatus.NEW)
        if status == "all":
            status = None
        elif status not in STATUS_LABELS:
            errors["status"] = "状態の指定が正しくないため、未処理を表示しています"
            status = MessageStatus.NEW
        limit = _lenient(errors, "limit", lambda: _int(params.get("limit") or "50", "件数"), 50)
        if limit not in PAGE_SIZES:
            errors["limit"] = f"表示件数は {', '.join(map(str, PAGE_SIZES))} から選んでください"
            limit = 50
        q = (params.get("q") or "").strip()
        if len(q) > 200:
            errors["q"] = "検索語は200文字以内にしてください（先頭の200文字で検索しました）"
            q = q[:200]
        address = params.get("address")
        wanted = cls(
            status=status,
            address_id=_lenient(errors, "address", lambda: _int(address, "宛先"), None) if address else None,
            date_from=_lenient(errors, "from", lambda: _date(params.get("from")), None),
            date_to=_lenient(errors, "to", lambda: _date(params.get("to")), None),
            q=q,
            oldest_first=params.get("sort") == "oldest",
            cursor=params.get("cursor") or None,
            limit=limit,
        )
        return wanted, errors


def _lenient(errors: dict[str, str], field: str, read: Any, default: Any) -> Any:
    try:
        return read()
    except BadRequest as exc:
        errors[field] = str(exc)
        return default


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise BadRequest(f"{what}の指定が正しくありません") from exc


def _date(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise BadRequest("日付は 2026-12-01 のように入力してください。この条件を外して表示しています") from exc


@dataclass(frozen=True)
class InboxRow:
    id: int
    address: str
    received_at: dt.datetime
    from_name: str
    from_address: str
    subject: str
    attachment_count: int
    attachment_bytes: int
    status: str
    unread: bool
    # 回答期限 of the mail's registration, for the due badge.
    reply_due: dt.date | None = None

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


@dataclass(frozen=True)
class StatusCounts:
    """Mails per status; ``at_least`` names the counts that stopped at the cap."""

    by_status: dict[str, int]
    at_least: frozenset[str]

    def of(self, status: str | None) -> int:
        return sum(self.by_status.values()) if status is None else self.by_status.get(status, 0)


@dataclass
class InboxPage:
    rows: list[InboxRow]
    next_cursor: str | None


@dataclass(frozen=True)
class AddressChoice:
    id: int
    address: str
    label: str
    section: str
