"""The deployment material stays complete and valid."""

from __future__ import annotations

import configparser
import tomllib
from pathlib import Path

from mailintake.config import SETTINGS, load_settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_the_sample_config_lists_every_setting_and_loads() -> None:
    text = (DEPLOY / "mailintake.toml").read_text(encoding="utf-8")
    for setting in SETTINGS:
        assert f"{setting.name} = " in text, setting.name
    assert tomllib.loads(text)["mailintake"]["data_dir"] == "/var/lib/mailintake"
    settings = load_settings(DEPLOY / "mailintake.toml", environ={})
    assert str(settings.data_dir) == "/var/lib/mailintake"


def test_the_systemd_units_are_hardened_and_separate() -> None:
    commands = set()
    for name in ("mailintake-smtp.service", "mailintake-web.service"):
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read(DEPLOY / "systemd" / name)
        service = unit["Service"]
        assert service["User"] == "mailintake"
        assert service["NoNewPrivileges"] == "yes"
        assert service["ProtectSystem"] == "strict"
        assert service["CapabilityBoundingSet"] == ""
        commands.add(service["ExecStart"].split()[-1])
    assert commands == {"smtp", "web"}


def test_the_linkage_engine_runs_unprivileged_and_the_samba_shares_are_per_system() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "filelink.service", encoding="utf-8")
    service = unit["Service"]
    assert service["User"] == "filelink" and service["NoNewPrivileges"] == "yes"
    assert service["CapabilityBoundingSet"] == "" and service["ExecStart"].endswith("filelink run")
    shares = configparser.ConfigParser(strict=False, interpolation=None)
    shares.read(DEPLOY / "samba" / "smb.conf.filelink", encoding="utf-8")
    for name in ("jinji", "kyuyo", "shomu", "zaimu"):
        assert shares[name]["path"] == f"/srv/filelink/{name}"
        assert shares[name]["valid users"] == f"@fl-{name}"
