"""The audit log (監査ログ): raw-source views, downloads, registrations,
dismissals and cancellations, each with who, when and what. Events are
written in the same transaction as the action they record."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from .. import jpdates
from ..models import AuditEvent, Message, Section, User, utcnow
from .spreadsheet import csv_text

if TYPE_CHECKING:  # the ingester records purges without loading the accounts code
    from ..people.accounts import UserInfo

ACTION_LABELS = {
    "view_source": "ソース表示",
    "unlock_login": "ログイン停止の解除",
    "download_original": "原本ダウンロード",
    "download_attachment": "添付ダウンロード",
    "preview_attachment": "添付プレビュー",
    "register": "収受登録",
    "dismiss": "対象外",
    "undismiss": "対象外の取消",
    "cancel": "収受取消",
    "export_book": "収受簿出力",
    "login": "ログイン",
    "login_failed": "ログイン失敗",
    "login_insecure": "ログイン（署名なしのグループウェア連携）",
    "purge": "保存期間による削除",
}


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: dt.datetime
    username: str
    action: str
    message_id: int | None
    section: str
    detail: str
    client_address: str
    # Who and what, as people name them (the user's name, the mail's 件名).
    user_name: str = ""
    subject: str = ""

    @property
    def action_label(self) -> str:
        return ACTION_LABELS.get(self.action, self.action)


def record(
    session: Session,
    user: UserInfo | None,
    action: str,
    *,
    message_id: int | None = None,
    section_id: int | None = None,
    detail: str = "",
    client_address: str = "",
    at: dt.datetime | None = None,
    username: str = "",
) -> None:
    session.add(
        AuditEvent(
            at=at or utcnow(),
            user_id=user.id if user else None,
            username=user.username if user else username[:100],
            action=action,
            message_id=message_id,
            section_id=section_id,
            detail=detail,
            client_address=client_address[:64],
        )
    )


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, user: UserInfo | None, action: str, **fields: object) -> None:
        with Session(self.engine) as session, session.begin():
            record(session, user, action, **fields)  # type: ignore[arg-type]

    def entries(self, user: UserInfo, limit: int = 500, before_id: int | None = None) -> list[AuditEntry]:
        """Newest first. Section administrators see their sections' events."""
        stmt = (
            select(AuditEvent, Section.name, User.display_name, Message.subject)
            .outerjoin(Section, Section.id == AuditEvent.section_id)
            .outerjoin(User, User.id == AuditEvent.user_id)
            .outerjoin(Message, Message.id == AuditEvent.message_id)
            .order_by(AuditEvent.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            stmt = stmt.where(AuditEvent.id < before_id)
        if not user.is_system_admin:
            stmt = stmt.where(AuditEvent.section_id.in_([s.id for s in user.sections]))
        with Session(self.engine) as session:
            return [
                AuditEntry(
                    e.id,
                    e.at,
                    e.username,
                    e.action,
                    e.message_id,
                    name or "",
                    e.detail,
                    e.client_address,
                    user_name=display or "",
                    subject=subject or "",
                )
                for e, name, display, subject in session.execute(stmt)
            ]


def entries_csv(entries: list[AuditEntry]) -> bytes:
    rows = (
        [
            jpdates.to_jst(e.at).strftime("%Y-%m-%d %H:%M:%S"),
            e.username,
            e.action_label,
            e.message_id or "",
            e.section,
            e.detail,
            e.client_address,
            e.user_name,
            e.subject,
        ]
        for e in entries
    )
    # 氏名 and 件名 came later, at the end: a sheet reading the columns by position keeps working.
    header = ["日時", "ユーザー", "操作", "メールID", "担当課", "内容", "接続元", "氏名", "件名"]
    return csv_text(header, rows).encode("utf-8-sig")
