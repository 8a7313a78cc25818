"""Documented behaviour that once survived a one-line change to the engine with the whole suite
green. Each test is written from the user's side (a script, an event log, the effects) and
names the change it catches, so that a regression turns CI red.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
from checking import check_text
from engine_run import identify, run, track

from leadlang.interpreter.check import CheckResult
from leadlang.interpreter.compile import compile_program
from leadlang.runtime.engine import Engine
from leadlang.runtime.simulate import read_events, simulate

MESSAGES = "".join(
    f'message {m}:\n  channel email\n  subject "{m}"\n  text "{m}"\n' for m in ("a", "b")
)


def _checked(tmp_path: Path, script: str) -> CheckResult:
    result = check_text(tmp_path, script)
    assert result.program is not None, [d.message for d in result.diagnostics]
    return result


def _effects(tmp_path: Path, script: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return run(_checked(tmp_path, script).program, events)  # type: ignore[arg-type]


def _internal_effects(
    tmp_path: Path, script: str, events: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The engine's own effects (with the send's `key`), and the compiled flows by name."""
    compiled = compile_program(_checked(tmp_path, script).program)  # type: ignore[arg-type]
    log = read_events(orjson.dumps(e) for e in events)
    assert not log.bad
    out: list[dict[str, Any]] = []
    simulate(Engine(compiled), log.events, log.events[-1].t + 30 * 86400, out.append, None, 1)
    return out, {f["name"]: f for f in compiled["flows"]}


def _brief(effects: list[dict[str, Any]], *keys: str) -> list[tuple[Any, ...]]:
    return [(e["at"], e["contact"], e["action"], *(e.get(k) for k in keys)) for e in effects]


def documented_key(contact: str, flow: str, version: str, number: int, step: str) -> str:
    """The send's idempotency key as docs/simulate.md spells it: sha256 over contact, flow,
    flow version, enrollment number and step, joined by U+001F; the first 32 hex digits."""
    raw = "\x1f".join((contact, flow, version, str(number), step))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


# Kills: running the `goal` pass before the `exit on` pass.
def test_an_event_that_is_both_exit_and_goal_exits(tmp_path: Path) -> None:
    script = (
        MESSAGES
        + """
flow f:
  on go
  goal bought
  exit on bought
  wait 1d
  send a
"""
    )
    events = [
        identify("u", "2025-01-01T00:00:00Z", email="u@x"),
        track("u", "go", "2025-01-01T00:00:00Z"),
        track("u", "bought", "2025-01-01T06:00:00Z"),
    ]
    assert _brief(_effects(tmp_path, script, events), "reason") == [
        ("2025-01-01T00:00:00Z", "u", "enter", None),
        ("2025-01-01T06:00:00Z", "u", "exit", "removed"),
    ]


# Kills: dropping the enrollment number (or any other documented field) from the key.
def test_the_send_key_is_the_documented_hash_and_differs_per_enrollment(tmp_path: Path) -> None:
    script = (
        MESSAGES
        + """
flow f:
  on go
  reenter always
  send a
"""
    )
    events = [
        identify("u", "2025-01-01T00:00:00Z", email="u@x"),
        track("u", "go", "2025-01-01T00:00:00Z"),
        track("u", "go", "2025-01-02T00:00:00Z"),
    ]
    effects, flows = _internal_effects(tmp_path, script, events)
    keys = [e["key"] for e in effects if e["action"] == "send"]
    version = flows["f"]["version"]
    assert keys == [documented_key("u", "f", version, n, "s0") for n in (1, 2)]
    assert keys[0] != keys[1]


# Kills: `>=` for `>` in the `within` test of goals (at exactly D the goal still counts).
def test_goal_within_counts_at_exactly_d_and_not_a_second_later(tmp_path: Path) -> None:
    script = (
        MESSAGES
        + """
flow f:
  on go
  goal bought within 1d
  wait 3d
  send a
"""
    )
    events = [
        identify("u", "2025-01-01T00:00:00Z", email="u@x"),
        identify("v", "2025-01-01T00:00:00Z", email="v@x"),
        track("u", "go", "2025-01-01T00:00:00Z"),
        track("v", "go", "2025-01-01T00:00:00Z"),
        track("u", "bought", "2025-01-02T00:00:00Z"),  # exactly 1d: counts
        track("v", "bought", "2025-01-02T00:00:01Z"),  # 1d and a second: too late
    ]
    effects = _effects(tmp_path, script, events)
    assert _brief([e for e in effects if e["contact"] == "u"], "reason") == [
        ("2025-01-01T00:00:00Z", "u", "enter", None),
        ("2025-01-02T00:00:00Z", "u", "goal", None),
        ("2025-01-02T00:00:00Z", "u", "exit", "goal"),
    ]
    assert _brief([e for e in effects if e["contact"] == "v"], "reason") == [
        ("2025-01-01T00:00:00Z", "v", "enter", None),
        ("2025-01-04T00:00:00Z", "v", "send", None),
        ("2025-01-04T00:00:00Z", "v", "exit", "done"),
    ]


# Kills: comparing consent events by timestamp alone (`unsubscribed` and `subscribed` at one
# instant: the one later in the log is the later one, as for every tie in section 7).
def test_unsubscribed_and_subscribed_at_one_instant_the_later_line_wins(tmp_path: Path) -> None:
    script = (
        MESSAGES
        + """
on go then send a
"""
    )
    at = "2025-01-01T10:00:00Z"
    events = [
        identify("resubscribed", "2025-01-01T00:00:00Z", email="r@x"),
        identify("unsubscribed", "2025-01-01T00:00:00Z", email="s@x"),
        track("resubscribed", "unsubscribed", at),
        track("resubscribed", "subscribed", at),
        track("unsubscribed", "subscribed", at),
        track("unsubscribed", "unsubscribed", at),
        track("resubscribed", "go", "2025-01-01T11:00:00Z"),
        track("unsubscribed", "go", "2025-01-01T11:00:00Z"),
    ]
    outcome = {
        e["contact"]: (e["action"], e.get("reason"))
        for e in _effects(tmp_path, script, events)
        if e["action"] in ("send", "skip")
    }
    assert outcome == {"resubscribed": ("send", None), "unsubscribed": ("skip", "unsubscribed")}


# Kills: matching status events by message name only (ignoring `message_id`).
def test_a_status_event_matches_by_message_id(tmp_path: Path) -> None:
    script = (
        MESSAGES
        + """
flow f:
  on go
  send a
  wait 1d
  if opened:
    tag "opened"
  else:
    tag "not_opened"
"""
    )
    _, flows = _internal_effects(tmp_path, script, [track("x", "go", "2025-01-01T00:00:00Z")])
    version = flows["f"]["version"]
    events = [
        identify(u, "2025-01-01T00:00:00Z", email=f"{u}@x") for u in ("by_id", "other_id")
    ] + [
        track("by_id", "go", "2025-01-01T00:00:00Z"),
        track("other_id", "go", "2025-01-01T00:00:00Z"),
        # The id of this contact's send of `a`, with no `message` name at all.
        track(
            "by_id",
            "message_opened",
            "2025-01-01T01:00:00Z",
            message_id=documented_key("by_id", "f", version, 1, "s0"),
        ),
        # Another contact's id: not this send.
        track(
            "other_id",
            "message_opened",
            "2025-01-01T01:00:00Z",
            message_id=documented_key("by_id", "f", version, 1, "s0"),
        ),
    ]
    tags = {
        e["contact"]: e["tag"] for e in _effects(tmp_path, script, events) if e["action"] == "tag"
    }
    assert tags == {"by_id": "opened", "other_id": "not_opened"}


# Kills: matching a status event by its `message` name when its `message_id` names another send.
def test_a_status_event_with_an_id_matches_only_the_send_with_that_id(tmp_path: Path) -> None:
    script = MESSAGES + "on go then send a ; wait 24h ; check opened else send b\n"
    _, flows = _internal_effects(tmp_path, script, [track("x", "go", "2025-01-01T00:00:00Z")])
    (flow,) = flows.values()
    ids = {
        "same_id": documented_key("same_id", flow["name"], flow["version"], 1, "s0"),
        "other_id": "some-other-send-0001",  # another send's id, with this message's name
        "empty_id": "",  # no id: matched by name
    }
    contacts = [*ids, "no_id"]
    events = [identify(u, "2025-01-01T00:00:00Z", email=f"{u}@x") for u in contacts]
    events += [track(u, "go", "2025-01-01T00:00:00Z") for u in contacts]
    for u in contacts:
        props: dict[str, Any] = {"message": "a"}
        if u in ids:
            props["message_id"] = ids[u]
        events.append(track(u, "message_opened", "2025-01-01T01:00:00Z", **props))
    sends = _brief(
        [e for e in _effects(tmp_path, script, events) if e.get("message") == "b"], "message"
    )
    assert sends == [("2025-01-02T00:00:00Z", "other_id", "send", "b")]


# Kills: `opened(MESSAGE)` matching by name an event whose `message_id` is another send's.
def test_opened_of_a_message_matches_an_event_with_an_id_by_the_id_alone(tmp_path: Path) -> None:
    script = (
        MESSAGES
        + """
flow f:
  on go
  send a
  send b
  wait 1d
  if opened(a):
    tag "opened_a"
  else:
    tag "not_opened_a"
"""
    )
    _, flows = _internal_effects(tmp_path, script, [track("x", "go", "2025-01-01T00:00:00Z")])
    version = flows["f"]["version"]

    def key(contact: str, step: str) -> str:
        return documented_key(contact, "f", version, 1, step)

    opens = {
        # the id of the send of `a`, under the other message's name: it is that send's event
        "a_by_id": {"message": "b", "message_id": key("a_by_id", "s0")},
        # the name `a` with the id of the send of `b`: that send's event, not `a`'s
        "b_by_id": {"message": "a", "message_id": key("b_by_id", "s1")},
        "a_by_name": {"message": "a"},
    }
    events = [identify(u, "2025-01-01T00:00:00Z", email=f"{u}@x") for u in opens]
    events += [track(u, "go", "2025-01-01T00:00:00Z") for u in opens]
    events += [track(u, "message_opened", "2025-01-01T01:00:00Z", **p) for u, p in opens.items()]
    tags = {
        e["contact"]: e["tag"] for e in _effects(tmp_path, script, events) if e["action"] == "tag"
    }
    assert tags == {"a_by_id": "opened_a", "b_by_id": "not_opened_a", "a_by_name": "opened_a"}


# Kills: falling back to UTC instead of the settings zone when the `timezone` trait is no zone.
def test_a_bad_timezone_trait_falls_back_to_the_settings_zone(tmp_path: Path) -> None:
    script = (
        MESSAGES
        + """
settings:
  timezone "America/New_York"
  quiet hours 21:00 to 08:00

on quiet then send a
on morning then wait until 09:00 ; send b
"""
    )
    events = [
        identify("u", "2025-01-01T00:00:00Z", email="u@x", timezone="Mars/Olympus_Mons"),
        # 02:30Z is 21:30 in New York (EST, UTC-5): deferred to 08:00 EST = 13:00Z
        # (UTC's own window would end at 08:00Z).
        track("u", "quiet", "2025-01-16T02:30:00Z"),
        # 12:00Z is 07:00 in New York: 09:00 EST is 14:00Z the same day (in UTC, 09:00 has
        # passed: the next day).
        track("u", "morning", "2025-01-20T12:00:00Z"),
    ]
    sends = [
        (e["at"], e["message"]) for e in _effects(tmp_path, script, events) if e["action"] == "send"
    ]
    assert sends == [("2025-01-16T13:00:00Z", "a"), ("2025-01-20T14:00:00Z", "b")]


# Kills: `hour * 3601` or `minute * 61` in the local second of day (a window's edges move).
def test_quiet_hours_start_inclusive_end_exclusive_to_the_second(tmp_path: Path) -> None:
    script = (
        MESSAGES
        + """
settings:
  quiet hours 21:00 to 08:00

on go then send a
"""
    )
    moments = {
        "before_start": "2025-01-15T20:59:59Z",  # sent at once
        "at_start": "2025-01-15T21:00:00Z",  # inside: 08:00 the next day
        "before_end": "2025-01-16T07:59:59Z",  # inside: 08:00 the same day
        "at_end": "2025-01-16T08:00:00Z",  # outside: sent at once
    }
    events = [identify(u, "2025-01-01T00:00:00Z", email=f"{u}@x") for u in moments]
    events += sorted(
        (track(u, "go", at) for u, at in moments.items()), key=lambda e: e["timestamp"]
    )
    sends = {
        e["contact"]: e["at"] for e in _effects(tmp_path, script, events) if e["action"] == "send"
    }
    assert sends == {
        "before_start": "2025-01-15T20:59:59Z",
        "at_start": "2025-01-16T08:00:00Z",
        "before_end": "2025-01-16T08:00:00Z",
        "at_end": "2025-01-16T08:00:00Z",
    }


# Kills: `<=` for `<` when `wait until` compares the candidate instant with now (now counts,
# including the second 01:30 of the night New York's clocks fall back), and a datetime
# target that is not waited for.
def test_wait_until_at_the_very_instant_continues_now(tmp_path: Path) -> None:
    script = (
        MESSAGES
        + """
settings:
  timezone "America/New_York"

on nine then wait until 09:00 ; send a
on half_past_one then wait until 01:30 ; send a
on later then wait until 2025-03-01T12:00:00Z ; send b
on past then wait until 2025-01-01T12:00:00Z ; send b
"""
    )
    events = [
        identify("u", "2025-01-01T00:00:00Z", email="u@x"),
        track("u", "nine", "2025-01-15T14:00:00Z"),  # 09:00 EST exactly
        track("u", "later", "2025-02-01T00:00:00Z"),
        track("u", "past", "2025-02-01T00:00:00Z"),
        # 05:30Z and 06:30Z on 2025-11-02 are the first (EDT) and second (EST) 01:30 of the night
        identify("v", "2025-01-01T00:00:00Z", email="v@x"),
        track("v", "half_past_one", "2025-11-02T05:30:00Z"),
        track("u", "half_past_one", "2025-11-02T06:30:00Z"),
    ]
    sends = [
        (e["at"], e["contact"], e["flow"])
        for e in _effects(tmp_path, script, events)
        if e["action"] == "send"
    ]
    assert sorted(sends) == [  # one-line flows are named FILESTEM:LINE
        ("2025-01-15T14:00:00Z", "u", "main:13"),
        ("2025-02-01T00:00:00Z", "u", "main:16"),
        ("2025-03-01T12:00:00Z", "u", "main:15"),
        ("2025-11-02T05:30:00Z", "v", "main:14"),
        ("2025-11-02T06:30:00Z", "u", "main:14"),
    ]


# Kills: `<` for `<=` where statuses are compared with the send (the event that caused a send
# did not arrive after it).
def test_the_open_that_triggers_a_send_is_not_an_open_of_that_send(tmp_path: Path) -> None:
    script = (
        MESSAGES
        + """
flow first:
  on go
  send a

flow again:
  on message_opened where message == "a"
  send a
  if opened:
    tag "opened_at_once"
  wait 1d
  if opened:
    tag "opened_later"
"""
    )
    events = [
        identify("u", "2025-01-01T00:00:00Z", email="u@x"),
        track("u", "go", "2025-01-01T00:00:00Z"),
        track("u", "message_opened", "2025-01-01T01:00:00Z", message="a"),
        track("u", "message_opened", "2025-01-01T02:00:00Z", message="a"),
    ]
    tags = [e["tag"] for e in _effects(tmp_path, script, events) if e["action"] == "tag"]
    assert tags == ["opened_later"]


# Kills: `opened` true with no send yet, or for a message this enrollment never sent. Also
# pins that an open of an earlier send of the same message is not one of the latest send.
def test_an_open_counts_only_for_a_send_it_came_after(tmp_path: Path) -> None:
    script = (
        MESSAGES
        + """
flow f:
  on go
  if opened:
    tag "before_any_send"
  send a
  wait 1d
  send a
  wait 1d
  if opened:
    tag "second_opened"
  if opened(b):
    tag "b_opened"
"""
    )
    events = [
        identify("u", "2025-01-01T00:00:00Z", email="u@x"),
        # an open of `b`, never sent, and one of `a` before the go: neither is about a send
        track("u", "message_opened", "2024-12-31T00:00:00Z", message="a"),
        track("u", "message_opened", "2024-12-31T00:00:00Z", message="b"),
        track("u", "go", "2025-01-01T00:00:00Z"),
        # the first send of `a` opened (by name), the second not
        track("u", "message_opened", "2025-01-01T01:00:00Z", message="a"),
        track("u", "message_opened", "2025-01-01T01:00:00Z", message="b"),
    ]
    effects = _effects(tmp_path, script, events)
    assert [e["tag"] for e in effects if e["action"] == "tag"] == []
    assert [(e["at"], e["action"]) for e in effects if e["action"] in ("send", "exit")] == [
        ("2025-01-01T00:00:00Z", "send"),
        ("2025-01-02T00:00:00Z", "send"),
        ("2025-01-03T00:00:00Z", "exit"),
    ]
