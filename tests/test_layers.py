"""The layers keep to themselves: the ingest worker loads only what
ingestion needs, and the linkage engine is a sibling that needs nothing of
mailintake."""

from __future__ import annotations

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
    loaded = modules_loaded_by("mailintake.ingest_process")
    for unwanted in (
        "mailintake.services", "mailintake.app", "mailintake.ui", "mailintake.admin_ui", "mailintake.api",
        "mailintake.accounts", "mailintake.sessions", "mailintake.registry", "mailintake.inbox",
        "argon2", "starlette", "uvicorn", "jinja2", "nh3", "alembic",
    ):  # fmt: skip
        assert unwanted not in loaded, unwanted


def test_the_linkage_engine_imports_nothing_of_mailintake() -> None:
    loaded = modules_loaded_by("filelink.cli", "filelink.engine", "filelink.watch")
    assert not [name for name in loaded if name == "mailintake" or name.startswith("mailintake.")]
