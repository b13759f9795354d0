"""The linkage configuration: the engine, the systems and the routes, from
one TOML file (see samples/filelink.toml for the whole 図表4-2 table).

    [engine]
    root = "/srv/filelink"            # the shared folder tree
    state_dir = "/var/lib/filelink"   # journal, work and archive areas
    account = "filelink"              # the engine's service account
    status_file = "/var/lib/filelink-status/status.json"   # optional; readable by others
    integrated_hr_package = false     # true drops the flows marked ※ in 図表4-2

    [systems.jinji]
    name = "人事給与（人事）"
    group = "fl-jinji"                # the OS group of the system's account(s)

    [[routes]]
    id = "jinji-idou"
    source = "jinji"
    kind = "異動情報"
    pattern = "*.csv"
    destinations = ["kyuyo", "shomu", "bunsho", "zaimu"]
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

CONVERSIONS = ("", "cp932-to-utf8", "utf8-to-cp932")
COMPLETENESS = ("rename", "done-file", "stable")
CONFLICTS = ("generation", "error")
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class System:
    id: str
    name: str
    group: str


@dataclass(frozen=True)
class Route:
    id: str
    source: str
    kind: str
    destinations: tuple[str, ...]
    pattern: str = "*"
    convert: str = ""
    completeness: str = "rename"
    stable_seconds: float = 2.0
    done_suffix: str = ".done"
    on_conflict: str = "generation"
    archive_days: int = 30
    enabled: bool = True
    # ※ in 図表4-2: flows that drop out when an integrated HR/庶務 package
    # is chosen (the whole route, or only some destinations).
    excludable: bool = False
    excludable_destinations: tuple[str, ...] = ()
    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    root: Path
    state_dir: Path
    account: str
    systems: dict[str, System]
    routes: tuple[Route, ...]
    rescan_seconds: float = 5.0
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 10
    max_attempts_backoff: float = 300.0
    status_file: Path | None = None
    source_path: Path | None = field(default=None, compare=False)

    @property
    def enabled_routes(self) -> tuple[Route, ...]:
        return tuple(r for r in self.routes if r.enabled)

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "journal.db"

    @property
    def work_dir(self) -> Path:
        return self.state_dir / "work"

    @property
    def archive_dir(self) -> Path:
        return self.state_dir / "archive"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "transfers.jsonl"

    @property
    def status_path(self) -> Path:
        return self.status_file or self.state_dir / "status.json"

    def system_dir(self, system: str) -> Path:
        return self.root / system

    def outbox(self, route: Route) -> Path:
        return self.root / route.source / "outbox" / route.kind

    def inbox(self, route: Route, destination: str) -> Path:
        return self.root / destination / "inbox" / route.kind

    def error_dir(self, system: str) -> Path:
        return self.root / system / "error"


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return parse(data, path)


def parse(data: dict[str, Any], source: Path | None = None) -> Config:
    engine = data.get("engine", {})
    for key in ("root", "state_dir", "account"):
        if not engine.get(key):
            raise ConfigError(f"[engine] needs {key}")
    systems = {}
    for system_id, values in data.get("systems", {}).items():
        _check_id(system_id, "system")
        if not values.get("group"):
            raise ConfigError(f"system {system_id} needs a group")
        systems[system_id] = System(system_id, str(values.get("name", system_id)), str(values["group"]))
    routes = []
    seen: set[str] = set()
    integrated = bool(engine.get("integrated_hr_package", False))
    for values in data.get("routes", []):
        route = _route(values, systems)
        if integrated:
            if route.excludable:
                continue
            kept = tuple(d for d in route.destinations if d not in route.excludable_destinations)
            if not kept:
                continue
            route = dataclasses.replace(route, destinations=kept)
        if route.id in seen:
            raise ConfigError(f"route {route.id} is defined twice")
        seen.add(route.id)
        routes.append(route)
    outboxes = [(r.source, r.kind) for r in routes]
    if len(outboxes) != len(set(outboxes)):
        raise ConfigError("two routes share one outbox (same source and kind)")
    return Config(
        root=Path(engine["root"]),
        state_dir=Path(engine["state_dir"]),
        account=str(engine["account"]),
        systems=systems,
        routes=tuple(routes),
        rescan_seconds=float(engine.get("rescan_seconds", 5.0)),
        log_max_bytes=int(engine.get("log_max_bytes", 10 * 1024 * 1024)),
        log_backups=int(engine.get("log_backups", 10)),
        status_file=Path(engine["status_file"]) if engine.get("status_file") else None,
        source_path=source,
    )


def _check_id(value: str, what: str) -> None:
    if not _ID.match(value):
        raise ConfigError(f"{what} id {value!r}: use lower-case letters, digits, - and _")


def _kind(value: Any) -> str:
    kind = str(value or "").strip()
    if not kind or "/" in kind or "\\" in kind or kind.startswith(".") or len(kind) > 100:
        raise ConfigError(f"data kind {value!r} cannot be a folder name")
    return kind


def _route(values: dict[str, Any], systems: dict[str, System]) -> Route:
    route_id = str(values.get("id", ""))
    _check_id(route_id, "route")
    source = str(values.get("source", ""))
    if source not in systems:
        raise ConfigError(f"route {route_id}: unknown source system {source!r}")
    destinations = tuple(values.get("destinations", ()))
    if not destinations:
        raise ConfigError(f"route {route_id}: no destinations")
    for destination in destinations:
        if destination not in systems or destination == source:
            raise ConfigError(f"route {route_id}: bad destination {destination!r}")
    route = Route(
        id=route_id,
        source=source,
        kind=_kind(values.get("kind")),
        destinations=destinations,
        pattern=str(values.get("pattern", "*")),
        convert=str(values.get("convert", "")),
        completeness=str(values.get("completeness", "rename")),
        stable_seconds=float(values.get("stable_seconds", 2.0)),
        done_suffix=str(values.get("done_suffix", ".done")),
        on_conflict=str(values.get("on_conflict", "generation")),
        archive_days=int(values.get("archive_days", 30)),
        enabled=bool(values.get("enabled", True)),
        excludable=bool(values.get("excludable", False)),
        excludable_destinations=tuple(values.get("excludable_destinations", ())),
        pre=tuple(str(v) for v in values.get("pre", ())),
        post=tuple(str(v) for v in values.get("post", ())),
    )
    for name, value, allowed in (
        ("convert", route.convert, CONVERSIONS),
        ("completeness", route.completeness, COMPLETENESS),
        ("on_conflict", route.on_conflict, CONFLICTS),
    ):
        if value not in allowed:
            raise ConfigError(f"route {route_id}: {name} must be one of {', '.join(a or '(none)' for a in allowed)}")
    return route
