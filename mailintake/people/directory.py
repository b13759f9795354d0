"""Keeping sections and user–section assignments current from the personnel
system's 組織マスタ and 異動情報 files (delivered by the file-share linkage
into 文書管理's inbox). CSV with a header row, in UTF-8 (with or without
BOM) or CP932:

    組織マスタ   所属コード,所属名[,文書記号]
    異動情報     職員番号,氏名,所属コード[,発令日]

A user is matched by user ID = 職員番号. The rows of one 異動情報 file for a
person with the latest 発令日 that has come are that person's sections
(several rows: 兼務; no 発令日: today). Every person of the file is kept
(``directory_people``) for an account made at their first single sign-on.
Rows dated in the future are left for a later run; a file is done (and
removed from the inbox) once none of its rows is waiting.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from .. import jpdates
from ..errors import BadRequest
from ..models import DirectoryPerson, Section, User, utcnow
from .accounts import normalize_username
from .sections import default_symbol

ORG_HEADER = ("所属コード", "所属名")
TRANSFER_HEADER = ("職員番号", "氏名", "所属コード")


@dataclass
class ImportReport:
    files: int = 0
    sections_added: int = 0
    sections_changed: int = 0
    users_moved: int = 0
    users_unknown: list[str] = field(default_factory=list)
    rows_waiting: int = 0
    done: list[Path] = field(default_factory=list)


def read_csv(path: Path) -> list[dict[str, str]]:
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "cp932"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise BadRequest(f"{path.name}: neither UTF-8 nor CP932")
    rows = list(csv.DictReader(io.StringIO(text)))
    return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in rows]


def kind_of(rows: list[dict[str, str]], path: Path) -> str:
    columns = set(rows[0]) if rows else set()
    if set(TRANSFER_HEADER) <= columns:
        return "transfers"
    if set(ORG_HEADER) <= columns:
        return "organisation"
    raise BadRequest(
        f"{path.name}: header must name {','.join(ORG_HEADER)} (組織マスタ) or {','.join(TRANSFER_HEADER)} (異動情報)"
    )


class DirectoryImport:
    def __init__(self, engine: Engine, today: dt.date | None = None) -> None:
        self.engine = engine
        self.today = today or dt.datetime.now(jpdates.JST).date()

    def import_files(self, paths: list[Path]) -> ImportReport:
        """組織マスタ files first, then 異動情報, each in name order."""
        report = ImportReport()
        parsed = []
        for path in sorted(paths, key=lambda p: p.name):
            rows = read_csv(path)
            parsed.append((kind_of(rows, path), path, rows))
        for kind, path, rows in sorted(parsed, key=lambda item: item[0] != "organisation"):
            report.files += 1
            waiting = self._organisation(rows, report) if kind == "organisation" else self._transfers(rows, report)
            report.rows_waiting += waiting
            if waiting == 0:
                report.done.append(path)
        return report

    def _organisation(self, rows: list[dict[str, str]], report: ImportReport) -> int:
        with Session(self.engine) as session, session.begin():
            for row in rows:
                code, name = row["所属コード"], row["所属名"]
                if not code or not name:
                    raise BadRequest(f"組織マスタ: 所属コードと所属名は必須です（{row}）")
                symbol = row.get("文書記号") or ""
                section = session.scalar(select(Section).where(Section.code == code))
                if section is None:
                    section = session.scalar(select(Section).where(Section.name == name))
                if section is None:
                    session.add(Section(code=code, name=name, symbol=symbol or default_symbol(name)))
                    report.sections_added += 1
                    continue
                changed = False
                if section.name != name:
                    section.name = name
                    changed = True
                if section.code != code:
                    section.code = code
                    changed = True
                if symbol and section.symbol != symbol:
                    section.symbol = symbol
                    changed = True
                report.sections_changed += int(changed)
                session.flush()
        return 0

    def _transfers(self, rows: list[dict[str, str]], report: ImportReport) -> int:
        waiting = 0
        # Per person, the rows of the latest 発令日 that has come (兼務: several rows).
        latest: dict[str, tuple[dt.date, list[str]]] = {}
        for row in rows:
            effective = _date(row.get("発令日", "")) or self.today
            if effective > self.today:
                waiting += 1
                continue
            number = row["職員番号"]
            current = latest.get(number)
            if current is None or effective > current[0]:
                latest[number] = (effective, [row["所属コード"]])
            elif effective == current[0]:
                current[1].append(row["所属コード"])
        assignments = {number: codes for number, (_, codes) in latest.items()}
        names = {row["職員番号"]: row.get("氏名", "").strip() for row in rows}
        with Session(self.engine) as session, session.begin():
            for number, codes in assignments.items():
                _remember(session, number, names.get(number, ""), codes)
                user = session.scalar(select(User).where(User.username == normalize_username(number)))
                if user is None:
                    report.users_unknown.append(number)
                    continue
                sections = []
                for code in codes:
                    section = session.scalar(select(Section).where(Section.code == code))
                    if section is None:
                        raise BadRequest(f"異動情報: 所属コード {code} が組織マスタにありません（職員番号 {number}）")
                    sections.append(section)
                if {s.id for s in user.sections} != {s.id for s in sections}:
                    user.sections = sections
                    report.users_moved += 1
        return waiting


def _remember(session: Session, number: str, name: str, codes: list[str]) -> None:
    """Keep the person for an account made at their first single sign-on."""
    key = normalize_username(number)
    person = session.get(DirectoryPerson, key) or DirectoryPerson(staff_number=key)
    person.name, person.section_codes, person.updated_at = name[:200], ",".join(codes)[:500], utcnow()
    session.add(person)


def _date(value: str) -> dt.date | None:
    value = value.strip().replace("/", "-")
    if not value:
        return None
    try:
        year, month, day = (int(part) for part in value.split("-"))
        return dt.date(year, month, day)
    except ValueError as exc:
        raise BadRequest(f"発令日 {value!r} は YYYY-MM-DD で書いてください") from exc
