"""Score, decay instants and `within` windows (LANGUAGE.md section 4)."""

from __future__ import annotations

from pathlib import Path

from checking import check_text
from engine_build import attr, b, call, dur, flow, name, num, program, rule, s, send, when
from engine_run import identify, run, track

from leadlang import ast
from leadlang.source import Span

D = 86400
S = Span("<test>", 1, 1, 1, 1)


def _low_score_flow() -> ast.FlowDecl:
    return flow("low", [when(b("<=", name("score"), num(50)))], [send("m")])


def test_when_score_below_fires_exactly_at_the_decay_instant() -> None:
    # 6 page views = 60 points at 10:00; decay 10 every 7d: 50 at exactly 7 days later.
    prog = program(
        rules=[rule("page_viewed", 10)],
        decay=(10, 7 * D, False),
        messages={"m": "email"},
        flows=[
            flow("low", [when(b("<=", name("score"), num(50))), _reenter()], [send("m")]),
        ],
    )
    events = [identify("u", "2025-01-01T09:00:00Z", email="u@x")]
    events += [track("u", "Page Viewed", "2025-01-01T10:00:00Z") for _ in range(6)]
    effects = run(prog, events, until="+8d")
    enters = [e["at"] for e in effects if e["action"] == "enter"]
    # The first evaluation (identify, score 0) is a rising edge; the second is the decay.
    assert enters == ["2025-01-01T09:00:00Z", "2025-01-08T10:00:00Z"]


def _reenter() -> ast.Reenter:
    return ast.Reenter(mode="always", after=None, span=S)


def test_percent_decay_compounds_and_max_clamps() -> None:
    # max 100: 12 * 10 = 100; decay 50% every 1d: 50 after 1d, 25 after 2d.
    prog = program(
        rules=[rule("visit", 10)],
        decay=(0.5, D, True),
        score_max=100,
        messages={"m": "email"},
        flows=[flow("quarter", [when(_low_after_twelve_visits())], [send("m")])],
    )
    events = [track("u", "visit", "2025-01-01T00:00:00Z") for _ in range(12)]
    effects = run(prog, events, until="+3d")
    assert [e["at"] for e in effects if e["action"] == "enter"] == ["2025-01-03T00:00:00Z"]


def _low_after_twelve_visits() -> ast.Expr:
    return b(
        "and",
        b("<=", name("score"), num(25)),
        b(">=", call("count", name("visit")), num(12)),
    )


def test_score_rule_where_and_floor_at_zero() -> None:
    prog = program(
        rules=[rule("order", 25, where=b(">", name("total"), num(100))), rule("complaint", -40)],
        messages={"m": "email"},
        flows=[flow("hot", [when(b(">=", name("score"), num(25)))], [send("m")])],
    )
    events = [
        track("u", "complaint", "2025-01-01T00:00:00Z"),  # 0, not -40
        track("u", "order", "2025-01-01T01:00:00Z", total=50),  # no points
        track("u", "order", "2025-01-01T02:00:00Z", total=150),  # 25
    ]
    effects = run(prog, events)
    assert [e["at"] for e in effects if e["action"] == "enter"] == ["2025-01-01T02:00:00Z"]


def test_event_leaving_a_window_is_an_instant() -> None:
    # Fires when the last `visit` leaves the 1d window: exactly 1d after it.
    cond = b(
        "and",
        b("==", call("count", name("visit"), within=dur(D)), num(0)),
        b(">", call("count", name("visit")), num(0)),
    )
    prog = program(messages={"m": "email"}, flows=[flow("lapsed", [when(cond)], [send("m")])])
    events = [
        track("u", "visit", "2025-01-01T00:00:00Z"),
        track("u", "visit", "2025-01-01T06:00:00Z"),
    ]
    effects = run(prog, events, until="+2d")
    assert [e["at"] for e in effects if e["action"] == "enter"] == ["2025-01-02T06:00:00Z"]


def test_aggregates_with_where_within_total_and_last() -> None:
    big = b(">=", name("total"), num(100))
    cond = b(
        "and",
        b(">=", call("count", name("order"), where=big, within=dur(7 * D)), num(2)),
        b("==", attr(call("last", name("order")), "sku"), s("B")),
    )
    prog = program(messages={"m": "email"}, flows=[flow("big", [when(cond)], [send("m")])])
    events = [
        track("u", "order", "2025-01-01T00:00:00Z", total=150, sku="A"),
        track("u", "order", "2025-01-02T00:00:00Z", total=50, sku="B"),  # too small
        track("u", "order", "2025-01-09T00:00:00Z", total=120, sku="B"),  # first left the window
        track("u", "order", "2025-01-10T00:00:00Z", total=300, sku="B"),  # 2 big in 7d, last B
    ]
    assert [e["at"] for e in run(prog, events) if e["action"] == "enter"] == [
        "2025-01-10T00:00:00Z"
    ]


def test_days_since_threshold_is_an_instant() -> None:
    cond = b(">=", call("days_since", name("visit")), num(7))
    prog = program(messages={"m": "email"}, flows=[flow("idle", [when(cond)], [send("m")])])
    events = [
        track("u", "visit", "2025-01-01T00:00:00Z"),
        track("u", "visit", "2025-01-03T12:00:00Z"),
    ]
    enters = [e["at"] for e in run(prog, events, until="+10d") if e["action"] == "enter"]
    assert enters == ["2025-01-10T12:00:00Z"]


def test_a_when_trigger_time_cannot_change_hides_no_later_one(tmp_path: Path) -> None:
    """At a time-driven instant the `when` triggers that read nothing time changes are
    skipped, one by one: `low`, after such a trigger, still fires at the decay instant."""
    script = """
trait plan: text = "free"

score:
  page_viewed +10
  decay 5 every 1d idle

flow pro:
  when plan == "pro"
  tag "pro"

flow low:
  when score < 8
  reenter always
  tag "low"
"""
    checked = check_text(tmp_path, script)
    assert checked.program is not None, [d.message for d in checked.diagnostics]
    events = [
        identify("u", "2025-01-01T09:00:00Z", email="u@x"),
        track("u", "page_viewed", "2025-01-01T10:00:00Z"),
    ]
    effects = run(checked.program, events, until="+3d")
    tags = [(e["at"], e["tag"]) for e in effects if e["action"] == "tag"]
    # score 0 at the identify (a first evaluation is a rising edge), 10 at 10:00, 5 a day later
    assert tags == [("2025-01-01T09:00:00Z", "low"), ("2025-01-02T10:00:00Z", "low")]


def test_a_score_step_below_zero_leaves_the_score_at_zero(tmp_path: Path) -> None:
    """`score -30` on a score of 20 leaves 0, not -10 (nor anything else): the next +10
    brings it to exactly 10 again."""
    script = """
score:
  page_viewed +10

flow penalty:
  on complained
  score -30

flow exactly_ten:
  when score == 10
  reenter always
  tag "ten"
"""
    checked = check_text(tmp_path, script)
    assert checked.program is not None, [d.message for d in checked.diagnostics]
    events = [
        track("u", "page_viewed", "2025-01-01T10:00:00Z"),
        track("u", "page_viewed", "2025-01-01T11:00:00Z"),
        track("u", "complained", "2025-01-01T12:00:00Z"),
        track("u", "page_viewed", "2025-01-01T13:00:00Z"),
    ]
    effects = run(checked.program, events, until="+1d")
    tags = [e["at"] for e in effects if e["action"] == "tag"]
    assert tags == ["2025-01-01T10:00:00Z", "2025-01-01T13:00:00Z"]


def test_every_score_rule_an_event_matches_adds_its_points(tmp_path: Path) -> None:
    """LANGUAGE.md section 4: each rule `EVENT +N [where COND]` adds N when a matching event
    arrives, so an event two rules match gets both rules' points: 5 + 20 for a big order."""
    script = """
event order_completed(total: number)

score:
  order_completed +5
  order_completed +20 where total >= 100

flow worth:
  when score == 30
  tag "thirty"
"""
    checked = check_text(tmp_path, script)
    assert checked.program is not None, [d.message for d in checked.diagnostics]
    events = [
        track("u", "order_completed", "2025-01-01T10:00:00Z", total=50),  # 5
        track("u", "order_completed", "2025-01-01T11:00:00Z", total=150),  # 5 + 5 + 20
    ]
    effects = run(checked.program, events, until="+1d")
    assert [(e["at"], e["tag"]) for e in effects if e["action"] == "tag"] == [
        ("2025-01-01T11:00:00Z", "thirty")
    ]


def test_a_score_rule_never_leaves_a_score_above_zero_it_did_not_give(tmp_path: Path) -> None:
    """A negative rule on a score of 0 leaves 0 (section 4: never below 0), and an event
    whose rules' `where` all fail adds nothing: `when score > 0` waits for a real point."""
    script = """
event order(total: number)

score:
  complained -40
  order +10 where total > 100
  page_viewed +1

flow positive:
  when score > 0
  tag "positive"
"""
    checked = check_text(tmp_path, script)
    assert checked.program is not None, [d.message for d in checked.diagnostics]
    events = [
        track("u", "complained", "2025-01-01T10:00:00Z"),
        track("v", "order", "2025-01-01T10:00:00Z", total=50),
        track("u", "page_viewed", "2025-01-01T12:00:00Z"),
        track("v", "page_viewed", "2025-01-01T12:00:00Z"),
    ]
    effects = run(checked.program, events, until="+1d")
    tags = [(e["contact"], e["at"]) for e in effects if e["action"] == "tag"]
    assert tags == [("u", "2025-01-01T12:00:00Z"), ("v", "2025-01-01T12:00:00Z")]
