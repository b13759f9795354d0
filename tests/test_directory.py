"""組織マスタ and 異動情報 keep mailintake's sections and assignments current,
end to end through the file-share linkage."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from filelink import permissions
from filelink.engine import Engine
from mailintake.config import Settings
from mailintake.people.directory import DirectoryImport
from mailintake.records.inbox import InboxFilter
from mailintake.services import Services, build_services

from .factories import designate, make_user, stored_message
from .linkage import config_data, tree_config, write_config
from .web import add_user

ORG = "所属コード,所属名,文書記号\r\n0110,総務課,総総\r\n0120,財政課,財財\r\n0130,髙松支所,髙支\r\n"


def _write(path: Path, text: str, encoding: str = "cp932") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def staff(services: Services) -> Services:
    designate(services, "soumu@city.example.jp", "総務課")
    designate(services, "zaisei@city.example.jp", "財政課")
    make_user(services, "1001", password=None, sections=["総務課"], display_name="山田 太郎")
    return services


class TestImport:
    def test_the_organisation_master_sets_codes_and_symbols_and_renames_keep_their_mail(
        self, staff: Services, tmp_path: Path
    ) -> None:
        DirectoryImport(staff.engine).import_files([_write(tmp_path / "SOSHIKI.csv", ORG)])
        sections = {s.name: s.symbol for s in staff.accounts.sections()}
        assert sections == {"総務課": "総総", "財政課": "財財", "髙松支所": "髙支"}
        renamed = ORG.replace("0120,財政課", "0120,財務課")
        report = DirectoryImport(staff.engine).import_files([_write(tmp_path / "SOSHIKI2.csv", renamed, "utf-8-sig")])
        assert report.sections_changed == 1
        assert staff.addresses.get("zaisei@city.example.jp").section == "財務課"

    def test_transfers_move_users_and_future_ones_wait(self, staff: Services, tmp_path: Path) -> None:
        today = dt.date(2026, 11, 21)
        DirectoryImport(staff.engine, today).import_files([_write(tmp_path / "SOSHIKI.csv", ORG)])
        transfers = (
            "職員番号,氏名,所属コード,発令日\r\n"
            "1001,山田 太郎,0120,2026/11/21\r\n"
            "1001,山田 太郎,0130,2026/11/21\r\n"
            "2002,佐藤 花子,0110,2026-04-01\r\n"
            "1001,山田 太郎,0110,2027-04-01\r\n"
        )
        path = _write(tmp_path / "IDOU.csv", transfers)
        report = DirectoryImport(staff.engine, today).import_files([path])
        assert staff.accounts.by_username("1001").section_names == ("財政課", "髙松支所")  # 兼務
        assert (report.users_moved, report.users_unknown, report.rows_waiting, report.done) == (1, ["2002"], 1, [])
        later = DirectoryImport(staff.engine, dt.date(2027, 4, 1)).import_files([path])
        assert staff.accounts.by_username("1001").section_names == ("総務課",)
        assert later.done == [path]

    def test_an_unknown_section_code_is_a_clear_error(self, staff: Services, tmp_path: Path) -> None:
        path = _write(tmp_path / "IDOU.csv", "職員番号,氏名,所属コード\r\n1001,山田 太郎,9999\r\n")
        with pytest.raises(Exception, match="9999"):
            DirectoryImport(staff.engine).import_files([path])
        assert staff.accounts.by_username("1001").section_names == ("総務課",)


def test_a_transfer_dropped_in_the_personnel_outbox_moves_the_user_in_mailintake(
    staff: Services, settings: Settings, tmp_path: Path, acl_tools: None
) -> None:
    linkage = tree_config(tmp_path / "linkage", convert="")
    permissions.apply(linkage)
    config_path = write_config(config_data(linkage), tmp_path / "filelink.toml")
    idou, soshiki = linkage.routes[0], linkage.routes[2]
    assert (idou.kind, soshiki.kind) == ("異動情報", "組織マスタ")
    _write(linkage.outbox(soshiki) / "SOSHIKI_20261121.csv", ORG)
    _write(linkage.outbox(idou) / "IDOU_20261121.csv", "職員番号,氏名,所属コード\r\n1001,山田 太郎,0120\r\n")
    theirs = stored_message(staff, "zaisei@city.example.jp", subject="財政課あて")

    engine = subprocess.run(
        [sys.executable, "-m", "filelink", "run", "--once", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert engine.returncode == 0, engine.stderr
    inboxes = [linkage.inbox(soshiki, "bunsho"), linkage.inbox(idou, "bunsho")]
    assert [len(list(folder.iterdir())) for folder in inboxes] == [1, 1]

    imported = subprocess.run(
        [sys.executable, "-m", "mailintake", "directory", "import", "--data-dir", str(settings.data_dir)]
        + [arg for folder in inboxes for arg in ("--inbox", str(folder))],
        capture_output=True,
        text=True,
        timeout=60,
        env={"MAILINTAKE_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"},
    )
    assert imported.returncode == 0, imported.stderr
    assert "1 user(s) moved" in imported.stdout
    assert [list(folder.iterdir()) for folder in inboxes] == [[], []]  # consumed

    moved = staff.accounts.by_username("1001")
    assert moved.section_names == ("財政課",)
    assert [row.id for row in staff.inbox.page(moved, InboxFilter(status=None)).rows] == [theirs]


def test_system_admins_see_the_linkage_status_page(
    make_settings: Any, start_service: Any, browsers: Any, tmp_path: Path, acl_tools: None
) -> None:
    linkage = tree_config(tmp_path / "linkage")
    permissions.apply(linkage)
    engine = Engine(linkage)
    (linkage.outbox(linkage.routes[0]) / "IDOU.csv").write_bytes(b"waiting\r\n")
    engine.write_status()
    engine.close()
    settings = make_settings(filelink_status=str(linkage.status_path))
    services = build_services(settings)
    add_user(services, "kanri", [], role="system_admin")
    add_user(services, "sato", ["総務課"])
    services.close()
    service = start_service(settings)
    admin = browsers(service.base_url)
    admin.login("kanri")
    page = admin.get("/admin/filelink")
    assert page.status_code == 200
    row = re.search(r"<tr[^>]*>\s*<td>jinji-idou</td>.*?</tr>", page.text, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
    assert cells[:5] == ["jinji-idou", "jinji", "異動情報", "kyuyo、shomu、bunsho、zaimu", "1"]
    clerk = browsers(service.base_url)
    clerk.login("sato")
    assert clerk.get("/admin/filelink").status_code == 404
