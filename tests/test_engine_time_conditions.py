"""Conditions whose value changes with time alone are re-evaluated at the exact instant they
change, to the second (LANGUAGE.md section 7): `days_since` scaled and shifted, inside a
metric or with a `where`, `now` against datetimes and against `event.X + D`, inside
`and`/`or`/`not`, in `when`, `check ... within` and `exit when`. Each expected instant is
computed here from the event's time with plain datetime arithmetic, not by the engine.

Then a differential test: visiting every quarter hour as well (the thresholds below all fall
on quarter hours) changes no effect, so the instants the engine finds are all there are.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bounded import bounded
from checking import check_text
from engine_run import run, run_text, track
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadlang.runtime.engine import Engine

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def first(effects: list[dict[str, Any]], action: str, **fields: Any) -> str | None:
    for effect in effects:
        if effect["action"] == action and all(effect.get(k) == v for k, v in fields.items()):
            return str(effect["at"])
    return None


PAGE = [track("u", "page_viewed", iso(T0))]

# (condition, the instant it turns true): `days_since` scaled and shifted
WHEN = [
    ("days_since(page_viewed) * 24 >= 60", T0 + timedelta(hours=60)),
    ("days_since(page_viewed) / 2 + 1 >= 2.25", T0 + timedelta(days=2.5)),
    ("3 - days_since(page_viewed) <= 0.75", T0 + timedelta(days=2.25)),
    ("days_since(page_viewed) * 86400 >= 100", T0 + timedelta(seconds=100)),
    ("round(days_since(page_viewed) * 24) >= 5", T0 + timedelta(hours=4, minutes=30)),
    # `>` turns true just after the instant: acted on at that instant's second
    ("days_since(page_viewed) - 0.5 > 2", T0 + timedelta(days=2.5)),
    # `now` against datetimes (the script's zone is UTC)
    ("now >= 2025-03-05T00:00", datetime(2025, 3, 5, tzinfo=UTC)),
    ("now > 2025-03-05T00:00:00+02:00", datetime(2025, 3, 4, 22, tzinfo=UTC)),
    ("now - 1d >= 2025-03-03", datetime(2025, 3, 4, tzinfo=UTC)),
    # inside and / or / not
    (
        "not (now < 2025-03-02T06:30) and days_since(page_viewed) >= 0",
        datetime(2025, 3, 2, 6, 30, tzinfo=UTC),
    ),
    (
        "days_since(page_viewed) * 24 >= 60 or now >= 2025-03-02T00:00",
        datetime(2025, 3, 2, tzinfo=UTC),
    ),
    ("days_since(page_viewed) * 24 >= 60 and now >= 2025-03-02T00:00", T0 + timedelta(hours=60)),
    # a leaf whose direction is not known (it rises, then falls): sampled, then bisected
    ("abs(days_since(page_viewed) - 3) <= 0.25", T0 + timedelta(days=2.75)),
]


@pytest.mark.parametrize(("cond", "expected"), WHEN, ids=[c for c, _ in WHEN])
def test_when_fires_at_the_exact_second(tmp_path: Path, cond: str, expected: datetime) -> None:
    script = f'flow f:\n  when {cond}\n  tag "on"\n'
    effects = run_text(tmp_path, script, PAGE)
    assert first(effects, "enter", flow="f") == iso(expected)


# divided by a constant (weeks, years, `/ 1d`), or scaled by a negative one, more than 400 days
# on: the way the leaf moves is known, so it is bisected, not sampled for a while then dropped
# (they fired months late)
LONG = [
    ("days_since(page_viewed) / 365 >= 2", T0 + timedelta(days=730)),
    ("days_since(page_viewed) / -7 < -100", T0 + timedelta(days=700)),
    ("-2 * days_since(page_viewed) <= -1000", T0 + timedelta(days=500)),
    ("(now - 2025-03-01T10:00) / 1d >= 450", T0 + timedelta(days=450)),
]


@pytest.mark.parametrize(("cond", "expected"), LONG, ids=[c for c, _ in LONG])
def test_when_divided_by_a_constant_fires_at_the_exact_second_years_on(
    tmp_path: Path, cond: str, expected: datetime
) -> None:
    script = f'flow f:\n  when {cond}\n  tag "on"\n'
    effects = run_text(tmp_path, script, PAGE, until="+800d")
    assert first(effects, "enter", flow="f") == iso(expected)


# `abs(...)` compared with a constant rises and falls; it is read as its two halves, each of
# which time moves one way, so a window shorter than an hour, or one a year and more on, is
# found at its exact second (both were missed: an hourly sampling saw neither)
ABS = [
    ("abs(days_since(page_viewed) - 3.02) < 0.001", T0 + timedelta(days=3.019)),
    ("abs(now - 2025-03-05T10:30) <= 10m", datetime(2025, 3, 5, 10, 20, tzinfo=UTC)),
    ("abs(days_since(page_viewed) - 500) < 1", T0 + timedelta(days=499)),
    ("not (abs(days_since(page_viewed) - 2.02) >= 0.001)", T0 + timedelta(days=2.019)),
]


@pytest.mark.parametrize(("cond", "expected"), ABS, ids=[c for c, _ in ABS])
def test_abs_of_a_time_compared_with_a_constant_fires_at_the_exact_second(
    tmp_path: Path, cond: str, expected: datetime
) -> None:
    script = f'flow f:\n  when {cond}\n  tag "on"\n'
    effects = run_text(tmp_path, script, PAGE, until="+600d")
    assert first(effects, "enter", flow="f") == iso(expected)


# A count over a window the script computes (a trait) is not scheduled: its instants are found
# like `now`'s. Compared through `abs`, it is true only while exactly one of two page views,
# half an hour apart, is in the window: half an hour, two days on (an hourly sampling, all the
# engine had without the halves of `abs`, missed it).
COMPUTED_WINDOW = [
    ("trait w: number = 2", "abs(count(page_viewed within w * 1d) - 1) < 1"),
    ("trait w: duration = 2d", "abs(count(page_viewed within w) - 1) < 0.5"),
    ("trait w: duration = 2d", "not (abs(count(page_viewed within w) - 1) >= 1)"),
]


@pytest.mark.parametrize(("trait", "cond"), COMPUTED_WINDOW, ids=[c for _, c in COMPUTED_WINDOW])
def test_abs_of_a_count_over_a_computed_window_fires_for_its_half_hour(
    tmp_path: Path, trait: str, cond: str
) -> None:
    script = f'{trait}\nflow f:\n  when {cond} and count(page_viewed) >= 2\n  tag "on"\n'
    views = [*PAGE, track("u", "page_viewed", iso(T0 + timedelta(minutes=30)))]
    effects = run_text(tmp_path, script, views, until="+10d")
    assert first(effects, "enter", flow="f") == iso(T0 + timedelta(days=2))


# Literals without an offset are in the script's zone. Havana's clocks went back from 01:00
# to 00:00 on 2024-11-03, so that day starts at the first 00:00 (CDT, 04:00Z) and 00:30 is
# first shown at 04:30Z (both were read an hour late, at the second showing); Paris skipped
# 02:00-03:00 on 2025-03-30, so 02:30 is read with the winter offset, 01:30Z.
LOCAL = [
    ("America/Havana", "now >= 2024-11-03", "2024-11-03T04:00:00Z"),
    ("America/Havana", "now >= 2024-11-03T00:30", "2024-11-03T04:30:00Z"),
    ("Europe/Paris", "now >= 2025-03-30T02:30", "2025-03-30T01:30:00Z"),
    ("Europe/Paris", "now >= 2024-10-27T02:30", "2024-10-27T00:30:00Z"),
]


@pytest.mark.parametrize(("zone", "cond", "expected"), LOCAL, ids=[c for _, c, _ in LOCAL])
def test_a_local_date_or_time_the_clocks_show_twice_is_its_first_showing(
    tmp_path: Path, zone: str, cond: str, expected: str
) -> None:
    script = f'settings:\n  timezone "{zone}"\nflow f:\n  when {cond}\n  tag "on"\n'
    page = [track("u", "page_viewed", "2024-10-01T00:00:00Z")]
    effects = run_text(tmp_path, script, page, until="+200d")
    assert first(effects, "enter", flow="f") == expected


def test_a_metric_computed_from_days_since(tmp_path: Path) -> None:
    script = 'metric hours_idle = days_since(page_viewed) * 24\nflow f:\n  when hours_idle >= 36\n  tag "x"\n'
    effects = run_text(tmp_path, script, PAGE)
    assert first(effects, "enter") == iso(T0 + timedelta(hours=36))


def test_days_since_against_a_trait(tmp_path: Path) -> None:
    script = 'trait wait_days: number = 2\nflow f:\n  when days_since(page_viewed) >= wait_days\n  tag "x"\n'
    effects = run_text(tmp_path, script, PAGE)
    assert first(effects, "enter") == iso(T0 + timedelta(days=2))


def test_a_window_whose_length_is_a_trait(tmp_path: Path) -> None:
    script = (
        "trait recent: duration = 2d\n"
        'flow f:\n  when count(page_viewed within recent) < 1\n  tag "x"\n'
    )
    effects = run_text(tmp_path, script, PAGE)
    assert first(effects, "enter") == iso(T0 + timedelta(days=2))


def test_days_since_with_a_where_counts_from_the_last_matching_event(tmp_path: Path) -> None:
    script = 'flow f:\n  when days_since(page_viewed where path == "/pricing") >= 7\n  tag "x"\n'
    later = T0 + timedelta(days=2, hours=3)
    events = [
        track("u", "page_viewed", iso(T0), path="/pricing"),
        track("u", "page_viewed", iso(later), path="/blog"),
    ]
    effects = run_text(tmp_path, script, events)
    assert first(effects, "enter") == iso(T0 + timedelta(days=7))


def test_a_fraction_of_a_second_is_kept(tmp_path: Path) -> None:
    script = 'flow f:\n  when days_since(page_viewed) * 24 >= 60\n  tag "x"\n'
    at = T0 + timedelta(milliseconds=750)
    effects = run_text(tmp_path, script, [track("u", "page_viewed", at.isoformat())])
    assert first(effects, "enter") == iso(at + timedelta(hours=60))  # 22:00:00.750 -> :00


def test_check_within_continues_when_now_passes_a_datetime(tmp_path: Path) -> None:
    script = (
        "event order_completed(completed_on: datetime)\n"
        "flow f:\n  on order_completed\n"
        '  check now >= event.completed_on + 2d within 10d else tag "late"\n'
        '  tag "two_days"\n'
    )
    completed = T0 - timedelta(hours=7, minutes=15, seconds=9)
    events = [track("u", "order_completed", iso(T0), completed_on=iso(completed))]
    effects = run_text(tmp_path, script, events)
    assert first(effects, "tag", tag="two_days") == iso(completed + timedelta(days=2))
    assert first(effects, "tag", tag="late") is None


def test_exit_when_now_passes_a_datetime(tmp_path: Path) -> None:
    script = "flow f:\n  on page_viewed\n  exit when now >= 2025-03-03T08:20:05Z\n  wait 30d\n"
    effects = run_text(tmp_path, script, PAGE)
    assert first(effects, "exit", reason="removed") == "2025-03-03T08:20:05Z"


def test_a_probe_does_not_look_past_the_next_input(tmp_path: Path) -> None:
    """A page view before the 60 hours are up starts the count again."""
    script = 'flow f:\n  when days_since(page_viewed) * 24 >= 60\n  reenter always\n  tag "x"\n'
    second = T0 + timedelta(hours=50)
    events = [*PAGE, track("u", "page_viewed", iso(second))]
    effects = run_text(tmp_path, script, events)
    assert [e["at"] for e in effects if e["action"] == "enter"] == [
        iso(second + timedelta(hours=60))
    ]


# ---------------------------------------------------------------- nothing skipped

SCRIPT = """
score:
  page_viewed +10
  added_to_cart +5
  decay 5 every 1d idle

metric hours_idle = days_since(page_viewed) * 24

flow idle:
  when hours_idle >= 30 and score < 40
  reenter always
  tag "idle"

flow dated:
  when now >= 2025-01-04T06:15 and not (days_since(added_to_cart) * 2 < 1.5)
  reenter always
  tag "dated"

flow guard:
  on added_to_cart
  reenter always
  check days_since(page_viewed) * 96 >= 10 within 1d else tag "late"
  tag "ok"

flow window:
  on order_completed
  reenter always
  exit when now >= 2025-01-08T12:45 or days_since(page_viewed) * 4 >= 9
  wait 2d
  tag "survived"
"""

EVENTS = ("page_viewed", "added_to_cart", "order_completed")


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 24 * 9), st.integers(0, 2)),
        min_size=1,
        max_size=12,
    )
)
def test_visiting_every_quarter_hour_changes_no_effect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, items: list[tuple[int, int, int]]
) -> None:
    checked = check_text(tmp_path, SCRIPT)
    assert checked.program is not None
    events = []
    for contact, hour, kind in sorted(items, key=lambda item: item[1]):
        day, rest = divmod(hour, 24)
        events.append(
            track(f"u{contact}", EVENTS[kind], f"2025-01-{1 + day:02d}T{rest:02d}:00:00Z")
        )
    with bounded(seconds=20):
        found = run(checked.program, events, until="+2d")
    wake = Engine._wake

    def every_quarter(self: Engine, contact: Any, t: float, ctx: Any, horizon: float) -> Any:
        planned = wake(self, contact, t, ctx, horizon)
        quarter = (math.floor(t / 900) + 1) * 900.0
        return quarter if planned is None or quarter < planned else planned

    monkeypatch.setattr(Engine, "_wake", every_quarter)
    with bounded(seconds=20):
        visited = run(checked.program, events, until="+2d")
    assert found == visited


def test_probes_at_the_ends_of_the_calendar_are_bounded(tmp_path: Path) -> None:
    """A contact of year 1 in a log that ends in 9999: probing looks ahead a year at a time
    (a leaf of unknown direction only for a while after the contact's last event), and a
    change just before the calendar ends is still found."""
    script = (
        'flow a:\n  when now >= 9999-12-29T23:50\n  tag "end"\n'
        'flow c:\n  when abs(days_since(page_viewed) - 3) <= 0.25\n  tag "c"\n'
    )
    events = [
        track("v", "page_viewed", "0001-01-03T00:00:00Z"),
        track("u", "page_viewed", "9999-12-20T00:00:00Z"),
    ]
    effects = run_text(tmp_path, script, events)
    # (how year 1 is printed is not what this test is about: leading zeros are dropped)
    entered = [(e["contact"], e["at"].lstrip("0")) for e in effects if e["action"] == "enter"]
    assert entered == [
        ("v", "1-01-05T18:00:00Z"),
        ("u", "9999-12-22T18:00:00Z"),
        ("v", "9999-12-29T23:50:00Z"),
        ("u", "9999-12-29T23:50:00Z"),
    ]


def test_check_whose_condition_turns_true_at_the_end_of_its_window_continues(
    tmp_path: Path,
) -> None:
    """`check C within D`: C holding at the very end of D (its deadline) continues, it does not
    take the else steps: the deadline looks at C once more."""
    script = (
        "event order_completed(completed_on: datetime)\n"
        "flow f:\n  on order_completed\n"
        '  check now >= event.completed_on + 2d within 2d else tag "late"\n'
        '  tag "two_days"\n'
    )
    events = [track("u", "order_completed", iso(T0), completed_on=iso(T0))]
    effects = run_text(tmp_path, script, events)
    assert first(effects, "tag", tag="two_days") == iso(T0 + timedelta(days=2))
    assert first(effects, "tag", tag="late") is None
    # a second earlier it does not hold at the deadline: the else steps run
    late = [track("u", "order_completed", iso(T0), completed_on=iso(T0 + timedelta(seconds=1)))]
    effects = run_text(tmp_path, script, late)
    assert first(effects, "tag", tag="late") == iso(T0 + timedelta(days=2))
    assert first(effects, "tag", tag="two_days") is None
