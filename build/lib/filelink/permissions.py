"""The folder tree and who may do what in it.

    ROOT/                       engine, 0711     (systems pass through, cannot list)
      <system>/                 engine:<group>, 0750
        outbox/<kind>/          engine:<group>, 2770 + ACL: the engine reads what the system writes
        inbox/<kind>/           engine:<group>, 2770   the system reads and deletes deliveries
        error/                  engine:<group>, 2770   refused files with their reasons
    STATE_DIR/                  engine, 0700     journal, work and archive areas

Each system's folders belong to its own group, so system A cannot read,
write or delete anything of B's. The outboxes carry a default ACL that
gives the engine's account read access to files the sender creates,
whatever the sender's umask; the engine owns every folder, so it needs no
root privileges to run.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config
from .errors import PermissionSetupError


@dataclass(frozen=True)
class FolderSpec:
    path: Path
    owner: str
    group: str
    mode: int
    acl: tuple[str, ...] = ()
    default_acl: tuple[str, ...] = field(default=())


def _engine_group(config: Config) -> str:
    try:
        return grp.getgrgid(pwd.getpwnam(config.account).pw_gid).gr_name
    except KeyError as exc:
        raise PermissionSetupError(f"engine account {config.account!r} does not exist") from exc


def layout(config: Config) -> list[FolderSpec]:
    """Every folder of the tree with its intended owner, group, mode and ACLs."""
    engine = config.account
    engine_group = _engine_group(config)
    outbox_acl = ("user::rwx", f"user:{engine}:rwx", "group::rwx", "mask::rwx", "other::---")
    specs = [
        FolderSpec(config.root, engine, engine_group, 0o711),
        FolderSpec(config.state_dir, engine, engine_group, 0o700),
        FolderSpec(config.work_dir, engine, engine_group, 0o700),
        FolderSpec(config.archive_dir, engine, engine_group, 0o700),
    ]
    routes = config.enabled_routes
    for system_id, system in sorted(config.systems.items()):
        base = config.system_dir(system_id)
        sends = sorted({r.kind for r in routes if r.source == system_id})
        receives = sorted({r.kind for r in routes if system_id in r.destinations})
        specs += [
            FolderSpec(base, engine, system.group, 0o750),
            FolderSpec(base / "outbox", engine, system.group, 0o750),
            FolderSpec(base / "inbox", engine, system.group, 0o750),
            FolderSpec(config.error_dir(system_id), engine, system.group, 0o2770),
        ]
        specs += [
            FolderSpec(base / "outbox" / kind, engine, system.group, 0o2770, outbox_acl, outbox_acl) for kind in sends
        ]
        specs += [FolderSpec(base / "inbox" / kind, engine, system.group, 0o2770) for kind in receives]
    return specs


def _require_tools() -> None:
    for tool in ("setfacl", "getfacl"):
        if shutil.which(tool) is None:
            raise PermissionSetupError(f"{tool} is missing: install Debian's acl package")


def _ids(spec: FolderSpec) -> tuple[int, int]:
    try:
        uid = pwd.getpwnam(spec.owner).pw_uid
    except KeyError as exc:
        raise PermissionSetupError(f"user {spec.owner!r} does not exist") from exc
    try:
        gid = grp.getgrnam(spec.group).gr_gid
    except KeyError as exc:
        raise PermissionSetupError(f"group {spec.group!r} does not exist (create the system's group first)") from exc
    return uid, gid


def apply(config: Config) -> list[Path]:
    """Create missing folders and set owners, groups, modes and ACLs."""
    specs = layout(config)
    if any(spec.acl or spec.default_acl for spec in specs):
        _require_tools()
    for spec in specs:
        _ids(spec)  # every account and group exists before anything changes
    created = []
    for spec in specs:
        if not spec.path.exists():
            spec.path.mkdir(parents=True)
            created.append(spec.path)
        if spec.path.is_symlink() or not spec.path.is_dir():
            raise PermissionSetupError(f"{spec.path} exists and is not a plain folder")
        uid, gid = _ids(spec)
        os.chown(spec.path, uid, gid, follow_symlinks=False)
        os.chmod(spec.path, spec.mode)
        if spec.acl:
            _setfacl(["--set", ",".join(spec.acl)], spec.path)
        if spec.default_acl:
            _setfacl(["-d", "--set", ",".join(spec.default_acl)], spec.path)
        elif spec.acl:
            _setfacl(["-k"], spec.path)
    return created


def _setfacl(args: list[str], path: Path) -> None:
    result = subprocess.run(["setfacl", *args, str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise PermissionSetupError(f"setfacl on {path}: {result.stderr.strip()}")


def _getfacl(path: Path) -> tuple[set[str], set[str]]:
    result = subprocess.run(
        ["getfacl", "--omit-header", "--absolute-names", "--numeric", str(path)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise PermissionSetupError(f"getfacl on {path}: {result.stderr.strip()}")
    access, default = set(), set()
    for line in result.stdout.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("default:"):
            default.add(line.removeprefix("default:"))
        else:
            access.add(line)
    return access, default


def _numeric(entries: tuple[str, ...]) -> set[str]:
    """user:NAME:rwx → user:UID:rwx, as getfacl --numeric prints them."""
    out = set()
    for entry in entries:
        kind, qualifier, perms = entry.split(":")
        if qualifier and kind == "user":
            qualifier = str(pwd.getpwnam(qualifier).pw_uid)
        elif qualifier and kind == "group":
            qualifier = str(grp.getgrnam(qualifier).gr_gid)
        out.add(f"{kind}:{qualifier}:{perms}")
    return out


def check(config: Config) -> list[str]:
    """Every difference between the tree and its intended permissions."""
    specs = layout(config)
    acl_tools = shutil.which("getfacl") is not None
    problems = []
    for spec in specs:
        try:
            st = os.lstat(spec.path)
        except FileNotFoundError:
            problems.append(f"{spec.path}: missing (run filelink init)")
            continue
        if not stat.S_ISDIR(st.st_mode):
            problems.append(f"{spec.path}: not a folder")
            continue
        uid, gid = _ids(spec)
        if st.st_uid != uid:
            problems.append(f"{spec.path}: owner {_user(st.st_uid)}, expected {spec.owner}")
        if st.st_gid != gid:
            problems.append(f"{spec.path}: group {_group(st.st_gid)}, expected {spec.group}")
        mode = stat.S_IMODE(st.st_mode)
        if mode != spec.mode:
            problems.append(f"{spec.path}: mode {mode:04o}, expected {spec.mode:04o}")
        if not acl_tools:
            continue
        access, default = _getfacl(spec.path)
        expected_access = _numeric(spec.acl) if spec.acl else None
        if expected_access is not None and access != expected_access:
            problems.append(f"{spec.path}: ACL {sorted(access)}, expected {sorted(expected_access)}")
        if expected_access is None and any(_is_extended(e) for e in access):
            problems.append(f"{spec.path}: unexpected ACL entries {sorted(e for e in access if _is_extended(e))}")
        expected_default = _numeric(spec.default_acl)
        if default != expected_default:
            problems.append(f"{spec.path}: default ACL {sorted(default)}, expected {sorted(expected_default)}")
    return problems


def _is_extended(entry: str) -> bool:
    kind, qualifier, _ = entry.split(":")
    return bool(qualifier) or kind == "mask"


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
