"""文書分類: a tree administrators manage (大分類 > 中分類 > 小分類); a
registration keeps the path as it read then."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..errors import BadRequest
from ..models import Classification


def paths(engine: Engine) -> list[tuple[int, str]]:
    """(id, 大分類 > 中分類 > 小分類) of every enabled classification, by path."""
    with Session(engine) as session:
        rows = session.scalars(select(Classification).where(Classification.enabled.is_(True))).all()
        by_id = {row.id: row for row in rows}
        found = [(row.id, path) for row in rows if (path := _path(by_id, row)) is not None]
        return sorted(found, key=lambda p: p[1])


def add(engine: Engine, name: str, parent_id: int | None = None) -> int:
    name = name.strip()
    if not name or len(name) > 200:
        raise BadRequest("分類名を200文字以内で入力してください")
    with Session(engine) as session, session.begin():
        if parent_id is not None and session.get(Classification, parent_id) is None:
            raise BadRequest("上位の分類がありません")
        exists = session.scalar(
            select(Classification.id).where(Classification.parent_id == parent_id, Classification.name == name)
        )
        if exists is not None:
            raise BadRequest(f"分類「{name}」は既にあります")
        row = Classification(name=name, parent_id=parent_id)
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
