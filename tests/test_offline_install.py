"""The offline install of deploy/README.md: requirements.lock pins every
runtime dependency with hashes, and a wheelhouse made from it installs the
service into a fresh virtual environment with no index at all."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"


def pinned() -> dict[str, tuple[str, int]]:
    """Name → (version, number of hashes)."""
    out: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=\S)", LOCK.read_text(encoding="utf-8")):
        match = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", block)
        if match:
            out[canonicalize_name(match.group(1))] = (match.group(2), block.count("--hash=sha256:"))
    return out


def test_the_lock_pins_every_runtime_dependency_with_hashes_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    locked = pinned()
    assert locked and all(hashes >= 1 for _, hashes in locked.values())
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} missing from requirements.lock (re-run pip-compile, see deploy/README.md)"
        assert requirement.specifier.contains(locked[name][0]), (name, locked[name][0], str(requirement.specifier))


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_a_wheelhouse_installs_the_service_with_no_index(tmp_path: Path) -> None:
    """GIVEN a wheelhouse made on a connected machine (`pip download` of the
    lock, `pip wheel` of the project) WHEN it is installed with --no-index
    and --require-hashes into a fresh venv THEN the commands run."""
    wheelhouse = tmp_path / "wheelhouse"
    run(sys.executable, "-m", "pip", "download", "--quiet", "--require-hashes", "-r", str(LOCK), "-d", str(wheelhouse))
    # Built from a copy: setuptools leaves a build/ folder where it builds.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("mailintake", "web", "filelink"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheelhouse), str(source))
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--isolated", "install", "--quiet", "--no-index"]
    run(*pip, "--find-links", str(wheelhouse), "--require-hashes", "-r", str(LOCK))
    project_wheel = next(wheelhouse.glob("mailintake-*.whl"))
    run(*pip, "--no-deps", str(project_wheel))
    history = run(str(venv / "bin" / "mailintake"), "db", "history", "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert "(head)" in history.stdout
    run(
        str(venv / "bin" / "mailintake"), "section", "add", "総務課", "--data-dir", str(tmp_path / "data"), cwd=tmp_path
    )
    added = run(
        str(venv / "bin" / "mailintake"), "address", "add", "soumu@city.example.jp", "--section", "総務課",
        "--data-dir", str(tmp_path / "data"), cwd=tmp_path,
    )  # fmt: skip
    assert "added soumu@city.example.jp" in added.stdout
