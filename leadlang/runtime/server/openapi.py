"""`GET /openapi.json`: an OpenAPI 3 description of serve's routes."""

from __future__ import annotations

from typing import Any

_ERROR = {"description": 'an error: {"error", "detail"} (and `index` in a batch)'}
_WRITE: list[dict[str, list[str]]] = [
    {"basic": []},
    {"bearer": []},
    {},
]  # {} : `writeKey` in the body
_ADMIN: list[dict[str, list[str]]] = [{"bearer": []}]


def _message(kind: str) -> dict[str, Any]:
    return {
        "summary": f"one Segment `{kind}` message",
        "security": _WRITE,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "responses": {
            "200": {"description": 'stored durably: {"success": true}'},
            "400": _ERROR,
            "401": _ERROR,
            "413": _ERROR,
            "429": {"description": "overloaded: retry after `Retry-After` seconds"},
        },
    }


def _admin(summary: str, params: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "summary": summary,
        "security": _ADMIN,
        "parameters": [
            {"name": p, "in": "query", "required": False, "schema": {"type": "string"}}
            for p in params
        ],
        "responses": {"200": {"description": "JSON"}, "401": _ERROR, "404": _ERROR},
    }


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/track": {"post": _message("track")},
        "/v1/identify": {"post": _message("identify")},
        "/v1/page": {"post": _message("page")},
        "/v1/screen": {"post": _message("screen")},
        "/v1/batch": {"post": {**_message("batch"), "summary": '{"batch": [...]}, all or nothing'}},
        "/v1/contacts/{id}": {"get": _admin("a contact's profile, enrollments and recent effects")},
        "/v1/flows": {"get": _admin("every loaded flow with its counts")},
        "/v1/flows/{name}": {"get": _admin("one flow with its counts")},
        "/v1/effects": {
            "get": _admin("the effect ledger, in commit order", ["after", "limit", "contact"])
        },
        "/v1/outbox": {"get": _admin("outbox rows", ["status", "limit"])},
        "/healthz": {
            "get": {
                "summary": "liveness and store reachability",
                "responses": {
                    "200": {"description": "ok"},
                    "503": {"description": "store unreachable"},
                },
            }
        },
        "/metrics": {
            "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}
        },
    }
    for path, item in paths.items():
        for op in item.values():
            op.setdefault("responses", {})
            if "{" in path:
                name = path.split("{")[1].rstrip("}")
                op.setdefault("parameters", []).insert(
                    0, {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                )
    return {
        "openapi": "3.0.3",
        "info": {"title": "leadlang serve", "version": "1"},
        "components": {
            "securitySchemes": {
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "the write key as user name",
                },
                "bearer": {"type": "http", "scheme": "bearer"},
            }
        },
        "paths": paths,
    }
