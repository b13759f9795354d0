"""The OpenAPI 3.1 document of the JSON API (served at /api/v1/openapi.json).

Written as data beside the routes in :mod:`.api`; a test compares the two
(every route documented, nothing documented that is not routed) and runs
schemathesis against the served document. The registration record's schema
is the package schema's, so the feed and metadata.json cannot differ.
"""

from __future__ import annotations

import copy
from typing import Any

from ..handoff import package
from ..handoff.feed import MAX_PAGE as FEED_MAX
from ..records.events import EVENTS
from ..records.messages import MAX_PAGE as MESSAGES_MAX
from ..records.messages import STATUSES
from ..records.spreadsheet import ENCODINGS

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "The request is not valid (the reason is in error)",
        401: "No valid bearer token",
        403: "The token lacks the scope this operation needs",
        404: "No such thing, or not in the token's sections",
    }
    return {str(code): _json(_ref("Error"), texts[code]) for code in codes}


def _id_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}


def _operation(
    summary: str,
    scope: str | None,
    ok: dict[str, Any],
    parameters: list[dict[str, Any]] | None = None,
    errors: tuple[int, ...] = (400, 401, 403),
    **extra: Any,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {"200": ok}}
    if parameters:
        operation["parameters"] = parameters
    if scope is not None:
        operation["security"] = [{"bearer": [scope]}]
        operation["description"] = f"Needs a token with the scope `{scope}`."
        operation["responses"].update(_errors(*errors))
    operation.update(extra)
    return operation


def _schemas() -> dict[str, Any]:
    registration = copy.deepcopy(package.schema()["$defs"]["registration"])
    package_metadata = {k: v for k, v in copy.deepcopy(package.schema()).items() if not k.startswith("$")}
    package_metadata["properties"]["registration"] = _ref("Registration")
    string_map = {"type": "object", "additionalProperties": {"type": "string"}}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
        },
        "Person": {
            "type": "object",
            "required": ["name", "address"],
            "properties": {"name": {"type": "string"}, "address": {"type": "string"}},
        },
        "MessageSummary": {
            "type": "object",
            "required": ["id", "address", "received_at", "from", "subject", "attachment_count", "status"],
            "properties": {
                "id": {"type": "integer"},
                "address": {"type": "string"},
                "received_at": {"type": "string", "format": "date-time"},
                "from": _ref("Person"),
                "subject": {"type": "string"},
                "attachment_count": {"type": "integer", "minimum": 0},
                "status": {"enum": list(STATUSES)},
            },
        },
        "MessageList": {
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": {
                "items": {"type": "array", "items": _ref("MessageSummary")},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        "MessageAttachment": {
            "type": "object",
            "required": ["id", "filename", "original_filename", "content_type", "size", "sha256", "part_of"],
            "properties": {
                "id": {"type": "integer"},
                "filename": {"type": "string", "description": "A safe file name (the one the download offers)"},
                "original_filename": {
                    "type": "string",
                    "description": "The decoded name as written (control and bidi characters made spaces), for display",
                },
                "content_type": {"type": "string"},
                "size": {"type": "integer", "minimum": 0},
                "sha256": {"type": "string"},
                "part_of": {"type": ["integer", "null"]},
            },
        },
        "MessageDetail": {
            "type": "object",
            "required": [
                "id",
                "address",
                "section",
                "received_at",
                "envelope",
                "message_id",
                "from",
                "to",
                "cc",
                "subject",
                "date",
                "text",
                "has_html",
                "raw_size",
                "raw_sha256",
                "attachments",
                "status",
                "problems",
            ],
            "properties": {
                "id": {"type": "integer"},
                "address": {"type": "string"},
                "section": {"type": "string"},
                "received_at": {"type": "string", "format": "date-time"},
                "envelope": {
                    "type": "object",
                    "required": ["mail_from", "rcpt_to", "client_address"],
                    "properties": {
                        "mail_from": {"type": "string"},
                        "rcpt_to": {"type": "string"},
                        "client_address": {"type": "string"},
                    },
                },
                "message_id": {"type": "string"},
                "from": _ref("Person"),
                "to": {"type": "array", "items": string_map},
                "cc": {"type": "array", "items": string_map},
                "subject": {"type": "string"},
                "date": {"type": ["string", "null"], "format": "date-time"},
                "text": {"type": "string"},
                "has_html": {"type": "boolean"},
                "raw_size": {"type": "integer"},
                "raw_sha256": {"type": "string"},
                "attachments": {"type": "array", "items": _ref("MessageAttachment")},
                "status": {"enum": list(STATUSES)},
                "problems": {"type": "array", "items": {"type": "string"}},
            },
        },
        "Registration": registration,
        "FeedItem": {
            "type": "object",
            "required": ["event_id", "cursor", "event", "event_at", "registration"],
            "additionalProperties": False,
            "properties": {
                "event_id": {"type": "integer", "description": "Increases in commit order; a key for idempotency"},
                "cursor": {"type": "string", "description": "Opaque: pass as `after` to read on from this event"},
                "event": {"enum": list(EVENTS)},
                "event_at": {"type": "string", "format": "date-time"},
                "registration": _ref("Registration"),
            },
        },
        "FeedPage": {
            "type": "object",
            "required": ["items", "next_cursor", "has_more"],
            "additionalProperties": False,
            "properties": {
                "items": {"type": "array", "items": _ref("FeedItem")},
                "next_cursor": {"type": "string", "description": "Pass as `after` next time, even for an empty page"},
                "has_more": {"type": "boolean"},
            },
        },
        "AckState": {
            "type": "object",
            "required": ["registration_id", "acknowledged_event_id", "acknowledged_at", "acknowledged_by", "pending"],
            "additionalProperties": False,
            "properties": {
                "registration_id": {"type": "integer"},
                "acknowledged_event_id": {"type": ["integer", "null"]},
                "acknowledged_at": {"type": ["string", "null"], "format": "date-time"},
                "acknowledged_by": {"type": ["string", "null"], "description": "The token's name"},
                "pending": {"type": "boolean", "description": "An event newer than the acknowledged one exists"},
            },
        },
        "PackageMetadata": package_metadata,
    }


def _paths() -> dict[str, Any]:
    limit = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MESSAGES_MAX}}
    feed_limit = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": FEED_MAX}}
    return {
        "/api/v1/openapi.json": {
            "get": _operation("This document", None, _json({"type": "object"}, "The OpenAPI document"))
        },
        "/api/v1/schemas/registration-package.json": {
            "get": _operation(
                "JSON Schema of a package's metadata.json",
                None,
                {"description": "The schema", "content": {"application/schema+json": {"schema": {"type": "object"}}}},
            )
        },
        "/api/v1/messages": {
            "get": _operation(
                "Received mail, newest first",
                "messages:read",
                _json(_ref("MessageList"), "A page of messages"),
                [
                    {"name": "address", "in": "query", "schema": {"type": "string"}},
                    {"name": "status", "in": "query", "schema": {"enum": list(STATUSES)}},
                    {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 200}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    limit,
                ],
            )
        },
        "/api/v1/messages/{message_id}": {
            "get": _operation(
                "One message, decoded",
                "messages:read",
                _json(_ref("MessageDetail"), "The message"),
                [_id_parameter("message_id")],
                (400, 401, 403, 404),
            )
        },
        "/api/v1/messages/{message_id}/raw": {
            "get": _operation(
                "The original message, byte for byte",
                "messages:read",
                {"description": "The .eml", "content": {"message/rfc822": {"schema": {"type": "string"}}}},
                [_id_parameter("message_id")],
                (400, 401, 403, 404),
            )
        },
        "/api/v1/attachments/{attachment_id}": {
            "get": _operation(
                "An attachment's bytes",
                "messages:read",
                {"description": "The file", "content": {"*/*": {"schema": {"type": "string"}}}},
                [_id_parameter("attachment_id")],
                (400, 401, 403, 404),
            )
        },
        "/api/v1/registrations": {
            "get": _operation(
                "The registration feed: events in commit order after a cursor",
                "registrations:read",
                _json(_ref("FeedPage"), "A page of events"),
                [{"name": "after", "in": "query", "schema": {"type": "string"}}, feed_limit],
            )
        },
        "/api/v1/registrations.csv": {
            "get": _operation(
                "目録情報 of one fiscal year (CSV)",
                "registrations:read",
                {"description": "The catalogue", "content": {"text/csv": {"schema": {"type": "string"}}}},
                [
                    {
                        "name": "fiscal_year",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1989, "maximum": 9999},
                    },
                    {"name": "encoding", "in": "query", "schema": {"enum": list(ENCODINGS)}},
                ],
            )
        },
        "/api/v1/registrations/{registration_id}": {
            "get": _operation(
                "One registration's current record",
                "registrations:read",
                _json(_ref("Registration"), "The record"),
                [_id_parameter("registration_id")],
                (400, 401, 403, 404),
            )
        },
        "/api/v1/registrations/{registration_id}/package": {
            "get": _operation(
                "The registration as a zip: metadata.json, original.eml, 本文.txt, attachments/",
                "registrations:read",
                {"description": "The package", "content": {"application/zip": {"schema": {"type": "string"}}}},
                [_id_parameter("registration_id")],
                (400, 401, 403, 404),
            )
        },
        "/api/v1/registrations/{registration_id}/ack": {
            "post": _operation(
                "Acknowledge a registration (idempotent)",
                "registrations:ack",
                _json(_ref("AckState"), "The acknowledgement as recorded"),
                [_id_parameter("registration_id")],
                (400, 401, 403, 404),
                requestBody={
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "event_id": {
                                        "type": "integer",
                                        "minimum": 1,
                                        "description": "Acknowledge up to this event (default: the newest)",
                                    }
                                },
                            }
                        }
                    },
                },
            )
        },
    }


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mailintake API",
            "version": "1",
            "description": "Received mail and registered 収受文書 for the document system.",
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
