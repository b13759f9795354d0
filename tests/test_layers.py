"""The layers keep to themselves: every import points down (or sideways
within a layer), never up; the ingest worker loads only what ingestion
needs; the linkage engine is a sibling that needs nothing of mailintake."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOADED = """
import json, sys
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps(sorted(sys.modules)))
"""


def modules_loaded_by(*names: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", LOADED, *names], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(json.loads(result.stdout))


def test_the_ingest_worker_loads_no_web_accounts_or_registry_code() -> None:
    loaded = modules_loaded_by("mailintake.intake.worker")
    for unwanted in (
        "mailintake.services", "mailintake.web.app", "mailintake.web.ui", "mailintake.web.admin_ui", "mailintake.web.api",
        "mailintake.people.accounts", "mailintake.people.sessions", "mailintake.records.registry", "mailintake.records.inbox",
        "argon2", "starlette", "uvicorn", "jinja2", "nh3", "alembic",
    ):  # fmt: skip
        assert unwanted not in loaded, unwanted


def test_postgresql_s_dialect_is_loaded_only_by_a_process_that_connects_to_postgresql() -> None:
    """Its modules cost each process about 2 MB: an installation on SQLite
    (and every process before it connects) goes without them."""
    loaded = modules_loaded_by("mailintake.server", "mailintake.cli", "mailintake.intake.ingest")
    assert "sqlalchemy.dialects.postgresql" not in loaded


def test_the_linkage_engine_imports_nothing_of_mailintake() -> None:
    loaded = modules_loaded_by("filelink.cli", "filelink.engine", "filelink.watch")
    assert not [name for name in loaded if name == "mailintake" or name.startswith("mailintake.")]


# Lowest first. A module may import from its own layer and the layers below.
LAYERS = (
    (
        "base",
        (
            "errors",
            "config",
            "models",
            "db",
            "schema",
            "blobs",
            "fsync",
            "jpdates",
            "logs",
            "texts",
            "leases",
            "migrations",
            "children",
        ),
    ),
    ("mail", ("mail",)),
    ("people", ("people",)),
    ("records", ("records",)),
    ("intake", ("intake",)),
    ("handoff", ("handoff",)),
    ("wiring", ("services",)),
    ("operations", ("operations",)),
    ("edge", ("web", "server", "web_siblings", "cli", "__main__")),
)


def layer_of(module: str) -> int:
    """The layer index of ``mailintake.X...``."""
    first = module.split(".")[1] if module.count(".") else ""
    for index, (_, names) in enumerate(LAYERS):
        if first in names:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "web":
        parts = ["mailintake", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, module: str) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            found.add(target)
            # "from . import x": x is a module of that package
            found |= {f"{target}.{alias.name}" for alias in node.names if (ROOT / "mailintake").exists()}
    return {name for name in found if name.startswith("mailintake.")}


def test_every_import_points_down_or_sideways() -> None:
    upward = []
    sources = [p for p in (ROOT / "mailintake").rglob("*.py") if "versions" not in p.parts]
    sources += list((ROOT / "web").rglob("*.py"))
    for path in sources:
        module = module_name(path)
        if module == "mailintake":
            continue
        for target in imports_of(path, module):
            known = _existing_module(target)
            if known and layer_of(known) > layer_of(module):
                upward.append(
                    f"{module} ({LAYERS[layer_of(module)][0]}) imports {known} ({LAYERS[layer_of(known)][0]})"
                )
    assert upward == []


def _existing_module(name: str) -> str | None:
    """``name`` or its longest prefix that is a module or package here."""
    parts = name.split(".")
    while len(parts) > 1:
        relative = parts[1:]
        if relative[0] == "web":
            candidates = [ROOT.joinpath(*relative).with_suffix(".py"), ROOT.joinpath(*relative, "__init__.py")]
        else:
            candidates = [
                ROOT.joinpath("mailintake", *relative).with_suffix(".py"),
                ROOT.joinpath("mailintake", *relative, "__init__.py"),
            ]
        if any(c.exists() for c in candidates):
            return ".".join(parts)
        parts = parts[:-1]
    return None
