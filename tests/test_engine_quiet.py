"""Skipping "quiet" instants is only an optimisation: effects are the same without it.

The engine's direction analysis (`runtime/monotone.py`) finds decay steps, window expiries and
`days_since` instants at which no condition can change, and does not visit them. Here
every direction is forced to "unknown", which keeps every instant, and the two runs must give
identical effects for any event log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from checking import check_text
from engine_run import identify, run, track
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadlang.runtime import monotone

SCRIPT = """
score:
  page_viewed +10
  added_to_cart +15
  order_completed +30
  decay 10 every 2d idle
  max 100

metric intent = count(added_to_cart within 3d) + 2 * count(order_completed within 5d)
metric propensity = sigmoid(-2 + intent)
segment hot = score > 40 and propensity > 60%
segment cooling = score <= 30 and days_since(page_viewed) >= 4

message deal:
  channel email
  subject "deal"
  text "deal"
message final:
  channel email
  subject "final"
  text "final"

flow hot_deal:
  when hot
  reenter always
  exit when score < 20
  send deal
  check opened within 2d else send final

flow win_back:
  when cooling
  reenter after 3d
  tag "cooling"
  wait 1d
  untag "cooling"

flow low_intent:
  when intent < 1 and score > 20
  reenter always
  tag "low"
"""

# Without the mixed-direction trigger and the `exit when`, most time-driven instants are quiet.
MOSTLY_QUIET = SCRIPT.split("flow low_intent:")[0].replace("  exit when score < 20\n", "")

EVENTS = ("page_viewed", "added_to_cart", "order_completed", "message_opened")


# Percent decay: the first decay step at which `score <= 30` holds is found by compounding.
PERCENT = SCRIPT.replace("decay 10 every 2d idle", "decay 20% every 2d idle")


# A strict `days_since(E) > N`: it turns true just after N days (the bound is that moment).
STRICT = SCRIPT.replace("days_since(page_viewed) >= 4", "days_since(page_viewed) > 4")

# Steps that change the score at a time-driven instant, with `when` triggers time alone only
# lowers (`nine`: its fall is noticed lazily) or only raises (`low`: bounded by a decay step
# and a days_since instant).
STEPS = """
score:
  page_viewed +10
  added_to_cart +15
  decay 3 every 1d idle

flow bump:
  on added_to_cart
  reenter always
  wait 2d
  score +8

flow nine:
  when score >= 12
  reenter always
  tag "nine"

flow low:
  when score < 8 and days_since(page_viewed) >= 2
  reenter always
  tag "low"
"""


@pytest.fixture(
    scope="module",
    params=[SCRIPT, MOSTLY_QUIET, PERCENT, STRICT, STEPS],
    ids=["mixed", "mostly_quiet", "percent_decay", "strict_days_since", "steps"],
)
def program(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    result = check_text(tmp_path_factory.mktemp("quiet"), request.param)
    assert result.program is not None, [d.message for d in result.diagnostics]
    return result.program


def _log(items: list[tuple[int, int, int]]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        identify(f"u{c}", "2025-01-01T00:00:00Z", email=f"u{c}@x") for c in range(3)
    ]
    for contact, hour, kind in sorted(items, key=lambda item: item[1]):
        day, rest = divmod(hour, 24)
        at = f"2025-01-{1 + day:02d}T{rest:02d}:00:00Z"
        props = {"message": "deal"} if EVENTS[kind] == "message_opened" else {}
        events.append(track(f"u{contact}", EVENTS[kind], at, **props))
    return events


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 24 * 20), st.integers(0, 3)),
        min_size=1,
        max_size=25,
    )
)
def test_quiet_instants_change_no_effect(
    program: Any, monkeypatch: pytest.MonkeyPatch, items: list[tuple[int, int, int]]
) -> None:
    events = _log(items)
    optimised = run(program, events)
    with monkeypatch.context() as patch:
        patch.setattr(monotone, "directions", lambda src, resolve: monotone.ALWAYS)
        patch.setattr(monotone, "falling_guards", lambda *args: [])
        patch.setattr(monotone, "rising_bounds", lambda *args: [])
        every_instant = run(program, events)
    assert optimised == every_instant


def test_the_analysis_marks_decay_and_window_directions(tmp_path: Path) -> None:
    """The cases the engine relies on most: a falling score, an expiring count, days_since."""
    from leadlang.interpreter.compile import compile_program

    result = check_text(
        tmp_path,
        "metric n = count(added_to_cart within 3d)\n"
        "segment above = score > 50\nsegment below = score <= 50\n"
        "segment busy = n >= 2\nsegment idle_week = days_since(page_viewed) >= 7\n",
    )
    assert result.program is not None
    program_ir = compile_program(result.program)
    resolve = monotone.table_resolver(
        {"metric": program_ir["metrics"], "segment": program_ir["segments"]}
    )

    def dirs(segment: str) -> monotone.Dirs:
        return monotone.directions(program_ir["segments"][segment]["src"], resolve)

    assert dirs("above")[monotone.SCORE] == -1  # a decay step can only make it fall
    assert dirs("below")[monotone.SCORE] == 1  # ... or only make this one rise
    assert dirs("busy")[monotone.WINDOW] == -1  # an expiring event only lowers a count
    assert dirs("idle_week")[monotone.SINCE] == 1  # days since only grows


def test_days_since_with_a_where_is_not_scheduled_as_if_it_had_none(tmp_path: Path) -> None:
    """The `days_since` instant is the last such event of any kind plus N days; with a `where`
    the last matching one may be earlier, so the analysis must not call it a bound: it is a
    leaf that grows with time, whose instant is probed."""
    from leadlang.interpreter.compile import compile_program

    result = check_text(
        tmp_path, 'segment idle = days_since(page_viewed where path == "/pricing") >= 7\n'
    )
    assert result.program is not None, [d.message for d in result.diagnostics]
    program_ir = compile_program(result.program)
    resolve = monotone.table_resolver({"segment": program_ir["segments"]})
    src = program_ir["segments"]["idle"]["src"]
    assert monotone.rising_bounds(src, lambda name: None, resolve) == []
    atoms = monotone.time_atoms(src, {}, lambda name: None, resolve)
    assert atoms is not None and [direction for _, direction in atoms] == [1]
