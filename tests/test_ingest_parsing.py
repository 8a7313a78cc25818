"""Ingest's reading of one Segment message, called directly: what is stored for each field
(the contact, the event's name and properties, an identify's traits, the `messageId`, the
event's time), and which messages are refused (400, naming the field) or accepted and
ignored. The HTTP side (routes, write keys, gzip, what reaches the store) is
`test_serve_ingest.py`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from leadlang.limits import MAX_JSON_DEPTH
from leadlang.runtime.server.ingest import BadRequest, parse_message, parse_time
from leadlang.runtime.store.sql import Incoming

RECEIVED = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
JUNE = datetime(2025, 6, 1, tzinfo=UTC).timestamp()


def parsed(item: dict[str, Any], kind: str | None = None) -> Incoming:
    event = parse_message(item, kind, RECEIVED, None)
    assert event is not None
    return event


def stored_body(event: Incoming) -> dict[str, Any]:
    body = orjson.loads(event.body)
    assert isinstance(body, dict)
    return body


def refused(item: Any, kind: str | None = None) -> str:
    """The detail of the 400 a message is refused with."""
    with pytest.raises(BadRequest) as caught:
        parse_message(item, kind, RECEIVED, 3)
    assert caught.value.status == 400 and caught.value.index == 3
    return caught.value.detail


def track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u1", "event": "Signed Up", **fields}


def nested(depth: int) -> dict[str, Any]:
    """An object nesting objects `depth` deep (`{}` is 1)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.fixture
def new_york() -> Iterator[None]:
    """The process's local zone set to New York (the server's zone must not matter)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_a_time_without_offset_is_utc_whatever_the_servers_zone(new_york: None) -> None:
    assert parse_time("2025-06-01T00:00:00") == JUNE
    assert parsed(track(timestamp="2025-06-01T00:00:00")).t == JUNE
    assert parse_time("2025-06-01T02:00:00+02:00") == JUNE


def test_times_written_with_a_lower_case_z_or_spaces_around_are_read() -> None:
    assert parse_time("2025-06-01T00:00:00z") == JUNE
    assert parse_time(" 2025-06-01T00:00:00Z ") == JUNE
    assert parsed(track(timestamp="2025-06-01t00:00:00z")).t == JUNE
    for text in ("", "  ", "june", "2025-13-01T00:00:00Z"):
        assert parse_time(text) is None
    assert parse_time(1748736000) is None


def test_the_contact_is_the_user_id_else_the_anonymous_id() -> None:
    assert parsed(track(userId="u1", anonymousId="anon")).contact == "u1"
    # an empty userId, or none, falls back to anonymousId
    assert parsed(track(userId="", anonymousId="anon")).contact == "anon"
    assert parsed(track(userId=None, anonymousId="anon")).contact == "anon"
    # a number is its JSON text (as the client's JSON says it)
    assert parsed(track(userId=12345)).contact == "12345"
    assert parsed(track(userId=1e20)).contact == "1e+20"
    assert parsed(track(userId=1.5)).contact == "1.5"
    # true, an object or a list is no id
    assert parsed(track(userId=True, anonymousId="anon")).contact == "anon"
    assert "userId" in refused(track(userId=True))
    assert "userId" in refused(track(userId=[1]))


def test_ids_are_limited_to_1024_bytes_of_utf_8() -> None:
    assert parsed(track(userId="x" * 1024)).contact == "x" * 1024
    assert "userId" in refused(track(userId="x" * 1025))
    assert parsed(track(userId="é" * 512)).contact == "é" * 512  # 1024 bytes
    assert "userId" in refused(track(userId="é" * 513))  # 513 characters, 1026 bytes
    assert "messageId" in refused(track(messageId="é" * 513))
    assert "userId" in refused(track(userId="a\x00b"))
    assert "messageId" in refused(track(messageId="a\x00b"))
    # a lone surrogate (from a JSON `\ud800`) is counted as its 3 bytes, not an error
    assert parsed(track(userId="\ud800" * 341)).contact == "\ud800" * 341
    assert "userId" in refused(track(userId="\ud800" * 342))


def test_a_message_id_may_be_a_number_but_not_true_or_an_object() -> None:
    assert parsed(track(messageId=42)).message_id == "42"
    assert parsed(track(messageId=1.5)).message_id == "1.5"
    assert parsed(track(messageId="m-1")).message_id == "m-1"
    assert parsed(track(messageId="")).message_id is None
    assert "messageId" in refused(track(messageId=True))
    assert "messageId" in refused(track(messageId=[1]))


def test_what_is_stored_for_each_kind_of_message() -> None:
    event = parsed(track(event="Order Completed", properties={"total": 3}))
    assert stored_body(event) == {"n": "order_completed", "p": {"total": 3}}
    assert stored_body(parsed(track(event="Signed Up"))) == {"n": "signed_up", "p": {}}
    assert stored_body(parsed(track(properties=None))) == {"n": "signed_up", "p": {}}
    page = parsed({"userId": "u1", "properties": {"path": "/"}}, "page")
    assert stored_body(page) == {"n": "page_viewed", "p": {"path": "/"}}
    screen = parsed({"type": "screen", "userId": "u1"})
    assert stored_body(screen) == {"n": "screen_viewed", "p": {}}
    identify = parsed({"type": "identify", "userId": "u1"})
    assert stored_body(identify) == {"n": None, "p": {}, "tr": {}}
    identify = parsed(
        {"userId": "u1", "traits": {"plan": "pro"}, "properties": {"x": 1}}, "identify"
    )
    assert stored_body(identify) == {"n": None, "p": {"x": 1}, "tr": {"plan": "pro"}}
    assert "event" in refused(track(event="!!!"))
    assert "event" in refused(track(event="  "))


def test_an_identify_s_context_traits_are_its_traits_and_its_own_traits_win() -> None:
    item = {
        "type": "identify",
        "userId": "u1",
        "traits": {"plan": "pro"},
        "context": {"traits": {"plan": "free", "email": "u1@example.com"}},
    }
    tr = stored_body(parsed(item))["tr"]
    assert tr == {"plan": "pro", "email": "u1@example.com"}
    # only an identify's: a track's context traits are the client's, not stored or checked
    assert stored_body(parsed(track(context={"traits": 1}))) == {"n": "signed_up", "p": {}}
    assert "traits" in refused({**item, "context": {"traits": [1]}})
    assert "context" in refused(track(context="x"))
    assert "traits" in refused({"type": "identify", "userId": "u1", "traits": [1]})


def test_alias_and_group_are_accepted_and_not_stored() -> None:
    for kind in ("alias", "group"):
        assert parse_message({"type": kind, "userId": "u1"}, None, RECEIVED, 0) is None
        assert parse_message({"type": kind}, None, RECEIVED, 0) is None  # (nothing checked)
    assert "type" in refused({"type": "purchase", "userId": "u1"})
    assert "type" in refused({"userId": "u1"})


def test_properties_and_traits_nest_as_deep_as_a_message_may() -> None:
    # the message is one level: its properties or traits may nest one level less
    deepest = nested(MAX_JSON_DEPTH - 1)
    assert stored_body(parsed(track(properties=deepest)))["p"] == deepest
    assert "properties" in refused(track(properties=nested(MAX_JSON_DEPTH)))
    identify = {"type": "identify", "userId": "u1"}
    assert stored_body(parsed({**identify, "traits": deepest}))["tr"] == deepest
    assert "traits" in refused({**identify, "traits": nested(MAX_JSON_DEPTH)})
    merged = {**identify, "context": {"traits": nested(MAX_JSON_DEPTH)}}
    assert "traits" in refused(merged)


def test_the_event_time_from_the_clients_clock() -> None:
    def t(**fields: Any) -> float:
        return parsed(track(**fields)).t

    sent, original = "2020-01-01T00:01:00Z", "2020-01-01T00:00:00Z"
    assert t(sentAt=sent, originalTimestamp=original) == RECEIVED - 60
    assert t(sentAt=sent) == RECEIVED  # either alone: the receive time
    assert t(originalTimestamp=original) == RECEIVED
    assert t() == RECEIVED
    assert "sentAt" in refused(track(sentAt="soon", originalTimestamp=original))
    assert "sentAt" in refused(track(sentAt="soon"))
    assert "originalTimestamp" in refused(track(sentAt=sent, originalTimestamp="then"))
    assert "originalTimestamp" in refused(track(originalTimestamp="then"))
    assert "timestamp" in refused(track(timestamp="0001-01-01T00:00:00Z"))
