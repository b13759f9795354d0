"""The served OpenAPI document and the API agree: every route is documented
and nothing else, and schemathesis, driving every operation with a valid
token, finds no server error and no response outside the document."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import httpx
from starlette.routing import Route

from mailintake.people.tokens import SCOPES
from mailintake.records.registry import RegistrationRequest
from mailintake.services import Services
from mailintake.web import openapi
from mailintake.web.app import create_app

from .conftest import ServiceThread
from .factories import make_user, stored_message

ROOT = Path(__file__).resolve().parents[1]
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_every_api_route_is_documented_and_every_documented_operation_is_routed(services: Services) -> None:
    app = create_app(services)
    routed = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith("/api/")
        for method in (route.methods or set()) - {"HEAD"}
    }
    served = openapi.document()
    documented = {(path, method) for path, operations in served["paths"].items() for method in operations}
    assert routed == documented
    assert served["openapi"].startswith("3.1")


def _some_registrations(services: Services, address: str) -> None:
    clerk = make_user(services, "sato", password=None, sections=["総務課"])
    ids = [
        stored_message(services, address, attachments=(("資料.pdf", b"%PDF-1.4", "application/pdf"),)) for _ in range(3)
    ]
    done = services.registry.register(
        clerk,
        [
            RegistrationRequest(
                message_id=i, subject="件名", sender="山田", received_on=dt.date(2026, 11, 20), retention="5年"
            )
            for i in ids[:2]
        ],
    )
    chief = make_user(services, "suzuki", password=None, role="section_admin", sections=["総務課"])
    services.registry.cancel(chief, done[1].id, "重複")


def test_schemathesis_finds_no_server_error_and_no_response_outside_the_document(
    service: ServiceThread, services: Services, designated: str, token: str, tmp_path: Path
) -> None:
    _some_registrations(services, designated)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{service.base_url}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--max-examples",
            "25",
            "--seed",
            "20261202",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=dict(os.environ, SCHEMATHESIS_HOOKS=""),
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout, result.stdout[-2000:]
    assert "Tested: 10" in result.stdout or "Tested: 11" in result.stdout, result.stdout[-2000:]


def test_a_token_without_the_scope_gets_403_on_every_protected_operation(
    service: ServiceThread, services: Services, designated: str
) -> None:
    _some_registrations(services, designated)
    document = openapi.document()
    protected = [
        (path, method, operation["security"][0]["bearer"][0])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation.get("security")
    ]
    assert len(protected) >= 9
    for path, method, scope in protected:
        others = [s for s in SCOPES if s != scope]
        token = services.tokens.create(f"without {scope} {path} {method}", others)
        url = service.base_url + path.replace("{message_id}", "1").replace("{attachment_id}", "1").replace(
            "{registration_id}", "1"
        )
        response = httpx.request(method.upper(), url, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 403, (path, method, response.status_code)
        assert scope in response.json()["error"]
