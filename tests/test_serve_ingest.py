"""Ingest and admin over real HTTP against a real `leadlang serve` (RUNTIME.md section 2):
every bad input answered as specified with nothing stored (read back from the store itself),
the three ways to pass the write key, gzip, the size limits (a gzip bomb included), `messageId`
deduplication, the timestamp rules, the admin routes and their token; on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import gzip
import os
import signal
import socket
import sqlite3
import time
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serve_daemon import ADMIN_TOKEN, GREET, WRITE_KEY, Daemon, fresh_postgres

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def daemon(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("ingest")
    (workdir / "greet.lead").write_text(GREET, encoding="utf-8")
    with _store(request.param) as db:
        served = Daemon(workdir, [str(workdir / "greet.lead")], db=db).start()
        try:
            yield served
        finally:
            assert served.stop() == 0, "\n".join(served.output)


def _store(kind: str) -> Any:
    if kind == "sqlite":
        from contextlib import nullcontext

        return nullcontext(None)
    return fresh_postgres()


def mark() -> str:
    return "t-" + uuid.uuid4().hex[:12]


def signed_up(contact: str, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "userId": contact, "event": "Signed Up", **extra}


def stored(daemon: Daemon, prefix: str) -> dict[str, int]:
    """Rows about contacts or message ids starting with `prefix`, per table."""
    like = prefix + "%"
    return {
        "events": daemon.count("events", "WHERE contact LIKE ?", like),
        "seen_messages": daemon.count("seen_messages", "WHERE message_id LIKE ?", like),
        "contacts": daemon.count("contacts", "WHERE id LIKE ?", like),
    }


def totals(daemon: Daemon) -> tuple[int, int]:
    return daemon.count("events"), daemon.count("seen_messages")


def assert_nothing_stored(daemon: Daemon, prefix: str, before: tuple[int, int]) -> None:
    assert stored(daemon, prefix) == {"events": 0, "seen_messages": 0, "contacts": 0}
    assert totals(daemon) == before


def assert_error(
    response: requests.Response, status: int, index: int | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if index is not None:
        assert body.get("index") == index, body
    return body


def assert_ok(response: requests.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}


def wait_for_effects(daemon: Daemon, contact: str, action: str) -> int:
    """The number of effects `action` of `contact` once processing is idle."""
    daemon.wait_idle()
    return daemon.count("effects", "WHERE contact = ? AND action = ?", contact, action)


# ---------------------------------------------------------------- bad input, nothing stored


def bad_requests(m: str) -> list[tuple[str, str, Any, int, str]]:
    """(name, path, body, status, a word the detail or error must contain)."""
    ok = signed_up(m + "-ok", messageId=m + "-ok")
    return [
        ("invalid json", "/v1/track", b'{"userId": "' + m.encode() + b'", ', 400, "json"),
        ("empty body", "/v1/track", b"", 400, "empty"),
        ("not an object", "/v1/track", [ok], 400, "object"),
        ("no user", "/v1/track", {"event": "Signed Up", "messageId": m + "-1"}, 400, "userId"),
        (
            "empty user",
            "/v1/track",
            {"userId": "", "event": "x", "messageId": m + "-2"},
            400,
            "userId",
        ),
        ("no event", "/v1/track", {"userId": m, "messageId": m + "-3"}, 400, "event"),
        ("blank event", "/v1/track", {"userId": m, "event": "  "}, 400, "event"),
        ("bad timestamp", "/v1/track", {**ok, "timestamp": "yesterday"}, 400, "timestamp"),
        ("numeric timestamp", "/v1/track", {**ok, "timestamp": 1700000000}, 400, "timestamp"),
        ("bad sentAt", "/v1/track", {**ok, "sentAt": "soon"}, 400, "sentAt"),
        ("properties list", "/v1/track", {**ok, "properties": [1]}, 400, "properties"),
        ("properties text", "/v1/track", {**ok, "properties": "x"}, 400, "properties"),
        ("traits text", "/v1/identify", {"userId": m, "traits": "x"}, 400, "traits"),
        ("context list", "/v1/page", {"userId": m, "context": []}, 400, "context"),
        ("context traits", "/v1/identify", {"userId": m, "context": {"traits": 1}}, 400, "traits"),
        ("messageId object", "/v1/track", {**ok, "messageId": {"a": 1}}, 400, "messageId"),
        ("userId object", "/v1/track", {"userId": {"id": m}, "event": "x"}, 400, "userId"),
        ("batch not a list", "/v1/batch", {"batch": ok}, 400, "batch"),
        ("batch missing", "/v1/batch", {"events": [ok]}, 400, "batch"),
        ("unknown type", "/v1/batch", {"batch": [{**ok, "type": "purchase"}]}, 400, "type"),
    ]


@pytest.mark.parametrize(
    "case", range(len(bad_requests("x"))), ids=[c[0] for c in bad_requests("x")]
)
def test_bad_input_is_400_and_stores_nothing(daemon: Daemon, case: int) -> None:
    m = mark()
    name, path, body, status, word = bad_requests(m)[case]
    before = totals(daemon)
    response = daemon.post(path, body)
    error = assert_error(response, status)
    assert word.lower() in (error["detail"] + " " + error["error"]).lower(), (name, error)
    assert_nothing_stored(daemon, m, before)


def test_a_batch_with_one_bad_item_names_its_index_and_stores_none_of_it(daemon: Daemon) -> None:
    m = mark()
    before = totals(daemon)
    items = [signed_up(f"{m}-{i}", messageId=f"{m}-{i}") for i in range(5)]
    for index, broken in [(3, {"properties": 7}), (0, {"event": None}), (4, {"timestamp": "x"})]:
        batch = [dict(item) for item in items]
        batch[index].update(broken)
        assert_error(daemon.post("/v1/batch", {"batch": batch}), 400, index)
    batch = [*items[:2], {"type": "track", "event": "x"}, *items[2:]]
    body = assert_error(daemon.post("/v1/batch", {"batch": batch}), 400, 2)
    assert "userId" in body["detail"]
    assert_nothing_stored(daemon, m, before)
    # and the same batch, mended, is stored whole
    assert_ok(daemon.post("/v1/batch", {"batch": items}))
    assert stored(daemon, m)["events"] == 5


def test_size_limits_are_413_and_store_nothing(daemon: Daemon) -> None:
    m = mark()
    before = totals(daemon)
    big = {**signed_up(m, messageId=m + "-big"), "properties": {"pad": "x" * (33 * 1024)}}
    assert_error(daemon.post("/v1/track", big), 413)
    small = [signed_up(f"{m}-{i}", messageId=f"{m}-{i}") for i in range(3)]
    assert_error(daemon.post("/v1/batch", {"batch": [*small, big]}), 413, 3)
    # 600 KB of messages each under 32 KB: the request is over 500 KB
    pad = {"pad": "y" * (20 * 1024)}
    many = [{**signed_up(f"{m}-m{i}", messageId=f"{m}-m{i}"), "properties": pad} for i in range(30)]
    assert_error(daemon.post("/v1/batch", {"batch": many}), 413)
    # the same, gzipped: small on the wire, over the limit once decompressed
    packed = gzip.compress(orjson.dumps({"batch": many}))
    assert len(packed) < 100 * 1024
    assert_error(daemon.post("/v1/batch", packed, headers={"Content-Encoding": "gzip"}), 413)
    assert_nothing_stored(daemon, m, before)


def test_a_gzip_bomb_is_413_and_cheap(daemon: Daemon) -> None:
    # 64 MB of spaces inside a JSON string, gzipped to about 64 KB
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(b'{"batch": [], "pad": "')]
    parts += [packer.compress(b" " * (1 << 20)) for _ in range(64)]
    bomb = b"".join([*parts, packer.compress(b'"}'), packer.flush()])
    assert len(bomb) < 100 * 1024
    started = time.monotonic()
    assert_error(daemon.post("/v1/batch", bomb, headers={"Content-Encoding": "gzip"}), 413)
    assert time.monotonic() - started < 2.0
    assert daemon.admin("/healthz").status_code == 200


def test_write_key_wrong_or_missing_is_401_and_stores_nothing(daemon: Daemon) -> None:
    m = mark()
    before = totals(daemon)
    body = signed_up(m, messageId=m)
    assert_error(daemon.post("/v1/track", body, key=None), 401)
    assert_error(daemon.post("/v1/track", body, key="wrong"), 401)
    assert_error(daemon.post("/v1/track", body, key=ADMIN_TOKEN), 401)
    assert_error(daemon.post("/v1/track", {**body, "writeKey": "wrong"}, key=None), 401)
    assert_error(daemon.post("/v1/batch", {"batch": [body], "writeKey": ""}, key=None), 401)
    basic = base64.b64encode(b"wrong:").decode()
    assert_error(daemon.post("/v1/track", body, headers={"Authorization": f"Basic {basic}"}), 401)
    assert_error(daemon.post("/v1/track", body, headers={"Authorization": "Basic %%%"}), 401)
    assert_nothing_stored(daemon, m, before)


def test_a_wrong_key_in_the_header_is_401_whatever_the_body(daemon: Daemon) -> None:
    """The header's key is checked before the body is read: a client with a wrong key is told
    so (401), not that its body is broken, too large or packed in an odd way."""
    m = mark()
    before = totals(daemon)
    basic = {"Authorization": "Basic " + base64.b64encode(b"wrong:").decode()}
    huge = orjson.dumps({**signed_up(m), "properties": {"pad": "x" * (600 * 1024)}})
    for headers in ({"Authorization": "Bearer wrong"}, basic):
        for path, body, extra in [
            ("/v1/track", b'{"userId": "' + m.encode() + b'", ', {}),
            ("/v1/batch", b"", {}),
            ("/v1/track", huge, {}),
            ("/v1/batch", gzip.compress(huge), {"Content-Encoding": "gzip"}),
            ("/v1/track", b"packed", {"Content-Encoding": "br"}),
            ("/v1/batch", {"batch": [{**signed_up(m), "timestamp": "soon"}]}, {}),
        ]:
            response = daemon.post(path, body, key=None, headers={**headers, **extra})
            assert_error(response, 401)
    # credentials in the header that cannot be read are wrong ones: the body's key is not
    # looked at
    keyed = {**signed_up(m), "writeKey": WRITE_KEY}
    for garbled in ("Basic %%%", "Basic " + base64.b64encode(b"\xff\xfe:").decode()):
        response = daemon.post("/v1/track", keyed, key=None, headers={"Authorization": garbled})
        assert_error(response, 401)
    assert_nothing_stored(daemon, m, before)


def test_a_web_page_sends_as_analytics_js_and_rudderstacks_sdk_do(daemon: Daemon) -> None:
    """Segment's browser library posts each message to `/v1/t`, `/v1/i`, `/v1/p`, ... (or a
    batch to `/v1/b`) with `writeKey` in a `text/plain` body; RudderStack's sends JSON with
    Basic auth, after a CORS preflight. The browser hands the answer to the page only with
    `Access-Control-Allow-Origin`, else the library takes the event as lost and resends it."""
    m = mark()
    page = "https://shop.example.com"
    browser = {"Origin": page, "Content-Type": "text/plain"}
    sent = {
        "/v1/t": {"type": "track", "anonymousId": m + "-a", "event": "Signed Up"},
        "/v1/i": {"type": "identify", "userId": m, "traits": {"email": f"{m}@example.com"}},
        "/v1/p": {"type": "page", "userId": m, "name": "Home"},
        "/v1/s": {"type": "screen", "userId": m, "name": "Main"},
        "/v1/a": {"type": "alias", "userId": m, "previousId": m + "-a"},
        "/v1/g": {"type": "group", "userId": m, "groupId": "g1"},
        "/v1/alias": {"userId": m, "previousId": m + "-b"},
        "/v1/group": {"userId": m, "groupId": "g2"},
    }
    for path, message in sent.items():
        body = {**message, "writeKey": WRITE_KEY, "messageId": f"{m}{path}"}
        answer = daemon.post(path, body, key=None, headers=dict(browser))
        assert_ok(answer)
        assert answer.headers["Access-Control-Allow-Origin"] == page
        assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    batch = {"writeKey": WRITE_KEY, "batch": [signed_up(m + "-b", messageId=m + "-b")]}
    answer = daemon.post("/v1/b", batch, key=None, headers=dict(browser))
    assert_ok(answer)
    assert answer.headers["Access-Control-Allow-Origin"] == page
    # RudderStack's SDK: a preflight, then JSON with Basic auth
    preflight = requests.options(
        daemon.url + "/v1/track",
        headers={
            "Origin": page,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,anonymousid",
        },
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == page
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    answer = daemon.post(
        "/v1/track",
        signed_up(m + "-r", messageId=m + "-r"),
        key=None,
        auth=(WRITE_KEY, ""),
        headers={"Origin": page},
    )
    assert_ok(answer)
    assert answer.headers["Access-Control-Allow-Origin"] == page
    # a refusal reaches the page too (so the library sees the status, not a network error)
    refused = daemon.post("/v1/t", {"anonymousId": m}, key="wrong", headers={"Origin": page})
    assert_error(refused, 401)
    assert refused.headers["Access-Control-Allow-Origin"] == page
    # the admin API stays closed to pages of other origins
    assert "Access-Control-Allow-Origin" not in daemon.admin("/v1/flows").headers
    closed = requests.options(daemon.url + "/v1/flows", headers={"Origin": page}, timeout=10)
    assert closed.status_code == 405 and "Access-Control-Allow-Origin" not in closed.headers
    daemon.wait_admitted()
    assert stored(daemon, m)["events"] == 6  # track, identify, page, screen, batch, rudder
    kinds = daemon.query("SELECT body FROM events WHERE contact LIKE ? ORDER BY id", m + "%")
    names = [orjson.loads(body)["n"] for (body,) in kinds]
    assert sorted(map(str, names)) == sorted(
        ["signed_up", "None", "page_viewed", "screen_viewed", "signed_up", "signed_up"]
    )


def test_the_three_ways_to_pass_the_write_key_and_gzip(daemon: Daemon) -> None:
    m = mark()
    basic = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert_ok(
        daemon.post(
            "/v1/track", signed_up(m + "-basic"), headers={"Authorization": f"Basic {basic}"}
        )
    )
    assert_ok(
        requests.post(
            daemon.url + "/v1/track", json=signed_up(m + "-auth"), auth=(WRITE_KEY, ""), timeout=30
        )
    )
    assert_ok(daemon.post("/v1/track", signed_up(m + "-bearer")))
    assert_ok(daemon.post("/v1/track", {**signed_up(m + "-body"), "writeKey": WRITE_KEY}, key=None))
    assert_ok(
        daemon.post(
            "/v1/batch", {"batch": [signed_up(m + "-batch")], "writeKey": WRITE_KEY}, key=None
        )
    )
    packed = gzip.compress(orjson.dumps({"batch": [signed_up(m + "-gzip")], "writeKey": WRITE_KEY}))
    assert_ok(daemon.post("/v1/batch", packed, key=None, headers={"Content-Encoding": "gzip"}))
    assert_ok(
        daemon.post(
            "/v1/identify",
            gzip.compress(orjson.dumps({"userId": m + "-gzid", "traits": {"a": 1}})),
            headers={"Content-Encoding": "gzip"},
        )
    )
    assert_ok(daemon.post("/v1/page", {"anonymousId": m + "-anon"}))
    assert_error(
        daemon.post("/v1/track", b"\x1f\x8bnot gzip", headers={"Content-Encoding": "gzip"}), 400
    )
    rows = daemon.query("SELECT contact FROM events WHERE contact LIKE ? ORDER BY contact", m + "%")
    names = sorted(r[0].removeprefix(m + "-") for r in rows)
    assert names == sorted(["basic", "auth", "bearer", "body", "batch", "gzip", "gzid", "anon"])


def test_success_is_exactly_200_with_success_true_many_times(daemon: Daemon) -> None:
    m = mark()
    with requests.Session() as session:  # one kept-alive connection, several requests
        for i in range(5):
            response = session.post(
                daemon.url + "/v1/track",
                data=orjson.dumps(signed_up(f"{m}-{i}")),
                headers={
                    "Authorization": f"Bearer {WRITE_KEY}",
                    "Content-Type": "application/json",
                },
                timeout=10,
            )
            assert response.status_code == 200
            assert response.content.strip() in (b'{"success":true}', b'{"success": true}')
    assert stored(daemon, m)["events"] == 5


# ---------------------------------------------------------------- deduplication and time


def test_message_id_deduplicates_within_a_batch_and_across_requests(daemon: Daemon) -> None:
    m = mark()
    first = signed_up(m, messageId=m + "-a", properties={"email": f"{m}@example.com"})
    other = signed_up(m, messageId=m + "-b", properties={"email": f"{m}@example.com"})
    assert_ok(daemon.post("/v1/batch", {"batch": [first, first, other]}))
    assert_ok(daemon.post("/v1/track", first))
    assert_ok(daemon.post("/v1/batch", {"batch": [other, first]}))
    assert_ok(daemon.post("/v1/track", {**first, "messageId": m + "-c"}))
    assert stored(daemon, m)["events"] == 3
    assert stored(daemon, m)["seen_messages"] == 3
    assert wait_for_effects(daemon, m, "enter") == 3
    assert daemon.count("effects", "WHERE contact = ? AND action = 'send'", m) == 3


def test_message_ids_are_remembered_for_24_hours(daemon: Daemon) -> None:
    m = mark()
    now = time.time()
    for suffix, age in (("-old", 25 * 3600.0), ("-recent", 23 * 3600.0)):
        daemon.query(
            "INSERT INTO seen_messages (message_id, received) VALUES (?, ?)", m + suffix, now - age
        )
    assert_ok(daemon.post("/v1/track", signed_up(m + "-old", messageId=m + "-old")))
    assert_ok(daemon.post("/v1/track", signed_up(m + "-recent", messageId=m + "-recent")))
    assert stored(daemon, m + "-old")["events"] == 1  # seen more than 24 h ago: new again
    assert stored(daemon, m + "-recent")["events"] == 0


def stored_times(daemon: Daemon, contact: str) -> tuple[float, float]:
    (row,) = daemon.query("SELECT t, received FROM events WHERE contact = ?", contact)
    return float(row[0]), float(row[1])


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def test_the_batch_sent_at_serves_messages_without_their_own(daemon: Daemon) -> None:
    m = mark()
    batch = {
        "sentAt": "2020-01-01T00:02:00Z",
        "batch": [
            {**signed_up(f"{m}-a"), "originalTimestamp": "2020-01-01T00:00:00Z"},
            {**signed_up(f"{m}-b"), "originalTimestamp": "2020-01-01T00:00:00Z"}
            | {"sentAt": "2020-01-01T00:00:30Z"},
        ],
    }
    assert_ok(daemon.post("/v1/batch", batch))
    t, received = stored_times(daemon, f"{m}-a")
    assert abs(t - (received - 120.0)) < 1e-6
    t, received = stored_times(daemon, f"{m}-b")
    assert abs(t - (received - 30.0)) < 1e-6
    before = totals(daemon)
    bad = {"sentAt": "later", "batch": [signed_up(f"{m}-c")]}
    assert_error(daemon.post("/v1/batch", bad), 400)
    assert stored(daemon, f"{m}-c")["events"] == 0 and totals(daemon) == before


def test_timestamp_rules(daemon: Daemon) -> None:
    m = mark()
    now = time.time()
    cases: dict[str, dict[str, Any]] = {
        "given": {"timestamp": "2025-06-01T02:00:00+02:00"},
        "naive": {"timestamp": "2025-06-01T00:00:00"},
        "skew": {"sentAt": "2020-01-01T00:01:00Z", "originalTimestamp": "2020-01-01T00:00:00Z"},
        "missing": {},
        "future": {"timestamp": iso(now + 86400)},
        "future-skew": {
            "sentAt": "2020-01-01T00:00:00Z",
            "originalTimestamp": "2020-01-01T01:00:00Z",
        },
        # the client's clock alone, without the send time to correct it: the receive time
        "original-only": {"originalTimestamp": "2020-01-01T00:00:00Z"},
        # however far ahead (past the last instant a contact can be processed to)
        "far-future": {"timestamp": "9999-12-31T23:59:59Z"},
    }
    for name, fields in cases.items():
        assert_ok(daemon.post("/v1/track", {**signed_up(f"{m}-{name}"), **fields}))
    june = datetime(2025, 6, 1, tzinfo=UTC).timestamp()
    assert stored_times(daemon, f"{m}-given")[0] == june
    assert stored_times(daemon, f"{m}-naive")[0] == june
    t, received = stored_times(daemon, f"{m}-skew")  # receivedAt - (sentAt - originalTimestamp)
    assert abs(t - (received - 60.0)) < 1e-6
    assert now - 5 < received < time.time() + 1
    t, received = stored_times(daemon, f"{m}-missing")
    assert t == received
    t, received = stored_times(daemon, f"{m}-future")  # clamped to the receive time
    assert t == received
    for name in ("future-skew", "original-only", "far-future"):
        t, received = stored_times(daemon, f"{m}-{name}")
        assert t == received, name


def test_a_key_or_token_that_is_not_utf_8_is_refused_not_an_error(daemon: Daemon) -> None:
    m = mark()
    odd = {"Authorization": "Bearer \xff\xfe"}  # (latin-1 on the wire: bytes 0xff 0xfe)
    answer = requests.post(daemon.url + "/v1/track", json=signed_up(m), headers=odd, timeout=10)
    assert_error(answer, 401)
    assert_error(requests.get(daemon.url + "/v1/flows", headers=odd, timeout=10), 401)
    assert stored(daemon, m)["events"] == 0


# ---------------------------------------------------------------- admin


def test_admin_routes_need_the_admin_token_never_a_write_key(daemon: Daemon) -> None:
    m = mark()
    assert_ok(daemon.post("/v1/track", signed_up(m, properties={"email": f"{m}@example.com"})))
    daemon.wait_idle()
    for path in (f"/v1/contacts/{m}", "/v1/flows", "/v1/flows/greet", "/v1/effects", "/v1/outbox"):
        assert_error(daemon.admin(path, token=None), 401)
        assert_error(daemon.admin(path, token=WRITE_KEY), 401)
        assert_error(daemon.admin(path, token="wrong"), 401)
        basic = base64.b64encode(f"{ADMIN_TOKEN}:".encode()).decode()
        response = requests.get(
            daemon.url + path, headers={"Authorization": f"Basic {basic}"}, timeout=10
        )
        assert_error(response, 401)
        assert daemon.admin(path).status_code == 200, path


def test_contacts_and_flows(daemon: Daemon) -> None:
    m = mark()
    assert_error(daemon.admin(f"/v1/contacts/{m}"), 404)
    assert_ok(daemon.post("/v1/identify", {"userId": m, "traits": {"first_name": "Ann"}}))
    assert_ok(daemon.post("/v1/track", signed_up(m, properties={"email": f"{m}@example.com"})))
    daemon.wait_idle()
    profile = daemon.admin(f"/v1/contacts/{m}").json()
    assert profile["traits"]["first_name"] == "Ann"
    assert profile["traits"]["email"] == f"{m}@example.com"
    for key in ("score", "metrics", "segments", "tags", "enrollments", "effects"):
        assert key in profile, key
    assert [e["action"] for e in profile["effects"]] == ["enter", "send", "exit"]
    assert_error(daemon.admin(f"/v1/contacts/{mark()}"), 404)
    flows = daemon.admin("/v1/flows").json()["flows"]
    assert [f["name"] for f in flows] == ["greet"]
    greet = daemon.admin("/v1/flows/greet").json()
    assert greet["name"] == "greet" and greet["version"] == flows[0]["version"]
    assert greet["entered"] >= 1 and greet["exited"] >= 1 and greet["sent"] >= 1
    assert_error(daemon.admin("/v1/flows/nope"), 404)
    deadline = time.monotonic() + 10
    while True:  # the outbox row, delivered into the Maildir
        rows = daemon.admin("/v1/outbox?status=sent&limit=1000").json()["outbox"]
        mine = [r for r in rows if r["contact"] == m]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    (row,) = mine
    assert (row["flow"], row["message"], row["channel"], row["status"]) == (
        "greet",
        "hello",
        "email",
        "sent",
    )
    for key in ("key", "attempts", "last_error", "next_attempt"):
        assert key in row, key
    assert_error(daemon.admin("/v1/outbox?status=bogus"), 400)


def test_effects_paging_follows_next_to_the_end(daemon: Daemon) -> None:
    m = mark()
    batch = [signed_up(m, properties={"email": f"{m}@example.com"}) for _ in range(4)]
    assert_ok(daemon.post("/v1/batch", {"batch": batch}))
    daemon.wait_idle()
    whole = daemon.admin("/v1/effects?limit=1000").json()
    assert whole["next"] is None
    pages: list[dict[str, Any]] = []
    after = "0"
    while True:
        page = daemon.admin(f"/v1/effects?after={after}&limit=4").json()
        assert len(page["effects"]) <= 4
        pages.extend(page["effects"])
        if page["next"] is None:
            break
        assert page["next"] == str(page["effects"][-1]["id"])
        after = page["next"]
    assert pages == whole["effects"]
    ids = [e["id"] for e in pages]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert sum(1 for e in pages if e["contact"] == m and e["action"] == "send") == 4
    assert daemon.admin(f"/v1/effects?after={ids[-1]}&limit=5").json() == {
        "effects": [],
        "next": None,
    }
    # a page that ends with the last effect says so: no cursor to an empty page
    last = daemon.admin(f"/v1/effects?after={ids[-3]}&limit=2").json()
    assert [e["id"] for e in last["effects"]] == ids[-2:] and last["next"] is None
    before_last = daemon.admin(f"/v1/effects?after={ids[-4]}&limit=2").json()
    assert before_last["next"] == str(ids[-2])
    for query in ("limit=0", "limit=abc", "after=x", "limit=100000"):
        assert_error(daemon.admin(f"/v1/effects?{query}"), 400)


def test_outbox_paging_follows_next_to_the_newest_row(daemon: Daemon) -> None:
    """`GET /v1/outbox` is read a page at a time, oldest first, to its newest row (past the
    1000 rows one page may hold, the newest sends and dead letters were out of reach)."""
    m = mark()
    batch = [signed_up(m, properties={"email": f"{m}@example.com"}) for _ in range(5)]
    assert_ok(daemon.post("/v1/batch", {"batch": batch}))
    daemon.wait_idle()
    whole = daemon.admin("/v1/outbox?limit=1000").json()
    assert whole["next"] is None and len(whole["outbox"]) >= 5
    pages: list[dict[str, Any]] = []
    after = ""
    while True:
        page = daemon.admin(f"/v1/outbox?after={after}&limit=2").json()
        assert 1 <= len(page["outbox"]) <= 2
        pages.extend(page["outbox"])
        if page["next"] is None:
            break
        after = page["next"]
    assert [r["key"] for r in pages] == [r["key"] for r in whole["outbox"]]
    assert len({r["key"] for r in pages}) == len(pages)
    assert sum(1 for r in pages if r["contact"] == m) == 5
    # a status narrows the pages the same way
    sent = daemon.admin("/v1/outbox?status=sent&limit=1").json()
    assert all(r["status"] == "sent" for r in sent["outbox"])
    for query in ("after=x", "after=bm90IGpzb24", "after=WzEsMl0", "after=WyJhIiwiYiJd"):
        assert_error(daemon.admin(f"/v1/outbox?{query}"), 400)


def test_healthz_metrics_openapi_need_no_token(daemon: Daemon) -> None:
    health = requests.get(daemon.url + "/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["ok"] is True
    metrics = requests.get(daemon.url + "/metrics", timeout=10)
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"].startswith("text/plain")
    names = {line.split()[2] for line in metrics.text.splitlines() if line.startswith("# TYPE")}
    assert {
        "leadlang_events_accepted_total",
        "leadlang_pending_events",
        "leadlang_outbox_rows",
    } <= names
    document = requests.get(daemon.url + "/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.")
    for path in (
        "/v1/track",
        "/v1/identify",
        "/v1/page",
        "/v1/batch",
        "/v1/contacts/{id}",
        "/v1/flows",
        "/v1/flows/{name}",
        "/v1/effects",
        "/v1/outbox",
        "/healthz",
        "/metrics",
    ):
        assert path in document["paths"], path


# ---------------------------------------------------------------- texts PostgreSQL cannot hold


def test_ids_that_a_database_cannot_index_are_400_not_500(daemon: Daemon) -> None:
    m = mark()
    before = totals(daemon)
    for body in (
        signed_up(m + "-nul\x00"),
        signed_up(m + "-mid", messageId=m + "-nul\x00"),
        signed_up(m + "-wide-" + "\U0001f600" * 1000),  # 1,000 characters, 4,000 bytes
        signed_up(m + "-longmid", messageId=m + "-" + "z" * 20000),
    ):
        assert_error(daemon.post("/v1/track", body), 400)
    assert_nothing_stored(daemon, m, before)
    # and one bad request does not fail the good ones committed with it
    assert_ok(daemon.post("/v1/track", signed_up(m + "-after")))


# ---------------------------------------------------------------- never a 5xx

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "type",
        "userId",
        "anonymousId",
        "event",
        "properties",
        "traits",
        "context",
        "timestamp",
        "sentAt",
        "originalTimestamp",
        "messageId",
        "writeKey",
    ]
)
messages = st.dictionaries(
    field_names,
    json_values
    | st.sampled_from(
        ["track", "identify", "page", "screen", "alias", "2025-01-01T00:00:00Z", "x\x00"]
    ),
    max_size=8,
)
bodies = (
    json_values.map(orjson.dumps)
    | st.lists(messages, max_size=4).map(lambda batch: orjson.dumps({"batch": batch}))
    | st.binary(max_size=64)
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies, gzipped=st.booleans())
def test_arbitrary_bodies_never_get_a_5xx(daemon: Daemon, body: bytes, gzipped: bool) -> None:
    headers = {"Content-Encoding": "gzip"} if gzipped else {}
    response = daemon.post("/v1/batch", gzip.compress(body) if gzipped else body, headers=headers)
    assert response.status_code < 500, (body, response.text)
    assert response.status_code in (200, 400, 413, 415), response.text


def test_processing_goes_on_after_the_fuzz(daemon: Daemon) -> None:
    m = mark()
    assert_ok(daemon.post("/v1/track", signed_up(m, properties={"email": f"{m}@example.com"})))
    assert wait_for_effects(daemon, m, "send") == 1


# ---------------------------------------------------------------- overload


@pytest.mark.timeout(120)
def test_overload_is_429_with_retry_after_and_stores_nothing_of_it(
    tmp_path: Path,
) -> None:
    """More than 200,000 events waiting for their commit: 429 with Retry-After, never a dropped
    connection, and nothing of a refused request stored."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    (tmp_path / "greet.lead").write_text(GREET, encoding="utf-8")
    served = Daemon(tmp_path, [str(tmp_path / "greet.lead")]).start()
    size = 15_000  # about 460 KB of small page views per request
    body = orjson.dumps({"batch": [{"type": "page", "userId": f"o{i % 50}"} for i in range(size)]})
    lock = None
    try:
        assert_ok(served.post("/v1/page", {"userId": "first"}))  # (the inbox is made)
        served.wait_admitted()
        # The test holds the write lock of the inbox, where ingest commits: the first commit
        # waits, and the requests behind it queue up past the limit whatever the machine.
        lock = sqlite3.connect(tmp_path / "leadlang.inbox.db", timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        with ThreadPoolExecutor(20) as pool:
            futures = [pool.submit(served.post, "/v1/batch", body) for _ in range(20)]
            pending = set(futures)
            while pending and not any(f.result().status_code == 429 for f in futures if f.done()):
                _, pending = wait(pending, timeout=20, return_when=FIRST_COMPLETED)
            lock.execute("ROLLBACK")  # the waiting commit goes through now
            answers = [f.result() for f in futures]
        statuses = [a.status_code for a in answers]
        assert set(statuses) <= {200, 429}, statuses
        refused = [a for a in answers if a.status_code == 429]
        assert refused and statuses.count(200), statuses
        for answer in refused:
            assert int(answer.headers["Retry-After"]) >= 1
            assert answer.json()["error"]
        # (read once the daemon has admitted what its inbox took)
        assert served.count("events", "WHERE contact LIKE 'o%'") == statuses.count(200) * size
    finally:
        if lock is not None:
            lock.close()
        served.kill()  # (processing 300,000 page views is not this test's business)


@pytest.mark.timeout(120)
def test_a_backlog_past_max_backlog_is_429_until_processing_has_caught_up(
    tmp_path: Path,
) -> None:
    """`server.max_backlog = 100`: while processing is held up (the test holds the store's
    write lock, so nothing is admitted from the inbox), ingest takes events until 100 or more
    wait, then answers 429 with `Retry-After: 5`, nothing of the refused request stored; once
    processing has caught up, 200 again."""
    from leadlang.runtime.store.inbox import waiting_in

    (tmp_path / "greet.lead").write_text(GREET, encoding="utf-8")
    config = (
        f'[server]\nwrite_keys = ["{WRITE_KEY}"]\nadmin_token = "{ADMIN_TOKEN}"\n'
        "max_backlog = 100\n"
    )
    served = Daemon(tmp_path, [str(tmp_path / "greet.lead")], config=config).start()
    try:
        assert_ok(served.post("/v1/page", {"userId": "first"}))  # (the inbox is made)
        served.wait_idle()
        lock = sqlite3.connect(tmp_path / "leadlang.db", timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            batch = {"batch": [{"type": "page", "userId": f"b{i}"} for i in range(99)]}
            assert_ok(served.post("/v1/batch", batch))
            time.sleep(2.5)  # (the daemon looks every second: 99 waiting is under the limit)
            assert_ok(served.post("/v1/page", {"userId": "b99"}))
            deadline = time.monotonic() + 10
            while served.post("/v1/page", {"userId": "late"}).status_code == 200:
                assert time.monotonic() < deadline, "no 429 with 100 events waiting"
                time.sleep(0.1)
            waiting = waiting_in(str(tmp_path / "leadlang.db"))
            assert waiting >= 100
            refused = served.post("/v1/page", {"userId": "refused"})
            body = assert_error(refused, 429)
            assert refused.headers["Retry-After"] == "5"
            assert "processed" in body["detail"]
            assert waiting_in(str(tmp_path / "leadlang.db")) == waiting  # nothing of it stored
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        deadline = time.monotonic() + 30
        while (again := served.post("/v1/page", {"userId": "again"})).status_code == 429:
            assert time.monotonic() < deadline, "still 429 after processing caught up"
            time.sleep(0.2)
        assert_ok(again)
        assert served.count("events", "WHERE contact = 'refused'") == 0
    finally:
        assert served.stop() == 0, "\n".join(served.output)


def test_no_such_route_and_a_wrong_method_are_answered_in_json(daemon: Daemon) -> None:
    missing = requests.get(daemon.url + "/v1/nothing-here", timeout=10)
    assert_error(missing, 404)
    wrong = requests.get(daemon.url + "/v1/batch", timeout=10)
    assert_error(wrong, 405)
    assert "POST" in wrong.headers["Allow"]


def raw_http(daemon: Daemon, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as it is on a socket of its own; the status, headers and body of the
    answer, read until the daemon closes the connection."""
    host, port = daemon.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),  # no request line
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),  # no colon
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n", 400),
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (  # a chunked body whose chunk size is not hexadecimal
            b"POST /v1/track HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            400,
        ),
    ],
    ids=["garbage", "header-without-colon", "header-too-long", "uri-too-long", "bad-chunk"],
)
def test_a_request_that_is_not_http_is_refused_in_json(
    daemon: Daemon, request_bytes: bytes, status: int
) -> None:
    """What aiohttp refuses before any route sees the request gets the daemon's JSON error
    body too (not aiohttp's plain text), stores nothing, and puts no traceback in the log."""
    before = daemon.count("events")
    got, headers, body = raw_http(daemon, request_bytes)
    assert got == status
    assert headers["content-type"].startswith("application/json")
    error = orjson.loads(body)
    assert set(error) == {"error", "detail"} and error["detail"]
    assert "Traceback" not in error["detail"]
    assert daemon.count("events") == before
    assert requests.get(daemon.url + "/healthz", timeout=10).ok  # and the daemon goes on
    assert not [line for line in daemon.output if "Traceback" in line]  # a line in its log


def test_a_contact_id_with_a_nul_is_not_found(daemon: Daemon) -> None:
    # (ingest refuses such an id, so no contact has one; PostgreSQL text cannot hold it)
    assert_error(daemon.admin("/v1/contacts/a%00b"), 404)


def test_write_key_headers_as_clients_spell_them(daemon: Daemon) -> None:
    """The scheme in any case, spaces around the credentials; a header that is not quite
    base64, or a `writeKey` that is not a text, is a 401 (never a 500), nothing stored."""
    m = mark()
    basic = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    for i, header in enumerate(
        (f"basic {basic}", f"BASIC  {basic}", f"bearer {WRITE_KEY}", f"BEARER  {WRITE_KEY}")
    ):
        response = daemon.post(
            "/v1/track", signed_up(f"{m}-{i}"), headers={"Authorization": header}
        )
        assert_ok(response)
    assert stored(daemon, m)["events"] == 4
    before = totals(daemon)
    odd = base64.b64encode(b"\xff\xfe:").decode()  # (base64 of bytes that are not UTF-8)
    for header in (f"Basic {basic}!!", f"Basic {odd}", f"Basic {basic[:-1]}"):
        response = daemon.post("/v1/track", signed_up(f"{m}-x"), headers={"Authorization": header})
        assert_error(response, 401)
    for key in (5, None, ["k"], {"k": WRITE_KEY}):
        assert_error(
            daemon.post("/v1/track", {**signed_up(f"{m}-x"), "writeKey": key}, key=None), 401
        )
    assert_nothing_stored(daemon, f"{m}-x", before)


def test_any_of_several_write_keys_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "greet.lead").write_text(GREET, encoding="utf-8")
    config = f'[server]\nwrite_keys = ["first-key", "second-key"]\nadmin_token = "{ADMIN_TOKEN}"\n'
    served = Daemon(tmp_path, [str(tmp_path / "greet.lead")], config=config).start()
    try:
        assert_ok(served.post("/v1/track", signed_up("a"), key="first-key"))
        assert_ok(served.post("/v1/track", signed_up("b"), key="second-key"))
        assert_error(served.post("/v1/track", signed_up("c"), key="third-key"), 401)
        assert_error(served.post("/v1/track", signed_up("c"), key=WRITE_KEY), 401)
        rows = served.query("SELECT contact FROM events ORDER BY contact")
        assert [row[0] for row in rows] == ["a", "b"]
    finally:
        assert served.stop() == 0, "\n".join(served.output)


def test_a_batch_may_hold_alias_and_group_calls_which_are_not_stored(daemon: Daemon) -> None:
    m = mark()
    alias = {"type": "alias", "userId": f"{m}-a", "previousId": f"{m}-old"}
    group = {"type": "group", "userId": f"{m}-a", "groupId": "g1"}
    assert_ok(daemon.post("/v1/batch", {"batch": [alias, signed_up(f"{m}-a"), group]}))
    assert stored(daemon, m)["events"] == 1


def test_a_batch_whose_sent_at_is_no_time_is_refused_whatever_its_messages_say(
    daemon: Daemon,
) -> None:
    m = mark()
    before = totals(daemon)
    own = {**signed_up(f"{m}-a"), "sentAt": "2020-01-01T00:00:00Z"}
    assert_error(daemon.post("/v1/batch", {"sentAt": "later", "batch": [own]}), 400)
    assert_error(daemon.post("/v1/batch", {"sentAt": "later", "batch": []}), 400)
    assert_nothing_stored(daemon, m, before)


def _back_end_pid(served: Daemon) -> int:
    """The pid of the daemon's back-end child process (`[server] processes = 2`)."""
    assert served.proc is not None
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == served.proc.pid:
            return int(stat.parent.name)
    raise AssertionError("the daemon has no back-end process")


@pytest.mark.timeout(180)
def test_a_contact_whose_events_are_not_yet_processed_is_known_not_404(tmp_path: Path) -> None:
    """A client that was answered 200 for a contact's first event asks for the contact at
    once: it is a contact seen (RUNTIME.md: 404 only for one never seen), even while its
    event waits in SQLite's inbox for the back end (stopped here, as a busy one would be)."""
    (tmp_path / "greet.lead").write_text(GREET, encoding="utf-8")
    config = (
        f'[server]\nwrite_keys = ["{WRITE_KEY}"]\nadmin_token = "{ADMIN_TOKEN}"\nprocesses = 2\n'
    )
    served = Daemon(tmp_path, [str(tmp_path / "greet.lead")], config=config).start()
    back_end = _back_end_pid(served)
    os.kill(back_end, signal.SIGSTOP)
    try:
        m = mark()
        # a property with the id in it does not make another contact known
        assert_ok(served.post("/v1/identify", {"userId": m, "traits": {"friend": f"{m}-b"}}))
        answer = served.admin(f"/v1/contacts/{m}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == m
        assert_error(served.admin(f"/v1/contacts/{m}-b"), 404)
        assert_error(served.admin(f"/v1/contacts/{mark()}"), 404)
    finally:
        os.kill(back_end, signal.SIGCONT)
        assert served.stop() == 0, "\n".join(served.output)


@pytest.mark.timeout(180)
def test_a_contact_not_yet_processed_has_the_profile_s_every_field(tmp_path: Path) -> None:
    """A client reads `score`, `segments`, `enrollments`, ... of `GET /v1/contacts/ID`
    (RUNTIME.md section 2) without first checking whether the back end has caught up: a
    contact whose events are not processed yet answers in the same shape, nothing applied,
    flagged `pending`."""
    (tmp_path / "greet.lead").write_text(GREET, encoding="utf-8")
    config = (
        f'[server]\nwrite_keys = ["{WRITE_KEY}"]\nadmin_token = "{ADMIN_TOKEN}"\nprocesses = 2\n'
    )
    served = Daemon(tmp_path, [str(tmp_path / "greet.lead")], config=config).start()
    back_end = _back_end_pid(served)
    try:
        m = mark()
        assert_ok(served.post("/v1/identify", {"userId": m, "traits": {"first_name": "Ann"}}))
        served.wait_idle()
        processed = served.admin(f"/v1/contacts/{m}").json()
        os.kill(back_end, signal.SIGSTOP)
        n = mark()
        assert_ok(served.post("/v1/identify", {"userId": n, "traits": {"first_name": "Bob"}}))
        pending = served.admin(f"/v1/contacts/{n}").json()
        assert pending.pop("pending") is True
        assert set(pending) == set(processed)
        assert pending == {
            "id": n,
            "traits": {},
            "score": 0,
            "metrics": {},
            "segments": [],
            "tags": [],
            "enrollments": [],
            "next_wake": None,
            "effects": [],
        }
    finally:
        os.kill(back_end, signal.SIGCONT)
        assert served.stop() == 0, "\n".join(served.output)


def test_numeric_user_ids_past_64_bits_keep_their_digits_as_simulate_does(
    daemon: Daemon,
) -> None:
    """A CRM sends a Google account id (21 digits) as a JSON number: two such customers stay
    two contacts, named by their digits as `leadlang simulate` names them from the same log
    (a float would merge ids that differ in their last digits)."""
    from leadlang.runtime.simulate import parse_line

    m = int("1" + uuid.uuid4().int.__str__()[:12])  # (a fresh id per run)
    first, second = m * 10**8 + 334, m * 10**8 + 335
    assert first > 2**64
    lines = [
        b'{"type": "track", "userId": %d, "event": "Signed Up", "timestamp": "%s"}'
        % (uid, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode())
        for uid in (first, second)
    ]
    batch = b'{"batch": [' + b", ".join(lines) + b"]}"
    assert_ok(daemon.post("/v1/batch", batch))
    assert_ok(daemon.post("/v1/track", b'{"userId": %d, "event": "Signed Up"}' % first))
    simulated = [parse_line(line, 1).contact for line in lines]  # type: ignore[union-attr]
    assert simulated == [str(first), str(second)]
    rows = daemon.query(
        "SELECT contact FROM events WHERE contact IN (?, ?) ORDER BY id", *simulated
    )
    assert [row[0] for row in rows] == [str(first), str(second), str(first)]
