"""Sections (課) as rows: found by name, or created with their default 文書記号."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Section


def ensure_section(session: Session, name: str) -> Section:
    """The section called ``name``, created on first mention (by an address,
    a user, or the 組織マスタ) with the default 文書記号."""
    name = name.strip()
    section = session.scalar(select(Section).where(Section.name == name))
    if section is None:
        section = Section(name=name, symbol=default_symbol(name))
        session.add(section)
        session.flush()
    return section


def default_symbol(section_name: str) -> str:
    """総務課 → 総務: the usual 文書記号 is the section name without 課/室/係."""
    for suffix in ("課", "室", "係"):
        if section_name.endswith(suffix) and len(section_name) > len(suffix):
            return section_name[: -len(suffix)]
    return section_name
