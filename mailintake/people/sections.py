"""Sections (課) as rows. A section is made on purpose — by an administrator
(admin page, ``mailintake section add``) or the 組織マスタ import — and
addresses and users refer to it by id; naming one that does not exist is an
error, never a way to create it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import BadRequest
from ..models import Section


def find_section(session: Session, section: str | int) -> Section:
    """The section with this id, or this name."""
    row = (
        session.get(Section, section)
        if isinstance(section, int)
        else session.scalar(select(Section).where(Section.name == section.strip()))
    )
    if row is None:
        raise BadRequest(
            f"課「{section}」は登録されていません。先に「課と文書記号」の画面か "
            "mailintake section add で課を作成してください。"
        )
    return row


def create_section(session: Session, name: str, symbol: str = "") -> Section:
    name, symbol = name.strip(), symbol.strip()
    if not name or len(name) > 200:
        raise BadRequest("課の名前を200文字以内で入力してください")
    if len(symbol) > 50:
        raise BadRequest("文書記号を50文字以内で入力してください")
    if session.scalar(select(Section.id).where(Section.name == name)) is not None:
        raise BadRequest(f"課「{name}」は既に登録されています")
    section = Section(name=name, symbol=symbol or default_symbol(name))
    session.add(section)
    session.flush()
    return section


def default_symbol(section_name: str) -> str:
    """総務課 → 総務: the usual 文書記号 is the section name without 課/室/係."""
    for suffix in ("課", "室", "係"):
        if section_name.endswith(suffix) and len(section_name) > len(suffix):
            return section_name[: -len(suffix)]
    return section_name
