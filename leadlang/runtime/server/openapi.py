"""`GET /openapi.json`: an OpenAPI 3.1 description of every route serve answers.

Written by hand, and kept true by tests: `tests/test_serve_openapi.py` compares its paths and
methods with the app's router and validates the document, and a schemathesis run against the
live daemon sends requests generated from it (no answer may be a 5xx). Every GET route also
answers HEAD (aiohttp adds it); HEAD is not listed.
"""

from __future__ import annotations

import copy
from typing import Any

_TIME = {"type": "string", "format": "date-time", "description": "ISO 8601"}
_ID = {
    "type": ["string", "number"],
    "description": "a contact id (a number is taken as its JSON text); at most 1 KB",
}
_OBJECT = {"type": "object", "additionalProperties": True}

ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "what kind of error"},
        "detail": {"type": "string", "description": "what is wrong, for a person"},
        "index": {
            "type": "integer",
            "minimum": 0,
            "description": "in a batch: the 0-based index of the bad item",
        },
    },
}

# The fields every Segment message may carry (the ones serve reads; others are ignored).
_COMMON: dict[str, Any] = {
    "userId": _ID,
    "anonymousId": _ID,
    "messageId": {
        "type": ["string", "number"],
        "description": "deduplicates: the same messageId within 24 h is not stored again",
    },
    "timestamp": _TIME,
    "sentAt": _TIME,
    "originalTimestamp": _TIME,
    "receivedAt": _TIME,
    "context": {**_OBJECT, "description": "`context.traits` of an identify are its traits"},
    "integrations": _OBJECT,
    "properties": {**_OBJECT, "description": "the event's properties"},
    "traits": _OBJECT,
    "writeKey": {"type": "string", "description": "the write key, when not in a header"},
}


def _message(kind: str, in_batch: bool) -> dict[str, Any]:
    properties = dict(_COMMON)
    required: list[str] = []
    if kind == "track":
        properties["event"] = {"type": "string", "minLength": 1, "description": "its name"}
        required.append("event")
    elif kind in ("page", "screen"):
        properties["name"] = {"type": "string"}
    if in_batch:
        properties["type"] = {"const": kind}
        required.insert(0, "type")
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}],
        "description": {
            "track": "an event: `event` named, with its `properties`",
            "identify": "a contact's `traits`",
            "page": "a page view: the event `page_viewed`",
            "screen": "an app screen view: the event `screen_viewed`",
            "alias": "accepted and ignored",
            "group": "accepted and ignored",
        }[kind],
    }
    if required:
        schema["required"] = required
    return schema


KINDS = ("track", "identify", "page", "screen", "alias", "group")

_RESPONSES_ERROR = {"description": "an error", "content": {"application/json": {"schema": ERROR}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, {"$ref": "#/components/schemas/Error"})


_SUCCESS = _json(
    "stored durably",
    {
        "type": "object",
        "required": ["success"],
        "properties": {"success": {"const": True}},
    },
)


def _ingest(summary: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "tags": ["ingest"],
        # the key as Basic user name, as a Bearer token, or as `writeKey` in the body ({})
        "security": [{"writeKeyBasic": []}, {"writeKeyBearer": []}, {}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        },
        "responses": {
            "200": _SUCCESS,
            "400": _error("bad input (invalid JSON, a missing or wrong field)"),
            "401": _error("no valid write key"),
            "413": _error("over 32 KB for one message, or 500 KB for the request"),
            "415": _error("a Content-Encoding other than gzip or deflate"),
            "429": {
                "description": "overloaded: retry after `Retry-After` seconds",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                "content": {"application/json": {"schema": ERROR}},
            },
            "503": {
                "description": "the store cannot be reached: nothing was stored; retry after"
                " `Retry-After` seconds",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                "content": {"application/json": {"schema": ERROR}},
            },
        },
    }


def _batch_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["batch"],
        "properties": {
            "batch": {
                "type": "array",
                "items": {"oneOf": [{"$ref": f"#/components/schemas/{k}Item"} for k in KINDS]},
                "description": "all or nothing: a bad item rejects the request (its `index`)",
            },
            "sentAt": _TIME,
            "context": _OBJECT,
            "writeKey": {"type": "string"},
        },
    }


_ENROLLMENT = {
    "type": "object",
    "properties": {
        "flow": {"type": "string"},
        "version": {"type": "string"},
        "step": {"type": ["string", "null"]},
        "waiting": {},
        "waiting_until": {"type": ["string", "null"]},
    },
}
_CONTACT = {
    "type": "object",
    "required": ["id", "traits", "effects"],
    "properties": {
        "id": {"type": "string"},
        "pending": {"type": "boolean", "description": "seen, its events not yet processed"},
        "traits": _OBJECT,
        "score": {"type": "number"},
        "metrics": _OBJECT,
        "segments": {"type": "array", "items": {"type": "string"}},
        "tags": {"type": "array", "items": {"type": "string"}},
        "enrollments": {"type": "array", "items": _ENROLLMENT},
        "next_wake": {"type": ["string", "null"]},
        "effects": {"type": "array", "items": _OBJECT, "description": "the 20 most recent"},
    },
}
_FLOW = {
    "type": "object",
    "required": ["name", "version", "steps", "entered", "exited", "goals"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "steps": {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": "contacts at each step",
        },
        "versions": {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": "contacts inside, per flow version they run on",
        },
        "entered": {"type": "integer"},
        "exited": {"type": "integer"},
        "goals": {"type": "integer"},
        "sent": {"type": "integer"},
        "skipped": {"type": "integer"},
        "split_arms": _OBJECT,
    },
}
_EFFECTS = {
    "type": "object",
    "required": ["effects", "next"],
    "properties": {
        "effects": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id"],
                "properties": {"id": {"type": "integer"}},
                "description": "simulate's fields, plus `id`",
            },
        },
        "next": {"type": ["string", "null"], "description": "the cursor of the next page"},
    },
}
_OUTBOX_ROW = {
    "type": "object",
    "properties": {
        "key": {"type": "string"},
        "contact": {"type": "string"},
        "flow": {"type": "string"},
        "message": {"type": "string"},
        "channel": {"type": "string"},
        "at": {"type": "string"},
        "status": {"enum": ["pending", "sent", "dead"]},
        "attempts": {"type": "integer"},
        "last_error": {"type": ["string", "null"]},
        "next_attempt": {"type": "string"},
        "delivered": {"type": ["string", "null"]},
    },
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


def _admin(
    summary: str, ok: dict[str, Any], parameters: list[dict[str, Any]], not_found: bool = False
) -> dict[str, Any]:
    responses = {
        "200": ok,
        "401": _error("no admin token, or a wrong one (a write key is never one)"),
    }
    if any(p["in"] == "query" for p in parameters):
        responses["400"] = _error("a bad query parameter")
    if not_found:
        responses["404"] = _error("not found")
    return {
        "summary": summary,
        "tags": ["admin"],
        "security": [{"adminToken": []}],
        "parameters": parameters,
        "responses": responses,
    }


def _token(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "tags": ["tracking"],
        "security": [],
        "parameters": [_path("token", "the signed token from the email")],
        "responses": {**responses, "404": _error("the token does not verify for this route")},
    }


def _reload() -> dict[str, Any]:
    operation = _admin(
        "read the scripts again and run them (a broken script is refused, the running version"
        " stays)",
        _json(
            "reloaded; with `dry_run`, the report of what it would change (`leadlang diff --db`)",
            {
                "type": "object",
                "properties": {
                    "reloaded": {"type": "boolean"},
                    "dry_run": {"type": "boolean"},
                    "generation": {"type": "integer"},
                    "changed": {"type": "boolean"},
                    "flows": {"type": "array", "items": _OBJECT},
                },
            },
        ),
        [
            _query(
                "dry_run",
                {"enum": ["0", "1", "true", "false"], "default": "0"},
                "1: only report what the reload would change",
            )
        ],
    )
    operation["responses"]["422"] = _json(
        "the scripts have errors (or use a secret that is not set): the running version stays",
        {
            "type": "object",
            "required": ["error", "detail", "diagnostics"],
            "properties": {
                "error": {"const": "invalid scripts"},
                "detail": {"type": "string"},
                "diagnostics": {"type": "array", "items": _OBJECT},
            },
        },
    )
    return operation


_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/track": {
            "post": _ingest("one `track` message", {"$ref": "#/components/schemas/Track"})
        },
        "/v1/identify": {
            "post": _ingest("one `identify` message", {"$ref": "#/components/schemas/Identify"})
        },
        "/v1/page": {"post": _ingest("one `page` message", {"$ref": "#/components/schemas/Page"})},
        "/v1/screen": {
            "post": _ingest("one `screen` message", {"$ref": "#/components/schemas/Screen"})
        },
        "/v1/batch": {
            "post": _ingest(
                '{"batch": [...]}, all or nothing', {"$ref": "#/components/schemas/Batch"}
            )
        },
        "/v1/import": {
            "post": _ingest(
                "Segment's other name for /v1/batch", {"$ref": "#/components/schemas/Batch"}
            )
        },
        "/v1/alias": {
            "post": _ingest("one `alias` message: accepted and ignored", {"type": "object"})
        },
        "/v1/group": {
            "post": _ingest("one `group` message: accepted and ignored", {"type": "object"})
        },
        # the names Segment's browser library (analytics.js) posts to
        **{
            f"/v1/{kind[0]}": {
                "post": _ingest(
                    f"analytics.js's name for /v1/{kind}",
                    {"$ref": f"#/components/schemas/{kind.capitalize()}"}
                    if kind not in ("alias", "group")
                    else {"type": "object"},
                )
            }
            for kind in KINDS
        },
        "/v1/b": {
            "post": _ingest(
                "analytics.js's name for /v1/batch", {"$ref": "#/components/schemas/Batch"}
            )
        },
        "/v1/contacts/{id}": {
            "get": _admin(
                "a contact's traits, score, metrics, segments, enrollments and recent effects",
                _json("the contact", _CONTACT),
                [_path("id", "the contact's id")],
                not_found=True,
            )
        },
        "/v1/flows": {
            "get": _admin(
                "every loaded flow with its counts",
                _json(
                    "the flows",
                    {
                        "type": "object",
                        "required": ["flows"],
                        "properties": {"flows": {"type": "array", "items": _FLOW}},
                    },
                ),
                [],
            )
        },
        "/v1/flows/{name}": {
            "get": _admin(
                "one loaded flow with its counts",
                _json("the flow", _FLOW),
                [_path("name", "the flow's name")],
                not_found=True,
            )
        },
        "/v1/effects": {
            "get": _admin(
                "the effect ledger, in commit order",
                _json("a page of effects", _EFFECTS),
                [
                    _query(
                        "after",
                        {"type": "string", "pattern": "^[0-9]*$"},
                        "the cursor (`next` of the page before); 0 or none: from the start",
                    ),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                        "effects per page",
                    ),
                    _query("contact", {"type": "string"}, "only this contact's effects"),
                ],
            )
        },
        "/v1/outbox": {
            "get": _admin(
                "outbox rows, oldest first, a page at a time",
                _json(
                    "the rows",
                    {
                        "type": "object",
                        "required": ["outbox", "next"],
                        "properties": {
                            "outbox": {"type": "array", "items": _OUTBOX_ROW},
                            "next": {
                                "type": ["string", "null"],
                                "description": "the cursor of the next page (`after`); null"
                                " when this page holds the last row",
                            },
                        },
                    },
                ),
                [
                    _query("status", {"enum": ["pending", "sent", "dead"]}, "only these rows"),
                    _query(
                        "after",
                        {"type": "string"},
                        "the cursor (`next` of the page before); none: from the oldest row",
                    ),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                        "rows at most",
                    ),
                ],
            )
        },
        "/v1/reload": {"post": _reload()},
        "/o/{token}": {
            "get": _token(
                "open pixel: records `message_opened`",
                {
                    "200": {
                        "description": "a 1x1 transparent GIF, never cached",
                        "content": {"image/gif": {"schema": {"type": "string"}}},
                    }
                },
            )
        },
        "/c/{token}": {
            "get": _token(
                "a tracked link: records `message_clicked`, redirects to the message's link",
                {
                    "302": {
                        "description": "to the link that was in the message, and no other",
                        "headers": {"Location": {"required": True, "schema": {"type": "string"}}},
                    }
                },
            )
        },
        "/u/{token}": {
            "get": _token(
                "the unsubscribe page: a confirm button; changes nothing",
                {"200": {"description": "the page", **_HTML}},
            ),
            "post": {
                **_token(
                    "unsubscribe (the page's button, or RFC 8058 one-click): records "
                    "`unsubscribed` for the token's channel",
                    {
                        "200": {"description": "done", **_HTML},
                        "503": {
                            "description": "could not record it now: retry",
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                            "content": {"application/json": {"schema": ERROR}},
                        },
                    },
                ),
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {"List-Unsubscribe": {"const": "One-Click"}},
                            }
                        }
                    },
                },
            },
        },
        "/healthz": {
            "get": {
                "summary": "liveness and store reachability",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": _json("the store answers", _HEALTH),
                    "503": _json("the store does not answer", _HEALTH),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format)",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "the metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "this document",
                "tags": ["operations"],
                "security": [],
                "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
            }
        },
    }
    schemas: dict[str, Any] = {
        "Error": ERROR,
        "Track": _message("track", False),
        "Identify": _message("identify", False),
        "Page": _message("page", False),
        "Screen": _message("screen", False),
        "Batch": _batch_schema(),
    }
    for kind in KINDS:
        schemas[f"{kind}Item"] = _message(kind, True)
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "leadlang serve",
                "version": "1",
                "description": "Segment-compatible ingest, the admin API, tracking links, "
                "health and metrics (RUNTIME.md section 2).",
            },
            "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "writeKeyBasic": {
                        "type": "http",
                        "scheme": "basic",
                        "description": "the write key as the user name (what Segment sends)",
                    },
                    "writeKeyBearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "the write key as a Bearer token",
                    },
                    "adminToken": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "the admin token; a write key is never accepted",
                    },
                },
            },
            "paths": paths,
        }
    )


_HEALTH = {
    "type": "object",
    "required": ["ok", "store"],
    "properties": {
        "ok": {"type": "boolean"},
        "store": {"enum": ["reachable", "unreachable"]},
    },
}
