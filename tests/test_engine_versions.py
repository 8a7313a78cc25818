"""Flow versions in the engine (LANGUAGE.md section 5.1, `edits`): an enrollment runs on the
version of its flow it started on (`edits keep`), or moves to the program's version at the
step of the same id when the same wait goes on there (`edits migrate`); a flow a reload
removed runs its enrollments to their end; a version that is not loaded is asked for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from leadlang.interpreter.check import check_modules
from leadlang.interpreter.compile import compile_program
from leadlang.loader import LoadResult
from leadlang.runtime.effects import idempotency_key
from leadlang.runtime.engine import Engine, Event, UnknownVersion
from leadlang.runtime.state import Contact, contact_from_json, contact_to_json
from leadlang.source import Source
from leadlang.syntax import parse

DAY = 86400.0
T0 = 1_700_000_000.0

MESSAGES = """\
message first:
  channel email
  subject "first"
  text "first"

message a_later:
  channel email
  subject "a"
  text "a"

message b_later:
  channel email
  subject "b"
  text "b"

"""

V1 = (
    MESSAGES
    + """\
flow onboard:
  on started
  exit on stop
  send first
  wait 1d
  send a_later
"""
)
V2 = V1.replace("send a_later", "send b_later")
V2_MIGRATE = V2.replace("  on started\n", "  on started\n  edits migrate\n")


def ir_of(text: str) -> dict[str, Any]:
    source = Source("t.lead", text)
    module, syntax = parse(source)
    result = check_modules(LoadResult([module], {"t.lead": source}, syntax))
    assert result.program is not None, result.diagnostics
    return compile_program(result.program)


def event(t: float, name: str, order: int = 1, contact: str = "c1") -> Event:
    return Event(t, order, contact, name, {}, {"email": f"{contact}@example.com"})


def entered(ir: dict[str, Any]) -> Contact:
    """A contact that entered `onboard` on the engine of `ir` and waits at `wait 1d`."""
    contact = Contact("c1")
    effects = Engine(ir).on_event(contact, event(T0, "started"))
    assert [e["action"] for e in effects] == ["enter", "send"]
    assert contact.enrollments["onboard"].state == "s1"
    return contact


def sends(effects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["message"], e["key"]) for e in effects if e["action"] == "send"]


def reloaded(old: dict[str, Any], new: dict[str, Any]) -> Engine:
    """The engine after a reload from `old` to `new`, made as serve makes it (the processor's
    `follow` and the reload route): the engine before gives its successor."""
    return Engine(old).successor(new)


def key(ir: dict[str, Any], step: str = "s2") -> str:
    return idempotency_key("c1", "onboard", ir["flows"][0]["version"], 1, step)


def test_edits_keep_finishes_on_the_version_it_started_on() -> None:
    v1, v2 = ir_of(V1), ir_of(V2)
    assert v1["flows"][0]["version"] != v2["flows"][0]["version"]
    contact = entered(v1)
    engine = reloaded(v1, v2)
    assert sends(engine.on_time(contact, T0 + DAY)) == [("a_later", key(v1))]
    # a contact entering now runs the new version
    other = Contact("c2")
    effects = engine.on_event(other, event(T0, "started", 1, "c2"))
    assert other.enrollments["onboard"].version == v2["flows"][0]["version"]
    assert [e["message"] for e in effects if e["action"] == "send"] == ["first"]
    assert [e["message"] for e in engine.on_time(other, T0 + DAY) if e.get("message")] == [
        "b_later"
    ]


def test_edits_migrate_moves_a_waiting_contact_at_the_same_step() -> None:
    v1, v2 = ir_of(V1), ir_of(V2_MIGRATE)
    contact = entered(v1)
    engine = reloaded(v1, v2)
    assert sends(engine.on_time(contact, T0 + DAY)) == [("b_later", key(v2))]


def test_migration_happens_at_the_contacts_next_instant_and_keeps_the_deadline() -> None:
    v1, v2 = ir_of(V1), ir_of(V2_MIGRATE.replace("wait 1d", "wait 3d"))
    contact = entered(v1)
    engine = reloaded(v1, v2)
    engine.on_event(contact, event(T0 + 3600, "browsed", 2))
    enr = contact.enrollments["onboard"]
    assert (enr.version, enr.deadline) == (v2["flows"][0]["version"], T0 + DAY)
    assert contact.wake == T0 + DAY
    assert sends(engine.on_time(contact, T0 + DAY)) == [("b_later", key(v2))]


@pytest.mark.parametrize(
    "edited",
    [
        # the step of the same id is now another kind: the wait cannot go on there
        V2_MIGRATE.replace("  wait 1d\n", "  check score > 5\n"),
        # the step is gone
        V2_MIGRATE.replace("  wait 1d\n  send b_later\n", "  send b_later\n"),
    ],
)
def test_edits_migrate_keeps_the_old_version_when_the_step_cannot_take_it(edited: str) -> None:
    v1, v2 = ir_of(V1), ir_of(edited)
    contact = entered(v1)
    engine = reloaded(v1, v2)
    assert sends(engine.on_time(contact, T0 + DAY)) == [("a_later", key(v1))]
    assert "onboard" not in contact.enrollments


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('plan == "max"', 'plan == "pro"'),  # a trait
        ("count(ping within 1d) >= 2", "count(ping within 1d) >= 1"),  # a window
        ("score >= 10", "score >= 1"),  # the score
    ],
)
def test_a_check_migrated_to_a_condition_that_holds_goes_on_at_that_instant(
    old: str, new: str
) -> None:
    """The contact waits at `check OLD`; the edit makes it `check NEW`, which holds already.
    At its next instant (an event that changes nothing the check reads) it moves and the
    new condition is judged, as when a flow comes to a check: it goes on there, not at the
    deadline (a trait's check waited the 3 days; a window's or the score's did not)."""

    def version(cond: str, edits: str) -> dict[str, Any]:
        return ir_of(
            MESSAGES
            + "trait plan: text\nscore:\n  ping +5\n"
            + f"flow onboard:\n  on started\n{edits}  check {cond} within 3d else:\n"
            + "    send a_later\n  send b_later\n"
        )

    v1, v2 = version(old, ""), version(new, "  edits migrate\n")
    contact = Contact("c1")
    engine = Engine(v1)
    engine.on_event(contact, Event(T0, 1, "c1", "ping", {}, {"plan": "pro"}))
    assert sends(engine.on_event(contact, event(T0 + 60, "started", 2))) == []
    assert contact.enrollments["onboard"].wait == "check"
    engine = reloaded(v1, v2)
    effects = engine.on_event(contact, event(T0 + 600, "browsed", 3))
    assert sends(effects) == [("b_later", key(v2, "s1"))]
    assert [e["action"] for e in effects] == ["send", "exit"]


def test_a_send_held_by_quiet_hours_migrates_and_sends_the_new_versions_message() -> None:
    """`edits migrate` moves an enrollment waiting at a `send` for the quiet hours to end
    (T0 is 22:13 UTC) to the new version's step of the same id: at 08:00 it sends what the
    new version sends there."""
    quiet = 'settings:\n  timezone "UTC"\n  quiet hours 21:00 to 08:00\n\n'
    flow = "flow onboard:\n  on started\n  edits migrate\n  send {}\n"
    v1 = ir_of(quiet + MESSAGES + flow.format("first"))
    v2 = ir_of(quiet + MESSAGES + flow.format("b_later"))
    contact = Contact("c1")
    assert [e["action"] for e in Engine(v1).on_event(contact, event(T0, "started"))] == ["enter"]
    morning = datetime.fromtimestamp(T0, UTC).replace(hour=8, minute=0, second=0) + timedelta(1)
    assert contact.wake == morning.timestamp()
    engine = reloaded(v1, v2)
    assert sends(engine.on_time(contact, morning.timestamp())) == [("b_later", key(v2, "s0"))]


def test_a_removed_flow_runs_its_enrollments_to_their_end() -> None:
    v1 = ir_of(V1)
    v2 = ir_of(MESSAGES + "flow other:\n  on started\n  send first\n")
    engine = reloaded(v1, v2)
    contact = entered(v1)
    assert engine.retired == ["onboard"]
    assert sends(engine.on_time(contact, T0 + DAY)) == [("a_later", key(v1))]
    # and its exit clauses still hold
    contact = entered(v1)
    effects = engine.on_event(contact, event(T0 + 60, "stop", 2))
    assert [(e["action"], e.get("flow"), e.get("reason")) for e in effects] == [
        ("exit", "onboard", "removed")
    ]


def test_a_version_not_loaded_is_asked_for() -> None:
    v1, v2 = ir_of(V1), ir_of(V2)
    contact = entered(v1)
    engine = Engine(v2)
    with pytest.raises(UnknownVersion) as caught:
        engine.on_time(contact, T0 + DAY)
    assert (caught.value.flow, caught.value.version) == ("onboard", v1["flows"][0]["version"])
    engine.add_version(v1["flows"][0])
    contact = entered(v1)
    assert sends(engine.on_time(contact, T0 + DAY)) == [("a_later", key(v1))]


def test_a_migrated_time_wait_goes_on_with_the_steps_the_new_version_has_after_it() -> None:
    """The wait's next step is the new version's: here the old version ended after the wait,
    the new one sends a follow-up there."""
    old = V1.replace("  send a_later\n", "")
    v1, v2 = ir_of(old), ir_of(V2_MIGRATE)
    contact = entered(v1)
    assert contact.enrollments["onboard"].resume is None  # the old version ends after it
    engine = reloaded(v1, v2)
    assert sends(engine.on_time(contact, T0 + DAY)) == [("b_later", key(v2))]
    assert "onboard" not in contact.enrollments


def test_edits_migrate_moves_a_contact_waiting_at_a_wait_until() -> None:
    """serve.md, Editing live flows: a `wait until` is a time wait like `wait`, so a contact
    waiting at one moves to the new version's step of the same id and, when the (unchanged)
    instant comes, goes on with the new version's next step. T0 is 22:13 UTC: the wait ends
    at 09:00 UTC the next day."""
    until = 'settings:\n  timezone "UTC"\n\n' + V1.replace("  wait 1d\n", "  wait until 09:00\n")
    v1 = ir_of(until)
    v2 = ir_of(
        until.replace("send a_later", "send b_later").replace(
            "  on started\n", "  on started\n  edits migrate\n"
        )
    )
    contact = entered(v1)
    nine = datetime.fromtimestamp(T0, UTC).replace(hour=9, minute=0, second=0) + timedelta(1)
    assert contact.wake == nine.timestamp()
    engine = reloaded(v1, v2)
    assert sends(engine.on_time(contact, nine.timestamp())) == [("b_later", key(v2))]
    assert "onboard" not in contact.enrollments


def test_a_contact_finishes_on_its_version_after_two_reloads() -> None:
    """Each reload adopts every version the engine before it had loaded, not only the
    program's: a contact that started two edits ago still finishes on its version."""
    v1, v2 = ir_of(V1), ir_of(V2)
    v3 = ir_of(V1.replace("send a_later", "send first"))
    contact = entered(v1)
    engine = Engine(v3)
    engine.adopt_versions(reloaded(v1, v2))
    assert sends(engine.on_time(contact, T0 + DAY)) == [("a_later", key(v1))]


SCORED = "score:\n  started +10\n\n"


def test_an_older_versions_when_trigger_is_loaded_but_never_enrolls() -> None:
    old = SCORED + V1.replace("  on started\n", "  when score >= 10\n")
    v1, v2 = ir_of(old), ir_of(old.replace("send a_later", "send b_later"))
    contact = Contact("c1")
    Engine(v1).on_event(contact, event(T0, "started"))
    assert contact.enrollments["onboard"].version == v1["flows"][0]["version"]
    engine = reloaded(v1, v2)
    assert sends(engine.on_time(contact, T0 + DAY)) == [("a_later", key(v1))]
    # a contact meeting the trigger now enters the new version, once
    other = Contact("c2")
    effects = engine.on_event(other, event(T0, "started", 1, "c2"))
    assert [(e["action"], e.get("message")) for e in effects] == [
        ("enter", None),
        ("send", "first"),
    ]
    assert other.enrollments["onboard"].version == v2["flows"][0]["version"]


def test_an_older_version_keeps_the_event_history_its_conditions_read() -> None:
    """The old version counts `clicked`, which the new program never mentions: the engine
    still keeps those events for the contacts finishing on the old version."""
    old = V1.replace(
        "  wait 1d\n", "  check count(clicked within 7d) >= 1 within 2d else send b_later\n"
    )
    v1 = ir_of(old)
    v2 = ir_of(MESSAGES + "flow onboard:\n  on started\n  send first\n")
    contact = entered(v1)
    assert contact.enrollments["onboard"].wait == "check"
    engine = reloaded(v1, v2)
    assert sends(engine.on_event(contact, event(T0 + 3600, "clicked", 2))) == [("a_later", key(v1))]


def test_loading_an_older_version_keeps_the_programs_time_driven_triggers() -> None:
    """After a reload that loaded an older version (with a condition of its own), a decaying
    score still fires the program's `when score < N` at the decay instant."""
    decaying = "score:\n  started +10\n  decay 5 every 1d idle\n\n"
    low = '\nflow low:\n  when score < 8\n  tag "low"\n'
    old = decaying + V1.replace("  exit on stop\n", "  exit when score > 100\n") + low
    v1, v2 = ir_of(old), ir_of(decaying + V2 + low)
    contact = entered(v1)
    engine = reloaded(v1, v2)
    effects = engine.on_time(contact, T0 + DAY)
    assert [(e["action"], e.get("tag")) for e in effects if e["action"] == "tag"] == [
        ("tag", "low")
    ]
    assert sends(effects) == [("a_later", key(v1))]


def test_edits_apply_flow_by_flow_to_a_contact_in_several_flows() -> None:
    """One contact in four edited flows, the first three of which stay where they are: a
    flow that keeps, one the reload removed, one whose step is now a check (migrate); the
    fourth migrates."""

    def flows(names: list[str], last: str, migrate: set[str], check: set[str]) -> str:
        text = MESSAGES
        for flow in names:
            text += f"flow {flow}:\n  on started\n"
            text += "  edits migrate\n" if flow in migrate else ""
            text += "  send first\n"
            text += "  check score > 5\n" if flow in check else "  wait 1d\n"
            text += f"  send {last}\n\n"
        return text

    names = ["keeps", "gone", "stuck", "onboard"]
    v1 = ir_of(flows(names, "a_later", set(), set()))
    v2 = ir_of(flows(["keeps", "stuck", "onboard"], "b_later", {"stuck", "onboard"}, {"stuck"}))
    contact = Contact("c1")
    Engine(v1).on_event(contact, event(T0, "started"))
    assert list(contact.enrollments) == names
    engine = reloaded(v1, v2)
    effects = engine.on_time(contact, T0 + DAY)
    old = {f["name"]: f["version"] for f in v1["flows"]}
    new = {f["name"]: f["version"] for f in v2["flows"]}
    assert sorted((e["flow"], e["message"], e["key"]) for e in effects if "key" in e) == [
        ("gone", "a_later", idempotency_key("c1", "gone", old["gone"], 1, "s2")),
        ("keeps", "a_later", idempotency_key("c1", "keeps", old["keeps"], 1, "s2")),
        ("onboard", "b_later", idempotency_key("c1", "onboard", new["onboard"], 1, "s2")),
        ("stuck", "a_later", idempotency_key("c1", "stuck", old["stuck"], 1, "s2")),
    ]


def test_the_exit_clauses_are_those_of_the_version_the_contact_runs_on() -> None:
    v1, v2 = ir_of(V1), ir_of(V2.replace("exit on stop", "exit on cancel"))
    engine = reloaded(v1, v2)
    contact = entered(v1)
    assert engine.on_event(contact, event(T0 + 60, "cancel", 2)) == []
    effects = engine.on_event(contact, event(T0 + 120, "stop", 3))
    assert [(e["action"], e.get("reason")) for e in effects] == [("exit", "removed")]
    # a contact on the program's version leaves on the program's clause
    other = Contact("c2")
    engine.on_event(other, event(T0, "started", 1, "c2"))
    assert engine.on_event(other, event(T0 + 60, "stop", 2, "c2")) == []
    effects = engine.on_event(other, event(T0 + 120, "cancel", 3, "c2"))
    assert [(e["action"], e.get("reason")) for e in effects] == [("exit", "removed")]


def test_a_when_flow_a_reload_adds_enrolls_at_the_contacts_next_instant_even_a_timer() -> None:
    """A trigger a contact was never evaluated for is evaluated at its next instant, also a
    time-driven one, and enrolls it when it holds (the first evaluation is a rising edge),
    here for a condition time can both raise and lower. (T0 is 2023-11-14T22:13:20Z.)"""
    added = (
        "\nflow late:\n  when now >= 2023-11-15T12:00:00Z and now < 2023-11-20T00:00:00Z\n"
        '  tag "late"\n'
    )
    v1, v2 = ir_of(V1), ir_of(V1 + added)
    contact = entered(v1)
    engine = reloaded(v1, v2)
    effects = engine.on_time(contact, T0 + DAY)
    assert [(e["action"], e.get("flow")) for e in effects if e["action"] == "enter"] == [
        ("enter", "late")
    ]


WHEN_A = """\
score:
  started +10

flow a:
  when score >= 5
  reenter always
  tag "a"
"""


@pytest.mark.parametrize(
    ("before", "after", "entered_then"),
    [
        # a flow added before `a`: its trigger has no last value yet, so it enters; `a` held
        ("", 'flow b:\n  when score >= 1\n  tag "b"\n\n', ["b"]),
        # a flow removed before `a`: `a` keeps its own last value (true): no second entry
        ('flow x:\n  when score >= 100\n  tag "x"\n\n', "", []),
    ],
)
def test_when_triggers_keep_their_last_values_across_a_reload(
    before: str, after: str, entered_then: list[str]
) -> None:
    """A contact's last value of each `when` trigger is stored by trigger (flow and
    condition), not by its position in the program, which a reload renumbers."""
    old, new = ir_of(before + WHEN_A), ir_of(after + WHEN_A)
    contact = Contact("c1")
    first = Engine(old)
    effects = first.on_event(contact, event(T0, "started"))
    assert [e["flow"] for e in effects if e["action"] == "enter"] == ["a"]
    stored = orjson.loads(orjson.dumps(contact_to_json(contact, first.trigger_names)))
    engine = reloaded(old, new)
    contact = contact_from_json(stored, engine.trigger_ids)
    effects = engine.on_event(contact, event(T0 + 60, "started", 2))
    assert [e["flow"] for e in effects if e["action"] == "enter"] == entered_then
