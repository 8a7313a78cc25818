"""Engine invariants under generated event logs (hypothesis; kept small to stay fast)."""

from __future__ import annotations

import hashlib
from typing import Any

from engine_build import (
    S,
    b,
    call,
    dur,
    flow,
    ident,
    name,
    num,
    on,
    program,
    rule,
    send,
    wait,
    when,
)
from engine_run import run, track
from hypothesis import given, settings
from hypothesis import strategies as st

from leadlang import ast

D = 86400
BASE = 1_735_689_600  # 2025-01-01T00:00:00Z


def _program() -> Any:
    check = ast.Check(cond=name("opened"), within=dur(D), else_=(send("final"),), span=S)
    goal = ast.Goal(event=ast.EventRef(name="order", span=S), where=None, within=None, span=S)
    leave = ast.ExitOn(event=ast.EventRef(name="stop", span=S), where=None, span=S)
    again = ast.Reenter(mode="always", after=None, span=S)
    arms = (
        ast.SplitArm(percent=num(0.3, True), name=None, steps=(send("a"),), span=S),
        ast.SplitArm(percent=num(0.7, True), name=None, steps=(wait(3600), send("b")), span=S),
    )
    return program(
        rules=[rule("visit", 10), rule("order", 30)],
        decay=(10, 2 * D, False),
        messages={m: "email" for m in ("deal", "final", "a", "b", "hi")},
        flows=[
            flow(
                "hot",
                [when(b(">", name("score"), num(30))), again, goal, leave],
                [send("deal"), check],
            ),
            flow(
                "ab", [on("visit"), again, leave], [ast.Split(name=ident("t"), arms=arms, span=S)]
            ),
            flow(
                "lapsed",
                [when(b("==", call("count", name("visit"), within=dur(D)), num(0))), again],
                [send("hi")],
            ),
        ],
    )


PROGRAM = _program()
EVENT_NAMES = ["visit", "visit", "visit", "order", "stop", "message_opened"]


@st.composite
def logs(draw: Any) -> list[dict[str, Any]]:
    users = draw(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=4, unique=True))
    events: list[dict[str, Any]] = []
    for user in users:
        events.append(
            {
                "type": "identify",
                "userId": user,
                "traits": {"email": f"{user}@x"},
                "timestamp": _at(0),
            }
        )
        offsets = draw(st.lists(st.integers(0, 6 * D // 600), min_size=1, max_size=12))
        for offset in sorted(offsets):
            event = draw(st.sampled_from(EVENT_NAMES))
            props = {"message": "deal"} if event == "message_opened" else {}
            events.append(track(user, event, _at(offset * 600), **props))
    return events


def _at(seconds: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(BASE + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _per_contact(effects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for effect in effects:
        out.setdefault(effect["contact"], []).append(effect)
    return out


@settings(max_examples=25, deadline=None)
@given(logs(), st.randoms(use_true_random=False))
def test_interleaving_other_contacts_changes_nothing(
    events: list[dict[str, Any]], rnd: Any
) -> None:
    # Shuffle, then restore each contact's own order: only the interleaving changes.
    shuffled = events[:]
    rnd.shuffle(shuffled)
    by_user: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_user.setdefault(e["userId"], []).append(e)
    cursor = {u: iter(v) for u, v in by_user.items()}
    interleaved = [next(cursor[e["userId"]]) for e in shuffled]
    assert _per_contact(run(PROGRAM, events)) == _per_contact(run(PROGRAM, interleaved))


@settings(max_examples=25, deadline=None)
@given(logs())
def test_enrollments_alternate_nothing_happens_outside_them_and_triggers_enroll(
    events: list[dict[str, Any]],
) -> None:
    effects = run(PROGRAM, events)
    active: set[tuple[str, str]] = set()
    for effect in effects:
        key = (effect["contact"], effect.get("flow", ""))
        if effect["action"] == "enter":
            assert key not in active, "two active enrollments in one flow"
            active.add(key)
        elif effect["action"] == "exit":
            assert key in active, "exit without enter"
            active.discard(key)
        else:
            assert key in active, f"{effect} outside an enrollment"
    # And contacts who meet a trigger do enter (an engine that emits nothing fails here):
    # each contact's first input evaluates `lapsed`'s `when` for the first time, and it holds
    # (no visit in the last day), so that is a rising edge; each contact's first `visit`
    # enrolls it in `ab`, where it has never been.
    enters = {(e["contact"], e["flow"], e["at"]) for e in effects if e["action"] == "enter"}
    first_input: dict[str, str] = {}
    first_visit: dict[str, str] = {}
    for event in events:
        first_input.setdefault(event["userId"], event["timestamp"])
        if event.get("event") == "visit":
            first_visit.setdefault(event["userId"], event["timestamp"])
    for contact, at in first_input.items():
        assert (contact, "lapsed", at) in enters, f"{contact} did not enter `lapsed` at {at}"
    for contact, at in first_visit.items():
        assert (contact, "ab", at) in enters, f"{contact} did not enter `ab` at {at}"


@settings(max_examples=10, deadline=None)
@given(logs())
def test_rerunning_gives_identical_output(events: list[dict[str, Any]]) -> None:
    assert run(PROGRAM, events) == run(PROGRAM, events)


@settings(max_examples=10, deadline=None)
@given(logs(), st.integers(2, 3))
def test_sharing_contacts_among_processes_changes_no_effect_nor_its_place(
    events: list[dict[str, Any]], workers: int
) -> None:
    """`simulate --workers N`: each process runs a share of the contacts; the merged output
    is the single-process output, in the same order."""
    assert run(PROGRAM, events, workers=workers) == run(PROGRAM, events)


def test_split_shares_converge_to_the_declared_percents() -> None:
    users = [f"contact-{i}" for i in range(3000)]
    events = [track(u, "visit", _at(0)) for u in users]
    arms = [e["arm"] for e in run(PROGRAM, events, until="+1s") if e["action"] == "split"]
    assert len(arms) == len(users)
    share_a = arms.count("a") / len(arms)
    assert abs(share_a - 0.3) < 0.03
    # and each arm is the one the normative formula gives
    first = hashlib.sha256(f"{users[0]}/ab/t".encode()).digest()
    assert arms[0] == ("a" if int.from_bytes(first[:8], "big") / 2**64 < 0.3 else "b")


def test_split_edges_are_compared_exactly(monkeypatch: Any) -> None:
    """0.1 + 0.2 is 0.30000000000000004 in floats: a contact with u just at 0.3 belongs to the
    third arm (the cumulative 30% does not exceed u), not the second."""
    from leadlang.runtime import engine as engine_module

    n = -(-3 * 2**64 // 10)  # the least n with n / 2**64 >= 0.3
    digest = n.to_bytes(8, "big") + bytes(24)

    class Fixed:
        def __init__(self, data: bytes) -> None:
            pass

        def digest(self) -> bytes:
            return digest

    arms = [{"name": name, "percent": p} for name, p in (("a", 0.1), ("b", 0.2), ("c", 0.7))]
    monkeypatch.setattr(engine_module.hashlib, "sha256", Fixed)
    assert engine_module.split_arm("x", "f", "s", arms)["name"] == "c"
    digest = (n - 1).to_bytes(8, "big") + bytes(24)  # just below 0.3: the second arm
    assert engine_module.split_arm("x", "f", "s", arms)["name"] == "b"
