"""Flow semantics: triggers, exits, goals, reenter, waits, checks, branches, splits, statuses
(LANGUAGE.md sections 5 and 7). Expected effects are worked out by hand from the spec."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
from checking import check_text
from engine_build import S, attr, b, dur, flow, ident, name, num, on, program, s, send, wait, when
from engine_run import actions, identify, run, run_text, track

from leadlang import ast
from leadlang.interpreter.compile import compile_program
from leadlang.runtime.engine import Engine
from leadlang.runtime.simulate import parse_until, read_events, simulate

D = 86400


def _reenter(mode: str, after: int | None = None) -> ast.Reenter:
    return ast.Reenter(mode=mode, after=dur(after) if after else None, span=S)  # type: ignore[arg-type]


def _who(*users: str) -> list[dict[str, object]]:
    return [identify(u, "2025-01-01T00:00:00Z", email=f"{u}@x") for u in users]


def test_split_follows_the_normative_hash() -> None:
    arms = (
        ast.SplitArm(percent=num(0.5, True), name=None, steps=(send("a"),), span=S),
        ast.SplitArm(percent=num(0.5, True), name=ident("promo"), steps=(send("b"),), span=S),
    )
    split = ast.Split(name=ident("subject"), arms=arms, span=S)
    prog = program(messages={"a": "email", "b": "email"}, flows=[flow("f", [on("go")], [split])])
    users = [f"user{i}" for i in range(20)]
    events = _who(*users) + [track(u, "go", "2025-01-02T00:00:00Z") for u in users]
    effects = run(prog, events)
    for u in users:
        digest = hashlib.sha256(f"{u}/f/subject".encode()).digest()
        arm = "a" if int.from_bytes(digest[:8], "big") / 2**64 < 0.5 else "promo"
        mine = [e for e in effects if e["contact"] == u]
        # each assignment is a `split` effect with its flow, split and arm (section 9)
        splits = [(e["flow"], e["split"], e["arm"]) for e in mine if e["action"] == "split"]
        assert splits == [("f", "subject", arm)]
        sent = [e for e in mine if e["action"] == "send"]
        assert sent[0]["message"] == ("a" if arm == "a" else "b")
        assert sent[0]["step"] == ("s0.a.0" if arm == "a" else "s0.promo.0")


def test_goal_within_and_exit_on() -> None:
    goal = ast.Goal(event=ast.EventRef(name="order", span=S), where=None, within=dur(2 * D), span=S)
    leave = ast.ExitOn(event=ast.EventRef(name="unsubscribed", span=S), where=None, span=S)
    prog = program(
        messages={"m": "email"},
        flows=[flow("f", [on("go"), goal, leave], [wait(10 * D), send("m")])],
    )
    events = [
        *_who("a", "b", "c"),
        *(track(u, "go", "2025-01-02T00:00:00Z") for u in "abc"),
        track("a", "order", "2025-01-03T00:00:00Z"),  # within 2d: goal
        track("b", "order", "2025-01-05T00:00:00Z"),  # too late: ignored, flow goes on
        track("c", "unsubscribed", "2025-01-03T00:00:00Z"),
    ]
    effects = run(prog, events)
    by = {u: actions([e for e in effects if e["contact"] == u], "reason") for u in "abc"}
    assert by["a"] == [
        ("2025-01-02T00:00:00Z", "enter", None),
        ("2025-01-03T00:00:00Z", "goal", None),
        ("2025-01-03T00:00:00Z", "exit", "goal"),
    ]
    assert by["b"][-2:] == [
        ("2025-01-12T00:00:00Z", "send", None),
        ("2025-01-12T00:00:00Z", "exit", "done"),
    ]
    assert by["c"] == [
        ("2025-01-02T00:00:00Z", "enter", None),
        ("2025-01-03T00:00:00Z", "exit", "removed"),
    ]


def test_reenter_modes() -> None:
    def enters(mode: str, after: int | None = None) -> list[str]:
        prog = program(
            messages={"m": "email"}, flows=[flow("f", [on("go"), _reenter(mode, after)], [wait(D)])]
        )
        days = ["2025-01-02", "2025-01-02T12:00", "2025-01-03T06:00", "2025-01-06"]
        events = _who("u") + [
            track("u", "go", d + ("T00:00:00Z" if len(d) == 10 else ":00Z")) for d in days
        ]
        return [e["at"] for e in run(prog, events) if e["action"] == "enter"]

    assert enters("never") == ["2025-01-02T00:00:00Z"]
    # always: not while enrolled (12:00 is inside the 1d wait), again once it ended.
    assert enters("always") == [
        "2025-01-02T00:00:00Z",
        "2025-01-03T06:00:00Z",
        "2025-01-06T00:00:00Z",
    ]
    # after 3d since the last entry.
    assert enters("after", 3 * D) == ["2025-01-02T00:00:00Z", "2025-01-06T00:00:00Z"]


def test_wait_for_binds_the_event_or_times_out_to_else() -> None:
    wait_for = ast.WaitFor(
        event=ast.EventRef(name="subscribed_service", span=S),
        where=None,
        up_to=dur(7 * D),
        else_=(send("reminder"),),
        span=S,
    )
    branch = ast.If(
        branches=(
            ast.Branch(
                cond=b("==", attr(name("event"), "service"), s("sms")),
                steps=(send("sms_info"),),
                span=S,
            ),
        ),
        else_=(send("other_info"),),
        span=S,
    )
    prog = program(
        messages={"reminder": "email", "sms_info": "email", "other_info": "email"},
        flows=[flow("f", [on("go")], [wait_for, branch])],
    )
    events = [
        *_who("a", "b"),
        track("a", "go", "2025-01-02T00:00:00Z"),
        track("b", "go", "2025-01-02T00:00:00Z"),
        track("a", "Subscribed Service", "2025-01-04T00:00:00Z", service="sms"),
    ]
    effects = run(prog, events)
    a = actions([e for e in effects if e["contact"] == "a"], "step", "message")
    assert a == [
        ("2025-01-02T00:00:00Z", "enter", None, None),
        ("2025-01-04T00:00:00Z", "send", "s1.then.0", "sms_info"),
        ("2025-01-04T00:00:00Z", "exit", None, None),
    ]
    b_ = actions([e for e in effects if e["contact"] == "b"], "step", "message")
    assert b_[1:] == [
        ("2025-01-09T00:00:00Z", "send", "s0.else.0", "reminder"),
        ("2025-01-09T00:00:00Z", "exit", None, None),
    ]


def test_check_within_holds_later_or_runs_else() -> None:
    check = ast.Check(cond=name("opened"), within=dur(2 * D), else_=(send("final"),), span=S)
    prog = program(
        messages={"deal": "email", "final": "email", "thanks": "email"},
        flows=[flow("f", [on("go")], [send("deal"), check, send("thanks")])],
    )
    opened = {"message": "deal"}
    events = [
        *_who("a", "b", "c"),
        *(track(u, "go", "2025-01-02T00:00:00Z") for u in "abc"),
        track("a", "message_opened", "2025-01-03T00:00:00Z", **opened),  # within 2d
        track("b", "message_opened", "2025-01-05T00:00:00Z", **opened),  # too late
        track("c", "message_opened", "2025-01-01T12:00:00Z", **opened),  # before the send
    ]
    effects = run(prog, events)

    def sends(u: str) -> list[tuple[object, ...]]:
        return [
            (e["at"], e["message"]) for e in effects if e["contact"] == u and e["action"] == "send"
        ]

    assert sends("a") == [("2025-01-02T00:00:00Z", "deal"), ("2025-01-03T00:00:00Z", "thanks")]
    assert sends("b") == [("2025-01-02T00:00:00Z", "deal"), ("2025-01-04T00:00:00Z", "final")]
    assert sends("c") == sends("b")


def test_exit_step_and_tags() -> None:
    steps = [ast.Tag(tag=s("vip"), span=S), ast.ExitStep(span=S), send("never")]
    prog = program(messages={"never": "email"}, flows=[flow("f", [on("go")], steps)])
    effects = run(prog, [*_who("u"), track("u", "go", "2025-01-02T00:00:00Z")])
    assert actions(effects, "flow", "tag", "reason") == [
        ("2025-01-02T00:00:00Z", "enter", "f", None, None),
        ("2025-01-02T00:00:00Z", "tag", "f", "vip", None),
        ("2025-01-02T00:00:00Z", "exit", "f", None, "exit"),
    ]


def test_a_tag_set_by_one_flow_triggers_another_in_the_same_instant() -> None:
    tagger = flow("tagger", [on("go")], [ast.Tag(tag=s("vip"), span=S)])
    vip = flow("vip", [when(b("in", s("vip"), name("tags")))], [send("m")])
    prog = program(messages={"m": "email"}, flows=[tagger, vip])
    effects = run(prog, [*_who("u"), track("u", "go", "2025-01-02T00:00:00Z")])
    assert actions(effects, "flow") == [
        ("2025-01-02T00:00:00Z", "enter", "tagger"),
        ("2025-01-02T00:00:00Z", "tag", "tagger"),
        ("2025-01-02T00:00:00Z", "exit", "tagger"),
        ("2025-01-02T00:00:00Z", "enter", "vip"),
        ("2025-01-02T00:00:00Z", "send", "vip"),
        ("2025-01-02T00:00:00Z", "exit", "vip"),
    ]


def test_enroll_starts_another_flow_with_the_event_binding() -> None:
    target = flow(
        "target",
        [],
        [
            ast.If(
                branches=(
                    ast.Branch(
                        cond=b(">", attr(name("event"), "total"), num(10)),
                        steps=(send("big"),),
                        span=S,
                    ),
                ),
                else_=None,
                span=S,
            )
        ],
    )
    start = flow("start", [on("order")], [ast.Enroll(flow=ident("target"), span=S)])
    prog = program(messages={"big": "email"}, flows=[start, target])
    effects = run(prog, [*_who("u"), track("u", "order", "2025-01-02T00:00:00Z", total=20)])
    assert actions(effects, "flow") == [
        ("2025-01-02T00:00:00Z", "enter", "start"),
        ("2025-01-02T00:00:00Z", "enter", "target"),
        ("2025-01-02T00:00:00Z", "exit", "start"),
        ("2025-01-02T00:00:00Z", "send", "target"),
        ("2025-01-02T00:00:00Z", "exit", "target"),
    ]


def test_when_is_a_rising_edge() -> None:
    prog = program(
        rules=[rule_("visit", 10), rule_("refund", -10)],
        messages={"m": "email"},
        flows=[flow("f", [when(b(">", name("score"), num(15))), _reenter("always")], [])],
    )
    at = [f"2025-01-02T0{i}:00:00Z" for i in range(6)]
    events = [
        *_who("u"),
        track("u", "visit", at[0]),
        track("u", "visit", at[1]),
        track("u", "visit", at[2]),
        track("u", "refund", at[3]),
        track("u", "refund", at[4]),
        track("u", "visit", at[5]),
    ]
    # 10, 20 (rise), 30 (still true), 20, 10 (fall), 20 (rise)
    assert [e["at"] for e in run(prog, events) if e["action"] == "enter"] == [at[1], at[5]]


def rule_(event: str, points: float) -> ast.ScoreRule:
    from engine_build import rule

    return rule(event, points)


def test_one_event_advances_waits_then_exits_then_triggers() -> None:
    waiter = flow(
        "waiter",
        [on("start")],
        [
            ast.WaitFor(
                event=ast.EventRef(name="ping", span=S),
                where=None,
                up_to=dur(D),
                else_=None,
                span=S,
            ),
            send("after_wait"),
        ],
    )
    leaver = flow(
        "leaver",
        [on("start"), ast.ExitOn(event=ast.EventRef(name="ping", span=S), where=None, span=S)],
        [wait(D)],
    )
    starter = flow("starter", [on("ping")], [send("started")])
    prog = program(
        messages={"after_wait": "email", "started": "email"}, flows=[starter, waiter, leaver]
    )
    events = [
        *_who("u"),
        track("u", "start", "2025-01-02T00:00:00Z"),
        track("u", "ping", "2025-01-02T01:00:00Z"),
    ]
    at_ping = [
        (e["action"], e["flow"]) for e in run(prog, events) if e["at"] == "2025-01-02T01:00:00Z"
    ]
    # exit clauses, then triggers (enter starter), then the touched enrollments run in order:
    # the advanced waiter first, then the new one.
    assert at_ping == [
        ("exit", "leaver"),
        ("enter", "starter"),
        ("send", "waiter"),
        ("exit", "waiter"),
        ("send", "starter"),
        ("exit", "starter"),
    ]


def test_wait_until_a_time_of_day_in_the_contacts_zone() -> None:
    until = ast.WaitUntil(target=ast.Time(hour=9, minute=0, span=S), span=S)
    prog = program(messages={"m": "email"}, flows=[flow("f", [on("go")], [until, send("m")])])
    events = [
        identify("tokyo", "2025-01-01T00:00:00Z", email="t@x", timezone="Asia/Tokyo"),
        identify("utc", "2025-01-01T00:00:00Z", email="u@x"),
        track("tokyo", "go", "2025-01-02T01:00:00Z"),  # 10:00 in Tokyo: tomorrow 09:00 JST
        track("utc", "go", "2025-01-02T01:00:00Z"),  # 01:00 UTC: 09:00 UTC today
    ]
    sends = {e["contact"]: e["at"] for e in run(prog, events) if e["action"] == "send"}
    assert sends == {"tokyo": "2025-01-03T00:00:00Z", "utc": "2025-01-02T09:00:00Z"}


def test_any_of_several_goals_counts() -> None:
    """The goals are looked at in turn: one that does not match (another event, or past its
    `within`) does not hide a later one that does."""
    order = ast.Goal(event=ast.EventRef(name="order", span=S), where=None, within=None, span=S)
    quick = ast.Goal(event=ast.EventRef(name="demo", span=S), where=None, within=dur(D), span=S)
    demo = ast.Goal(event=ast.EventRef(name="demo", span=S), where=None, within=None, span=S)
    prog = program(
        messages={"m": "email"},
        flows=[flow("f", [on("go"), order, quick, demo], [wait(10 * D), send("m")])],
    )
    events = [
        *_who("a", "b"),
        *(track(u, "go", "2025-01-02T00:00:00Z") for u in "ab"),
        track("a", "demo", "2025-01-02T12:00:00Z"),  # the second goal (within 1d)
        track("b", "demo", "2025-01-05T00:00:00Z"),  # past the second's 1d: the third
    ]
    effects = run(prog, events)
    for u, at in (("a", "2025-01-02T12:00:00Z"), ("b", "2025-01-05T00:00:00Z")):
        assert actions([e for e in effects if e["contact"] == u], "reason") == [
            ("2025-01-02T00:00:00Z", "enter", None),
            (at, "goal", None),
            (at, "exit", "goal"),
        ], u


def test_reenter_after_d_allows_exactly_d_after_the_last_entry_not_a_second_sooner() -> None:
    prog = program(
        messages={"m": "email"}, flows=[flow("f", [on("go"), _reenter("after", D)], [send("m")])]
    )
    times = ["2025-01-02T00:00:00Z", "2025-01-02T23:59:59Z", "2025-01-03T00:00:00Z"]
    effects = run(prog, _who("u") + [track("u", "go", t) for t in times])
    assert [e["at"] for e in effects if e["action"] == "enter"] == [times[0], times[2]]


def test_a_trigger_where_can_read_the_event_as_event_dot_name() -> None:
    """`on order_completed where event.total > 100`: `event` is the arriving event while its
    `where` is evaluated, as `total` alone is."""
    prog = program(
        messages={"m": "email"},
        flows=[
            flow(
                "big_order",
                [on("order_completed", b(">", attr(name("event"), "total"), num(100)))],
                [send("m")],
            )
        ],
    )
    events = [
        identify("u", "2025-01-01T09:00:00Z", email="u@x"),
        track("u", "order_completed", "2025-01-01T10:00:00Z", total=50),
        track("u", "order_completed", "2025-01-01T11:00:00Z", total=150),
    ]
    effects = run(prog, events, until="+1d")
    assert [e["at"] for e in effects if e["action"] == "enter"] == ["2025-01-01T11:00:00Z"]


def test_a_send_carries_its_with_values_and_the_bound_event_for_rendering(
    tmp_path: Path,
) -> None:
    """`send deal with {...}`: the send effect carries the values, evaluated at the send
    (serve renders the message's templates with them), and the event the enrollment bound
    (`event.NAME` in the message)."""
    script = """
message deal:
  channel email
  subject "Your code {{ code }}"
  text "Use {{ code }} for {{ percent }}% off"

flow f:
  on signed_up
  send deal with {code: "X1", percent: event.percent * 2}
"""
    checked = check_text(tmp_path, script)
    assert checked.program is not None, [d.message for d in checked.diagnostics]
    log = read_events(
        orjson.dumps(e)
        for e in [
            identify("u", "2025-01-01T09:00:00Z", email="u@example.com"),
            track("u", "signed_up", "2025-01-01T10:00:00Z", percent=10),
        ]
    )
    out: list[dict[str, Any]] = []
    end = parse_until("+1d", log.events[-1].t)
    assert end is not None
    simulate(Engine(compile_program(checked.program)), log.events, end, out.append, None, 1)
    (send,) = [e for e in out if e["action"] == "send"]
    assert send["data"] == {"code": "X1", "percent": 20}
    assert send["event"] == {"percent": 10}


def _script_effects(
    tmp_path: Path, script: str, events: list[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    return actions(run_text(tmp_path, script, events), "contact", "flow", "tag", "reason")


def test_an_exit_when_that_counts_events_in_a_window_removes_the_contact(tmp_path: Path) -> None:
    """Section 5: `exit when COND` removes the contact (reason `removed`) as soon as COND
    holds; here COND counts the events of the last 7 days."""
    script = """
flow nurture:
  on go
  exit when count(complaint within 7d) >= 1
  wait 30d
  tag "nurtured"
"""
    events = [
        *_who("u", "v"),
        track("u", "go", "2025-01-02T00:00:00Z"),
        track("v", "go", "2025-01-02T00:00:00Z"),
        track("u", "complaint", "2025-01-03T00:00:00Z"),
    ]
    assert [e[1:] for e in _script_effects(tmp_path, script, events) if e[1] != "enter"] == [
        ("exit", "u", "nurture", None, "removed"),
        ("tag", "v", "nurture", "nurtured", None),
        ("exit", "v", "nurture", None, "done"),
    ]


def test_a_when_trigger_written_more_than_once_enters_the_flow_once(tmp_path: Path) -> None:
    """A flow may have several triggers (section 5); the same `when` written three times is
    still one flow to enter, once, when the condition becomes true."""
    script = """
score:
  go +10
flow hot:
  when score >= 10
  when score >= 10
  when score >= 10
  tag "hot"
"""
    events = [*_who("u"), track("u", "go", "2025-01-02T00:00:00Z")]
    at = "2025-01-02T00:00:00Z"
    assert _script_effects(tmp_path, script, events) == [
        (at, "enter", "u", "hot", None, None),
        (at, "tag", "u", "hot", "hot", None),
        (at, "exit", "u", "hot", None, "done"),
    ]
