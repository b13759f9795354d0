"""The deployment material stays complete and valid."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

from mailintake.config import SETTINGS, load_settings

from .conftest import apt_install, require

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
        # Personal data: private files whatever the caller's umask, a 0700
        # data folder, logs in the journal (no file root opens for the service).
        assert service["UMask"] == "0077" and service["StateDirectoryMode"] == "0700"
        # The data folder, and for the web unit the push-mode outbox if present.
        assert service["ReadWritePaths"].split()[0] == "/var/lib/mailintake"
        assert set(service["ReadWritePaths"].split()[1:]) <= {"-/srv/filelink/mailintake/outbox"}
        assert "StandardOutput" not in service and "StandardError" not in service
        # A database at another schema revision exits 3: no restart loop.
        assert service["RestartPreventExitStatus"] == "3"
        assert int(service["TimeoutStopSec"]) >= 10
        commands.add(service["ExecStart"].split()[-1])
    assert commands == {"smtp", "web"}


def test_backups_run_daily_as_the_service_account_into_a_private_folder() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "mailintake-backup.service")
    service = unit["Service"]
    assert service["User"] == "mailintake" and service["UMask"] == "0077"
    assert "-m 0700 /var/backups/mailintake" in service["ExecStartPre"]
    assert " backup " in service["ExecStart"] and "-mtime +${KEEP_DAYS}" in service["ExecStartPost"]
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read(DEPLOY / "systemd" / "mailintake-backup.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "true"


def test_the_guide_never_has_root_run_files_from_a_fixed_tmp_path() -> None:
    guide = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "/tmp/" not in guide
    assert "--output - | tar -x --no-same-owner -C /root/mailintake-mta" in guide


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


def test_every_unit_scores_low_in_systemd_analyze_security() -> None:
    """The sandbox stays tight: systemd's own rating of each unit's
    exposure is at most 2.0 (see deploy/README.md, Hardening)."""
    require(apt_install("systemd", "/usr/bin/systemd-analyze"), "Debian's systemd package is not installable here")
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        result = subprocess.run(
            [analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True, timeout=60
        )
        score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
        assert score is not None, result.stdout + result.stderr
        assert float(score.group(1)) <= 2.0, (unit.name, score.group(1))
