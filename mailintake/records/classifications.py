"""文書分類: a tree administrators manage (大分類 > 中分類 > 小分類); a
registration keeps the path as it read then. A 分類 may carry its 分類コード
and the 保存期間 its documents are kept for, which the registration form
takes as its default."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..errors import BadRequest
from ..models import Classification


@dataclass(frozen=True)
class ClassificationChoice:
    """A 分類 as a form offers it: found by its path or its code."""

    id: int
    path: str
    code: str
    retention: str

    @property
    def label(self) -> str:
        return f"{self.code}　{self.path}" if self.code else self.path


def choices(engine: Engine) -> list[ClassificationChoice]:
    """Every enabled 分類 whose ancestors are enabled, by path."""
    with Session(engine) as session:
        rows = session.scalars(select(Classification).where(Classification.enabled.is_(True))).all()
        by_id = {row.id: row for row in rows}
        found = [
            ClassificationChoice(row.id, path, row.code, row.retention)
            for row in rows
            if (path := _path(by_id, row)) is not None
        ]
        return sorted(found, key=lambda c: c.path)


def default_retention(session: Session, classification_id: int | None) -> str:
    """The 保存期間 the 分類 gives its documents ("" when it gives none)."""
    row = session.get(Classification, classification_id) if classification_id is not None else None
    return row.retention if row is not None else ""


def _checked(code: str, retention: str, retention_periods: Sequence[str]) -> tuple[str, str]:
    code = code.strip()
    if len(code) > 50:
        raise BadRequest("分類コードは50文字以内で入力してください")
    if retention and retention not in retention_periods:
        raise BadRequest(f"保存期間は {'・'.join(retention_periods)} から選んでください")
    return code, retention


def describe(
    engine: Engine, classification_id: int, code: str, retention: str, retention_periods: Sequence[str]
) -> None:
    """Sets the 分類コード and the default 保存期間 of a 分類."""
    code, retention = _checked(code, retention, retention_periods)
    with Session(engine) as session, session.begin():
        row = session.get(Classification, classification_id)
        if row is None:
            raise BadRequest("文書分類が見つかりません。一覧を開き直してください")
        row.code, row.retention = code, retention


def add(
    engine: Engine,
    name: str,
    parent_id: int | None = None,
    code: str = "",
    retention: str = "",
    retention_periods: Sequence[str] = (),
) -> int:
    name = name.strip()
    if not name or len(name) > 200:
        raise BadRequest("分類名を200文字以内で入力してください")
    code, retention = _checked(code, retention, retention_periods)
    with Session(engine) as session, session.begin():
        if parent_id is not None and session.get(Classification, parent_id) is None:
            raise BadRequest("上位の分類がありません")
        exists = session.scalar(
            select(Classification.id).where(Classification.parent_id == parent_id, Classification.name == name)
        )
        if exists is not None:
            raise BadRequest(f"分類「{name}」は既にあります")
        row = Classification(name=name, parent_id=parent_id, code=code, retention=retention)
        session.add(row)
        session.flush()
        return row.id


def _path(by_id: dict[int, Classification], row: Classification) -> str | None:
    names = [row.name]
    seen = {row.id}
    parent = row.parent_id
    while parent is not None:
        node = by_id.get(parent)
        if node is None or node.id in seen:
            return None  # a disabled ancestor hides its branch
        names.append(node.name)
        seen.add(node.id)
        parent = node.parent_id
    return " > ".join(reversed(names))


def path_of(session: Session, classification_id: int | None) -> str:
    if classification_id is None:
        return ""
    rows = session.scalars(select(Classification)).all()
    by_id = {row.id: row for row in rows if row.enabled}
    row = by_id.get(classification_id)
    path = _path(by_id, row) if row is not None else None
    if path is None:
        raise BadRequest("文書分類が正しくありません")
    return path
