"""Settings: defaults, TOML, environment and options, in that order."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from mailintake.config import SETTINGS, load_settings
from mailintake.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def test_embedded_defaults_are_loopback_sqlite_and_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.data_dir == tmp_path / "var"
    assert settings.database_url == f"sqlite:///{tmp_path / 'var' / 'mailintake.db'}"
    assert (settings.smtp_host, settings.smtp_port) == ("127.0.0.1", 2525)
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8000)
    assert settings.relay_networks == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
    assert settings.max_message_size == 50 * 1024 * 1024
    assert settings.spool_dir == tmp_path / "var" / "spool"


def test_toml_then_environment_then_options(tmp_path: Path) -> None:
    config = tmp_path / "mailintake.toml"
    config.write_text('[mailintake]\nsmtp_port = 2600\nhttp_port = 8100\nrelay_networks = ["192.0.2.10"]\n')
    settings = load_settings(
        config,
        overrides={"http_port": 8300},
        environ={"MAILINTAKE_HTTP_PORT": "8200", "MAILINTAKE_DATA_DIR": str(tmp_path / "d")},
    )
    assert settings.smtp_port == 2600  # from the file
    assert settings.http_port == 8300  # option beats environment beats file
    assert settings.data_dir == tmp_path / "d"
    assert settings.relay_networks == (ipaddress.ip_network("192.0.2.10/32"),)


def test_the_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("max_connections = 7\n")
    assert load_settings(environ={"MAILINTAKE_CONFIG": str(config)}).max_connections == 7


def test_list_settings_from_the_environment_are_comma_separated() -> None:
    settings = load_settings(environ={"MAILINTAKE_RELAY_NETWORKS": "127.0.0.1, 10.1.2.0/24"})
    assert settings.relay_networks == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.1.2.0/24"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("smtp_prot = 25\n", "unknown setting"),
        ("smtp_port = 'x'\n", "smtp_port must be an integer"),
        ("relay_networks = ['not a net']\n", "relay_networks"),
        ("max_connections = 0\n", "at least 1"),
        ("smtp_port = [\n", "not valid TOML"),
    ],
)
def test_bad_configuration_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={})


def test_a_named_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = README.read_text(encoding="utf-8")
    for setting in SETTINGS:
        assert f"`{setting.name}`" in readme, setting.name
        assert f"MAILINTAKE_{setting.name.upper()}" in readme, setting.name
