"""Building blocks for the filelink tests: a configuration on a private
folder tree, real OS users and groups, and running commands as them."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelink.config import Config, parse

SYSTEMS = ("jinji", "kyuyo", "shomu", "bunsho", "zaimu", "kobunshokan")
PREFIX = "flt"


def tree_config(base: Path, *, account: str = "root", group_of: Any = None, **route_options: Any) -> Config:
    """人事 sends 異動情報 to four systems and 組織マスタ to two; 文書管理 sends
    目録 to 公文書館."""
    group_of = group_of or (lambda system: "root")
    data: dict[str, Any] = {
        "engine": {"root": str(base / "share"), "state_dir": str(base / "state"), "account": account},
        "systems": {s: {"name": s, "group": group_of(s)} for s in SYSTEMS},
        "routes": [
            {
                "id": "jinji-idou",
                "source": "jinji",
                "kind": "異動情報",
                "pattern": "*.csv",
                "destinations": ["kyuyo", "shomu", "bunsho", "zaimu"],
                **route_options,
            },
            {
                "id": "bunsho-rekishi",
                "source": "bunsho",
                "kind": "歴史的公文書目録情報",
                "destinations": ["kobunshokan"],
            },
            {"id": "jinji-soshiki", "source": "jinji", "kind": "組織マスタ", "destinations": ["bunsho", "zaimu"]},
        ],
    }
    return parse(data)


def write_config(config_data: dict[str, Any], path: Path) -> Path:
    import json

    # TOML is a superset of what we need; JSON-ish inline tables are not, so write it plainly.
    lines = ["[engine]"]
    for key, value in config_data["engine"].items():
        lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    for system, values in config_data["systems"].items():
        lines.append(f"[systems.{system}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    for route in config_data["routes"]:
        lines.append("[[routes]]")
        for key, value in route.items():
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def config_data(config: Config) -> dict[str, Any]:
    """The TOML-able form of a Config built by tree_config."""
    return {
        "engine": {
            "root": str(config.root),
            "state_dir": str(config.state_dir),
            "account": config.account,
            "rescan_seconds": config.rescan_seconds,
        },
        "systems": {s.id: {"name": s.name, "group": s.group} for s in config.systems.values()},
        "routes": [
            {
                "id": r.id,
                "source": r.source,
                "kind": r.kind,
                "pattern": r.pattern,
                "destinations": list(r.destinations),
                "convert": r.convert,
                "completeness": r.completeness,
                "stable_seconds": r.stable_seconds,
                "on_conflict": r.on_conflict,
            }
            for r in config.routes
        ],
    }


@contextmanager
def shared_base() -> Iterator[Path]:
    """A folder other users can traverse (pytest's tmp is root-only)."""
    base = Path(f"/tmp/{PREFIX}-{os.getpid()}-{os.urandom(3).hex()}")
    base.mkdir(mode=0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- OS users and groups ------------------------------------------------------------


def group_name(system: str) -> str:
    return f"{PREFIX}-{system}"


def user_name(system: str) -> str:
    return f"{PREFIX}-{system}-u"


ENGINE_USER = f"{PREFIX}-engine"


def create_accounts() -> None:
    """One group and one member per system, and the engine's account."""
    for system in SYSTEMS:
        _run_quiet(["groupadd", "-f", group_name(system)])
        if not _exists_user(user_name(system)):
            _run_quiet(["useradd", "-M", "-N", "-g", group_name(system), "-s", "/usr/sbin/nologin", user_name(system)])
    if not _exists_user(ENGINE_USER):
        _run_quiet(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", ENGINE_USER])


def remove_accounts() -> None:
    for system in SYSTEMS:
        subprocess.run(["userdel", user_name(system)], capture_output=True)
        subprocess.run(["groupdel", group_name(system)], capture_output=True)
    subprocess.run(["userdel", ENGINE_USER], capture_output=True)
    subprocess.run(["groupdel", ENGINE_USER], capture_output=True)


def _exists_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _run_quiet(args: list[str]) -> None:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr}")


def as_user(user: str, *args: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    """Run a command as ``user`` with exactly its own groups."""
    entry = pwd.getpwnam(user)
    groups = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]
    return subprocess.run(
        list(args),
        user=entry.pw_uid,
        group=entry.pw_gid,
        extra_groups=groups,
        umask=umask,
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )


# The system interpreter: the project's virtualenv may live where other
# users cannot reach it. The snippets use only the standard library.
SYSTEM_PYTHON = "/usr/bin/python3"


def python_as(user: str, code: str, *args: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    return as_user(user, SYSTEM_PYTHON, "-c", code, *args, umask=umask)


def in_process_as(user: str, work: Any) -> int:
    """Run ``work()`` in a forked child that has become ``user`` (the
    already-imported code needs no interpreter the user can execute)."""
    entry = pwd.getpwnam(user)
    groups = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups(groups)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            work()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
