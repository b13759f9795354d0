"""Settings: embedded defaults, overridden by a TOML file, then ``MAILINTAKE_*``
environment variables, then command-line options.

This is the only module that reads configuration. Everything else receives a
:class:`Settings` object.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

ENV_PREFIX = "MAILINTAKE_"


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str


# Declared as data so that the README reference can be checked against it.
SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", "./var", "Folder for the database, spool and stored files."),
    Setting(
        "database_url",
        "",
        "SQLAlchemy URL; empty means SQLite at DATA_DIR/mailintake.db. "
        "PostgreSQL: postgresql+psycopg://user@host/dbname",
    ),
    Setting("spool_dir", "", "Spool folder for accepted raw mail; empty means DATA_DIR/spool."),
    Setting(
        "blob_store",
        "files",
        "Where attachments and original messages are kept: files (DATA_DIR/blobs and DATA_DIR/originals; one node) "
        "or database (in the database, in 1 MiB pieces; every node on one PostgreSQL serves every mail). "
        "Move what is stored with `mailintake blobs move`.",
    ),
    Setting("smtp_host", "127.0.0.1", "Address the SMTP relay listens on."),
    Setting(
        "copy_route_suffix",
        "mailintake.internal",
        "Domain suffix of the addresses the MTA sends copies to in copy mode: "
        "soumu@city.example.jp.SUFFIX counts as soumu@city.example.jp.",
    ),
    Setting("smtp_port", 2525, "Port the SMTP relay listens on."),
    Setting("smtp_hostname", "", "Name in the SMTP greeting; empty means this host's FQDN."),
    Setting(
        "relay_networks",
        ["127.0.0.1", "::1"],
        "Client networks allowed to deliver (the organisation's MTA). Others get 554.",
    ),
    Setting(
        "max_message_size",
        52_428_800,
        "Largest accepted message in bytes (advertised with SIZE); keep it at least the upstream MTA's limit.",
    ),
    Setting("max_connections", 50, "Concurrent SMTP connections; more get 421 and retry later."),
    Setting("smtp_timeout", 300, "Seconds a client may stay silent before it is disconnected."),
    Setting("http_host", "127.0.0.1", "Address the web/API server listens on."),
    Setting("http_port", 8000, "Port the web/API server listens on."),
    Setting(
        "web_processes",
        1,
        "Processes of `mailintake web` sharing its port; one per core lets pages use every core "
        "(each process runs its pages in threads that share one interpreter lock).",
    ),
    Setting("ingest_batch", 50, "Most spooled messages stored in one database transaction."),
    Setting("ingest_retry_seconds", 2.0, "Pause before retrying when the database is unavailable."),
    Setting(
        "parse_time_limit",
        120.0,
        "Seconds one message may take to parse; past it the parser is restarted and the "
        "message stored unparsed with a note.",
    ),
    Setting(
        "smtp_tls_cert",
        "",
        "PEM certificate (with its chain) for STARTTLS on the relay; empty offers no STARTTLS. "
        "Use when the MTA is on another host.",
    ),
    Setting("smtp_tls_key", "", "PEM private key for smtp_tls_cert (readable by the service account only)."),
    Setting(
        "database_password_file",
        "",
        "File holding the PostgreSQL password (first line), e.g. a systemd credential or a root-owned 0640 file; "
        "keeps the password out of the config file and the environment.",
    ),
    Setting(
        "max_mime_part_lines",
        8000,
        "Lines that may open a MIME part, counted before parsing; over this only the headers are decoded and "
        "the clerk reads the original (a mail of millions of empty parts cannot stall intake).",
    ),
    Setting(
        "max_header_display_chars",
        4096,
        "Characters of Subject and sender kept for display and search; the original keeps the whole header.",
    ),
    Setting(
        "probe_via",
        "127.0.0.1:25",
        "The organisation's MTA (HOST:PORT) that probes go through by default, so that a probe tests the whole "
        "forwarding path, not the relay alone.",
    ),
    Setting("log_level", "INFO", "Logging level: DEBUG, INFO, WARNING or ERROR."),
    Setting("access_log", False, "Log one line per HTTP request (method, path, status, client)."),
    Setting(
        "trusted_proxies",
        [],
        "Addresses of reverse proxies (nginx) whose X-Forwarded-For/-Proto are believed; "
        "empty trusts none and the client is the connecting address.",
    ),
    Setting(
        "metrics_allow",
        ["127.0.0.1", "::1"],
        "Client networks that may read /metrics (Prometheus); others get 403.",
    ),
    Setting(
        "purge_new_after_days",
        0,
        "Retention: delete 未処理 mail (never registered nor dismissed) received more than this many days ago "
        "when `mailintake purge` runs; 0 keeps it for ever.",
    ),
    Setting(
        "purge_dismissed_after_days",
        0,
        "Retention: delete 対象外 (dismissed) mail received more than this many days ago; 0 keeps it for ever. "
        "Registered mail is never purged.",
    ),
    Setting(
        "receipt_number_format",
        "{symbol}第{number}号",
        "Format of 収受番号. Fields: {symbol} (文書記号), {number}, {fiscal_year} (2026), {era_year} (令和8).",
    ),
    Setting(
        "retention_periods",
        ["1年", "3年", "5年", "10年", "30年", "永年"],
        "Choices of 保存期間 offered at 収受登録.",
    ),
    Setting("session_hours", 10.0, "Hours a web sign-in lasts."),
    Setting(
        "public_url",
        "",
        "The address clerks open (https://mailintake.city.example.jp); the IdP sends them back to it. "
        "Empty: http://HTTP_HOST:HTTP_PORT. Needed for SAML and OpenID Connect.",
    ),
    Setting("portal_url", "", "Where sign-out leads (the groupware portal); empty: the sign-in page."),
    Setting(
        "password_signin", True, "Offer the user ID and password form (turn off once every clerk signs in by SSO)."
    ),
    Setting(
        "signin_create_users",
        False,
        "Single sign-on of a user ID unknown here makes the account (clerk, sections of the latest 異動情報) "
        "when the person is in the imported 異動情報; otherwise such a sign-in is refused.",
    ),
    Setting("saml_idp_metadata", "", "SAML: the IdP's metadata XML file; empty turns SAML sign-in off."),
    Setting("saml_sp_entity_id", "", "SAML: this service's entity ID; empty: PUBLIC_URL/sso/saml/metadata."),
    Setting(
        "saml_user_attribute",
        "",
        "SAML: the attribute (Name or FriendlyName) carrying the user ID, as the groupware's login ID; empty: NameID.",
    ),
    Setting("saml_sp_cert", "", "SAML: PEM certificate of this service, to sign requests; empty signs none."),
    Setting("saml_sp_key", "", "SAML: PEM private key for saml_sp_cert (readable by the service account only)."),
    Setting("oidc_issuer", "", "OpenID Connect: the provider's issuer URL (discovery); empty turns OIDC sign-in off."),
    Setting("oidc_client_id", "", "OpenID Connect: this service's client ID at the provider."),
    Setting("oidc_client_secret_file", "", "OpenID Connect: file holding the client secret (first line)."),
    Setting("oidc_user_claim", "preferred_username", "OpenID Connect: the ID-token claim carrying the user ID."),
    Setting("oidc_scopes", ["openid", "profile"], "OpenID Connect: scopes asked for."),
    Setting(
        "groupware_handoff",
        "off",
        "The groupware portal's hand-off: off; signed (an HMAC-signed value, see deploy/sso.md); "
        "api (the clerk's groupware access key, checked with the groupware's common API); insecure (the plain user ID, as the groupware's parameter or cookie authentication sends it — "
        "anyone who can type a URL becomes any clerk; flagged on every admin page and in the audit log).",
    ),
    Setting("groupware_networks", [], "Client networks a groupware hand-off is accepted from (the office LAN)."),
    Setting("groupware_secret_file", "", "File holding the hand-off's shared secret (first line, 32+ characters)."),
    Setting("groupware_max_age", 120, "Seconds a signed hand-off stays valid (it is also used only once)."),
    Setting("groupware_parameter", "mi_sso", "URL parameter of /sso/groupware that carries the hand-off."),
    Setting("groupware_cookie", "", "Cookie that carries the hand-off instead of the parameter; empty: none."),
    Setting(
        "groupware_api_url",
        "",
        "groupware_handoff = api: the common API module to ask (https://neo.example/cgi-bin/dneo/zrconst.cgi).",
    ),
    Setting("groupware_api_action", "", "groupware_handoff = api: the API action that answers the key's own user."),
    Setting(
        "groupware_api_user_field",
        "loginid",
        "groupware_handoff = api: where the login ID is in the API's JSON answer (dotted, e.g. user.loginid).",
    ),
    Setting(
        "handoff_push_dir",
        "",
        "Push mode: the linkage engine's outbox folder for the document system; every registration event is "
        "also written there as a package (temporary name, then rename). Empty: the document system pulls the feed.",
    ),
    Setting(
        "handoff_ack_warn_hours",
        24.0,
        "Hours after which a registration the document system has not acknowledged is listed for section "
        "administrators and counted in /metrics; 0 turns the warning off.",
    ),
    Setting(
        "filelink_status",
        "",
        "The file-share linkage engine's status file (its status_file), shown to system administrators; "
        "empty hides the page.",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    spool_dir: Path
    blob_store: str
    smtp_host: str
    copy_route_suffix: str
    smtp_port: int
    smtp_hostname: str
    relay_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    max_message_size: int
    max_connections: int
    smtp_timeout: float
    http_host: str
    http_port: int
    web_processes: int
    ingest_batch: int
    ingest_retry_seconds: float
    parse_time_limit: float
    smtp_tls_cert: Path | None
    smtp_tls_key: Path | None
    database_password_file: Path | None
    max_mime_part_lines: int
    max_header_display_chars: int
    probe_via: str
    log_level: str
    access_log: bool
    trusted_proxies: tuple[str, ...]
    metrics_allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    purge_new_after_days: int
    purge_dismissed_after_days: int
    receipt_number_format: str
    retention_periods: tuple[str, ...]
    session_hours: float
    filelink_status: Path | None
    handoff_push_dir: Path | None
    handoff_ack_warn_hours: float
    public_url: str
    portal_url: str
    password_signin: bool
    signin_create_users: bool
    saml_idp_metadata: Path | None
    saml_sp_entity_id: str
    saml_user_attribute: str
    saml_sp_cert: Path | None
    saml_sp_key: Path | None
    oidc_issuer: str
    oidc_client_id: str
    oidc_client_secret_file: Path | None
    oidc_user_claim: str
    oidc_scopes: tuple[str, ...]
    groupware_handoff: str
    groupware_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    groupware_secret_file: Path | None
    groupware_max_age: int
    groupware_parameter: str
    groupware_cookie: str
    groupware_api_url: str
    groupware_api_action: str
    groupware_api_user_field: str

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def originals_dir(self) -> Path:
        return self.data_dir / "originals"

    @property
    def address_snapshot(self) -> Path:
        return self.data_dir / "addresses.json"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge defaults < TOML file < environment < ``overrides`` (CLI options).

    The TOML file is ``config_file``, else ``$MAILINTAKE_CONFIG``; a missing
    file named explicitly is an error.
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {s.name: s.default for s in SETTINGS}

    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if path:
        raw.update(_read_toml(Path(path)))
    for setting in SETTINGS:
        value = environ.get(ENV_PREFIX + setting.name.upper())
        if value is not None and value != "":
            raw[setting.name] = _from_env(setting, value)
    for name, value in (overrides or {}).items():
        if value is not None:
            raw[name] = value
    return _build(raw)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    # Settings may sit at the top level or under [mailintake].
    table = data.get("mailintake", data)
    unknown = sorted(set(table) - set(_BY_NAME))
    if unknown:
        raise ConfigError(f"unknown setting(s) in {path}: {', '.join(unknown)}")
    return dict(table)


def _from_env(setting: Setting, value: str) -> Any:
    if isinstance(setting.default, list):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _build(raw: dict[str, Any]) -> Settings:
    data_dir = Path(raw["data_dir"]).expanduser().resolve()
    spool_dir = Path(raw["spool_dir"]).expanduser().resolve() if raw["spool_dir"] else data_dir / "spool"
    database_url = raw["database_url"] or f"sqlite:///{data_dir / 'mailintake.db'}"
    if raw["smtp_tls_cert"] and not raw["smtp_tls_key"]:
        raise ConfigError("smtp_tls_cert needs smtp_tls_key")
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        spool_dir=spool_dir,
        blob_store=_one_of(raw, "blob_store", ("files", "database")),
        smtp_host=str(raw["smtp_host"]),
        copy_route_suffix=str(raw["copy_route_suffix"]).strip(".").lower(),
        smtp_port=_int(raw, "smtp_port", minimum=0),
        smtp_hostname=str(raw["smtp_hostname"]),
        relay_networks=_networks(raw["relay_networks"], "relay_networks"),
        max_message_size=_int(raw, "max_message_size", minimum=1024),
        max_connections=_int(raw, "max_connections", minimum=1),
        smtp_timeout=_float(raw, "smtp_timeout", minimum=1),
        http_host=str(raw["http_host"]),
        http_port=_int(raw, "http_port", minimum=0),
        web_processes=_int(raw, "web_processes", minimum=1),
        ingest_batch=_int(raw, "ingest_batch", minimum=1),
        ingest_retry_seconds=_float(raw, "ingest_retry_seconds", minimum=0.05),
        parse_time_limit=_float(raw, "parse_time_limit", minimum=0.1),
        smtp_tls_cert=_path(raw["smtp_tls_cert"]),
        smtp_tls_key=_path(raw["smtp_tls_key"]),
        database_password_file=_path(raw["database_password_file"]),
        max_mime_part_lines=_int(raw, "max_mime_part_lines", minimum=100),
        max_header_display_chars=_int(raw, "max_header_display_chars", minimum=200),
        probe_via=_host_port_text(raw["probe_via"]),
        log_level=str(raw["log_level"]).upper(),
        access_log=_bool(raw, "access_log"),
        trusted_proxies=tuple(str(n) for n in _networks(raw["trusted_proxies"], "trusted_proxies")),
        metrics_allow=_networks(raw["metrics_allow"], "metrics_allow"),
        purge_new_after_days=_int(raw, "purge_new_after_days", minimum=0),
        purge_dismissed_after_days=_int(raw, "purge_dismissed_after_days", minimum=0),
        receipt_number_format=_receipt_format(raw["receipt_number_format"]),
        retention_periods=_choices(raw, "retention_periods"),
        session_hours=_float(raw, "session_hours", minimum=0.1),
        filelink_status=Path(raw["filelink_status"]).expanduser() if raw["filelink_status"] else None,
        handoff_push_dir=_path(raw["handoff_push_dir"]),
        handoff_ack_warn_hours=_float(raw, "handoff_ack_warn_hours", minimum=0),
        **_signin(raw),
    )


GROUPWARE_MODES = ("off", "signed", "api", "insecure")


def _signin(raw: dict[str, Any]) -> dict[str, Any]:
    public_url = str(raw["public_url"]).rstrip("/") or f"http://{raw['http_host']}:{raw['http_port']}"
    if not public_url.startswith(("http://", "https://")):
        raise ConfigError(f"public_url must start with http:// or https://, got {public_url!r}")
    mode = _one_of(raw, "groupware_handoff", GROUPWARE_MODES)
    networks = _networks(raw["groupware_networks"], "groupware_networks")
    if mode != "off" and not networks:
        raise ConfigError("groupware_handoff needs groupware_networks (the networks of the clerks' PCs)")
    if mode == "signed" and not raw["groupware_secret_file"]:
        raise ConfigError("groupware_handoff = signed needs groupware_secret_file")
    if mode == "api" and not (raw["groupware_api_url"] and raw["groupware_api_action"]):
        raise ConfigError("groupware_handoff = api needs groupware_api_url and groupware_api_action")
    if raw["oidc_issuer"] and not raw["oidc_client_id"]:
        raise ConfigError("oidc_issuer needs oidc_client_id")
    return {
        "public_url": public_url,
        "portal_url": str(raw["portal_url"]),
        "password_signin": _bool(raw, "password_signin"),
        "signin_create_users": _bool(raw, "signin_create_users"),
        "saml_idp_metadata": _path(raw["saml_idp_metadata"]),
        "saml_sp_entity_id": str(raw["saml_sp_entity_id"]) or public_url + "/sso/saml/metadata",
        "saml_user_attribute": str(raw["saml_user_attribute"]),
        "saml_sp_cert": _path(raw["saml_sp_cert"]),
        "saml_sp_key": _path(raw["saml_sp_key"]),
        "oidc_issuer": str(raw["oidc_issuer"]),
        "oidc_client_id": str(raw["oidc_client_id"]),
        "oidc_client_secret_file": _path(raw["oidc_client_secret_file"]),
        "oidc_user_claim": str(raw["oidc_user_claim"]),
        "oidc_scopes": _choices(raw, "oidc_scopes"),
        "groupware_handoff": mode,
        "groupware_networks": networks,
        "groupware_secret_file": _path(raw["groupware_secret_file"]),
        "groupware_max_age": _int(raw, "groupware_max_age", minimum=5),
        "groupware_parameter": str(raw["groupware_parameter"]),
        "groupware_cookie": str(raw["groupware_cookie"]),
        "groupware_api_url": str(raw["groupware_api_url"]),
        "groupware_api_action": str(raw["groupware_api_action"]),
        "groupware_api_user_field": str(raw["groupware_api_user_field"]),
    }


def _host_port_text(value: Any) -> str:
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"probe_via must be HOST:PORT, got {value!r}")
    return str(value)


def _path(value: Any) -> Path | None:
    return Path(str(value)).expanduser() if value else None


def _bool(raw: dict[str, Any], name: str) -> bool:
    value = raw[name]
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _receipt_format(value: Any) -> str:
    template = str(value)
    if "{number" not in template:
        raise ConfigError("receipt_number_format must contain {number}")
    try:
        template.format(symbol="総務", number=1, fiscal_year=2026, era_year="令和8")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"receipt_number_format {template!r} is invalid: {exc!r}") from exc
    return template


def _one_of(raw: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = str(raw[name]).strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _choices(raw: dict[str, Any], name: str) -> tuple[str, ...]:
    values = raw[name]
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",")]
    choices = tuple(str(v).strip() for v in values if str(v).strip())
    if not choices:
        raise ConfigError(f"{name} needs at least one entry")
    return choices


def _int(raw: dict[str, Any], name: str, minimum: int) -> int:
    try:
        value = int(raw[name])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be an integer, got {raw[name]!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(raw: dict[str, Any], name: str, minimum: float) -> float:
    try:
        value = float(raw[name])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number, got {raw[name]!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _networks(values: Any, name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(str(value), strict=False))
        except ValueError as exc:
            raise ConfigError(f"{name}: {value!r} is not an address or network") from exc
    return tuple(networks)


def address_in(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    """Whether a client address (IPv4-mapped IPv6 read as IPv4) lies in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def read_secret(path: Path, setting: str) -> str:
    """The first line of a secret file named by ``setting``."""
    try:
        secret = path.read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, IndexError) as exc:
        raise ConfigError(f"{setting} {path}: cannot read a secret ({exc})") from exc
    if not secret:
        raise ConfigError(f"{setting} {path}: the first line is empty")
    return secret
