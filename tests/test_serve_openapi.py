"""`GET /openapi.json` kept true: the document is valid OpenAPI 3.1 (schemathesis validates it
against the specification's own meta-schema), its paths and methods are exactly the app's
router's, its request schemas accept what ingest accepts, and a schemathesis run against the
live daemon (a real process) gets no 5xx on any generated request."""

from __future__ import annotations

import asyncio
import copy
import time
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

from leadlang.interpreter.check import check_paths
from leadlang.interpreter.compile import compile_program
from leadlang.runtime.server.app import make_app, open_daemon
from leadlang.runtime.server.config import load_config
from leadlang.runtime.server.openapi import openapi_document
from tests.serve_daemon import ADMIN_TOKEN, GREET, WRITE_KEY, Daemon

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def documented() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in METHODS
    }


def routed(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, pattern) of every route of the real app (HEAD, which aiohttp adds to each
    GET, left out: the document lists GET only)."""

    async def build() -> set[tuple[str, str]]:
        result = check_paths([str(ROOT / "examples" / "flowio")])
        assert result.program is not None
        config = load_config(None, db=f"sqlite:///{tmp_path / 'routes.db'}")
        daemon = await open_daemon(config, compile_program(result.program))
        try:
            app = make_app(daemon)
            return {
                (route.method, route.resource.canonical)
                for route in app.router.routes()
                if route.resource is not None and route.method != "HEAD"
            }
        finally:
            await daemon.store.close()

    return asyncio.run(build())


def test_the_document_lists_exactly_the_routes_of_the_app(tmp_path: Path) -> None:
    assert documented() == routed(tmp_path)


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()
    # (and the validation does reject a broken document)
    broken = copy.deepcopy(document)
    broken["paths"]["/v1/track"]["post"]["responses"] = {"200": {"no description": True}}
    with pytest.raises(Exception, match="description"):
        schemathesis.openapi.from_dict(broken).validate()
    for path, item in document["paths"].items():
        for method, op in item.items():
            assert op.get("summary"), (method, path)
            assert op["responses"], (method, path)
            named = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert named == {part[1:-1] for part in path.split("/") if part.startswith("{")}


def validator(name: str) -> Any:
    """A JSON Schema 2020-12 validator of the component `name` (its $refs resolved)."""
    document = openapi_document()
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


def test_request_schemas_describe_what_ingest_takes() -> None:
    track = validator("Track")
    assert track.is_valid({"userId": "ann", "event": "Signed Up", "properties": {"a": 1}})
    assert track.is_valid({"anonymousId": 7, "event": "x", "timestamp": "2026-01-01T00:00:00Z"})
    assert not track.is_valid({"userId": "ann"})  # no event
    assert not track.is_valid({"event": "x"})  # no contact
    assert not track.is_valid({"userId": "ann", "event": "x", "properties": []})
    identify = validator("Identify")
    assert identify.is_valid({"userId": "ann", "traits": {"email": "a@x.org"}})
    assert not identify.is_valid({"userId": "ann", "traits": "no"})
    batch = validator("Batch")
    assert batch.is_valid(
        {
            "batch": [
                {"type": "track", "userId": "a", "event": "e"},
                {"type": "identify", "userId": "a", "traits": {}},
                {"type": "alias", "userId": "a"},
            ]
        }
    )
    assert not batch.is_valid({"batch": [{"type": "track", "userId": "a"}]})
    assert not batch.is_valid({"batch": [{"type": "nope", "userId": "a"}]})
    error = validator("Error")
    assert error.is_valid({"error": "invalid event", "detail": "missing `event`", "index": 2})
    assert not error.is_valid({"error": "x"})


# ---------------------------------------------------------------- schemathesis, live

EXAMPLES_PER_OPERATION = 20
CONFORMANCE = [
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


def auth_for(path: str) -> dict[str, str]:
    """The credentials each route takes, so generated requests get past 401."""
    if path.startswith("/v1/") and path.split("/")[2] in (
        "track",
        "identify",
        "page",
        "screen",
        "batch",
        "import",
    ):
        return {"Authorization": f"Bearer {WRITE_KEY}"}
    if path.startswith("/v1/"):
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    return {}


@pytest.mark.timeout(240)
def test_schemathesis_finds_no_5xx_on_the_live_daemon(tmp_path: Path) -> None:
    script = tmp_path / "greet.lead"
    script.write_text(GREET, encoding="utf-8")
    daemon = Daemon(tmp_path, [str(script)]).start()
    try:
        schema = schemathesis.openapi.from_url(daemon.url + "/openapi.json")
        assert schema.get_base_url().rstrip("/") == daemon.url
        failures: list[str] = []
        mismatches: list[str] = []
        statuses: dict[int, int] = {}
        session = requests.Session()
        operations = [result.ok() for result in schema.get_all_operations()]
        # (schemathesis leaves out the document's own route)
        assert {(op.method.upper(), op.path) for op in operations} == documented() - {
            ("GET", "/openapi.json")
        }
        started = time.monotonic()

        def fuzz(operation: Any, mode: GenerationMode) -> None:
            @hypothesis.settings(
                max_examples=EXAMPLES_PER_OPERATION,
                derandomize=True,  # the same requests on every run
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[hypothesis.Phase.generate],
            )
            @given(data=st.data())
            def run(data: st.DataObject) -> None:
                case = data.draw(operation.as_strategy(generation_mode=mode))
                response = case.call(
                    base_url=daemon.url,
                    session=session,
                    headers=auth_for(operation.path),
                    timeout=30,
                    allow_redirects=False,
                )
                status = response.status_code
                statuses[status] = statuses.get(status, 0) + 1
                if status >= 500:
                    failures.append(
                        f"{status} {operation.method.upper()} {operation.path}: "
                        f"{case.as_curl_command()}\n{response.text[:300]}"
                    )
                    return
                try:  # and the answer is the one documented (status, type, body, headers)
                    case.validate_response(response, checks=CONFORMANCE)
                except (Exception, BaseExceptionGroup) as exc:  # schemathesis's FailureGroup
                    mismatches.append(f"{operation.label}: {case.as_curl_command()}\n{exc}")

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                # nothing to make invalid (no parameters, no body): no negative cases
                assert mode is GenerationMode.NEGATIVE, operation.label
                unnegated.append(operation.label)

        unnegated: list[str] = []
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz(operation, mode)
        elapsed = time.monotonic() - started
        print(f"schemathesis: {sum(statuses.values())} requests in {elapsed:.1f} s: {statuses}")
        assert not failures, "\n\n".join(failures[:10])
        assert not mismatches, "\n\n".join(mismatches[:10])
        # the credentials worked: generated requests got past 401 to real answers
        assert statuses.get(200, 0) > 100, statuses
        assert elapsed < 120, elapsed
        assert requests.get(daemon.url + "/healthz", timeout=10).status_code == 200
    finally:
        assert daemon.stop() == 0


@pytest.mark.timeout(120)
def test_what_schemathesis_found_is_a_4xx(tmp_path: Path) -> None:
    """Requests the schemathesis run once got a 500 for, each answered 400 now."""
    script = tmp_path / "greet.lead"
    script.write_text(GREET, encoding="utf-8")
    daemon = Daemon(tmp_path, [str(script)]).start()
    try:
        # a cursor past a database integer (SQLite raised OverflowError)
        for after in ("25050847391187608134", str(2**63)):
            answer = daemon.admin(f"/v1/effects?after={after}&limit=406&contact=")
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"] == "bad query"
        assert daemon.admin(f"/v1/effects?after={2**63 - 1}").json() == {
            "effects": [],
            "next": None,
        }
    finally:
        assert daemon.stop() == 0
