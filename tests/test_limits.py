"""The representable range: literals outside it are S008, log timestamps outside it are named
bad lines, and time computations inside it never raise (a wait past its end never fires)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from leadlang import limits
from leadlang.interpreter.check import CheckResult, check_modules
from leadlang.interpreter.compile import compile_program
from leadlang.loader import LoadResult
from leadlang.runtime.effects import format_time
from leadlang.runtime.engine import Engine
from leadlang.runtime.simulate import read_events, simulate
from leadlang.source import Source
from leadlang.syntax import parse

pytestmark = pytest.mark.timeout(120)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def checked(text: str) -> CheckResult:
    source = Source("t.lead", text)
    module, syntax = parse(source)
    return check_modules(LoadResult([module], {"t.lead": source}, syntax))


def diagnostics_of(text: str) -> list[tuple[str, int, int]]:
    return [(d.code, d.span.line, d.span.column) for d in checked(text).diagnostics]


def engine_of(text: str) -> Engine:
    result = checked(text)
    assert result.program is not None, result.diagnostics
    return Engine(compile_program(result.program))


# ---------------------------------------------------------------- literals in check

digits = st.text("0123456789", min_size=1, max_size=12)
huge_integers = st.one_of(
    st.integers(limits.MAX_INTEGER + 1, 2**80),
    st.integers(16, 5000).map(lambda n: "9" * n),  # past Python's 4,300-digit conversion limit
).map(str)
huge_decimals = st.integers(309, 5000).map(lambda n: "1" + "0" * n + ".5")  # overflows a float
units = st.sampled_from("smhdw")
huge_durations = st.one_of(
    st.integers(limits.MAX_DURATION + 1, 10**30).map(lambda n: f"{n}s"),
    st.integers(limits.MAX_DURATION // 604800 + 1, 10**20).map(lambda n: f"{n}w"),
    st.integers(20, 5000).map(lambda n: "1" * n + "d"),
    st.tuples(st.integers(limits.MAX_DURATION // 86400 + 1, 10**15), units).map(
        lambda p: f"{p[0]}d1{p[1]}"
    ),
)
early = datetime(1, 1, 1, tzinfo=UTC)
late_dates = st.dates(datetime(9999, 12, 30).date(), datetime(9999, 12, 31).date())
early_dates = st.dates(early.date(), datetime(1, 1, 2).date())
out_of_range_datetimes = st.one_of(
    early_dates.map(lambda d: d.isoformat() + "T00:00"),
    late_dates.map(lambda d: d.isoformat() + "T12:00Z"),
    st.sampled_from(["9999-12-31T23:00-05:00", "0001-01-01T00:00:00+14:00", "9999-12-30T00:00"]),
)


def _placed(literal: str, kind: str) -> str:
    """A script using `literal` where a value of `kind` belongs."""
    if kind == "number":
        return (
            "event e(x: number)\n"
            f"trait t: number = {literal}\n"
            f"score:\n  e +{literal}\n  decay {literal} every 1d idle\n  max {literal}\n"
            f"flow f:\n  on e where x < {literal}\n  score +{literal}\n"
        )
    if kind == "duration":
        return (
            "event e()\n"
            f"settings:\n  cap email 1 per {literal}\n"
            f"score:\n  e +1\n  decay 1 every {literal} idle\n"
            f"flow f:\n  on e\n  reenter after {literal}\n  wait {literal}\n"
            f"  check count(e within {literal}) > 0 within {literal}\n"
        )
    return f'event e()\nflow f:\n  on e\n  wait until {literal}\n  tag "x"\n'


@SETTINGS
@given(st.one_of(huge_integers, huge_decimals))
@example("18446744073709551616")
@example("1" + "0" * 400 + ".0")
def test_a_number_out_of_range_is_s008_everywhere(literal: str) -> None:
    found = diagnostics_of(_placed(literal, "number"))
    s008 = [d for d in found if d[0] == "S008"]
    assert len(s008) == 6  # trait default, rule points, decay, max, where, score step
    assert {code for code, _, _ in found} == {"S008"}  # and nothing else for the same literal


@SETTINGS
@given(huge_durations)
@example("99999999999w")
@example("1" * 4400 + "s")
def test_a_duration_out_of_range_is_s008_everywhere(literal: str) -> None:
    found = diagnostics_of(_placed(literal, "duration"))
    assert [d[0] for d in found if d[0] == "S008"] == ["S008"] * 6


@SETTINGS
@given(st.one_of(out_of_range_datetimes, early_dates.map(str), late_dates.map(str)))
def test_an_instant_out_of_range_is_s008(literal: str) -> None:
    found = diagnostics_of(_placed(literal, "instant"))
    assert ("S008", 4, 14) in found


@pytest.mark.parametrize(
    "literal",
    [
        str(limits.MAX_INTEGER),
        f"-{limits.MAX_INTEGER}",
        "1" + "0" * 300 + ".5",
        f"{limits.MAX_DURATION // 604800}w",
        "0001-01-03",
        "9999-12-29T23:59:59Z",
    ],
)
def test_the_edges_of_the_range_are_accepted(literal: str) -> None:
    kind = "duration" if literal.endswith("w") else "instant" if "-" in literal[1:] else "number"
    assert not [d for d in diagnostics_of(_placed(literal, kind)) if d[0] == "S008"]


# ---------------------------------------------------------------- the event log


def _line(timestamp: str) -> bytes:
    return json.dumps(
        {"type": "track", "userId": "u", "event": "e", "timestamp": timestamp}
    ).encode()


out_of_range_timestamps = st.one_of(
    st.datetimes(datetime(1, 1, 1), datetime(1, 1, 2, 23, 59, 59)).map(
        lambda d: d.isoformat() + "Z"
    ),
    st.datetimes(datetime(9999, 12, 30), datetime(9999, 12, 31, 23, 59, 59)).map(
        lambda d: d.isoformat() + "+00:00"
    ),
    st.datetimes(datetime(1, 1, 1), datetime(1, 1, 1, 12)).map(
        lambda d: d.isoformat() + "+14:00"  # (before year 1 once in UTC)
    ),
    st.datetimes(datetime(9999, 12, 31, 12), datetime(9999, 12, 31, 23)).map(
        lambda d: d.isoformat() + "-12:00"  # (year 10000 once in UTC)
    ),
)


@SETTINGS
@given(st.lists(out_of_range_timestamps, min_size=1, max_size=5))
def test_timestamps_out_of_range_are_named_bad_lines(stamps: list[str]) -> None:
    good = _line("2025-01-01T00:00:00Z")
    text = b"\n".join([good, *map(_line, stamps), good]) + b"\n"
    for source in (io.BytesIO(text), text.splitlines()):  # (the chunked and the line reader)
        log = read_events(source)  # type: ignore[arg-type]
        assert [bad.line for bad in log.bad] == list(range(2, 2 + len(stamps)))
        assert all("out of range" in bad.message for bad in log.bad)
        assert len(log.events) == 2


# ---------------------------------------------------------------- time inside the range

ZONES = ["Pacific/Kiritimati", "Pacific/Pago_Pago", "America/Los_Angeles", "Asia/Tokyo", "UTC"]
EDGE_SCRIPT = """
event e(at: datetime, n: number)
settings:
  quiet hours 22:00 to 08:00
message m:
  channel email
  text "hi"
flow f:
  on e
  reenter always
  send m
  wait until 09:00
  tag "a"
  wait until event.at
  wait event.n * 1d
  wait until event.at + 1w
  send m
  check now > 9999-12-29T00:00 within 12h else tag "late"
  wait 1d
  tag "b"
when days_since(e) * 24 > 30 then tag "idle"
"""

EDGE_ENGINE = engine_of(EDGE_SCRIPT)
near_the_edges = st.one_of(
    st.floats(limits.FIRST_INSTANT, limits.FIRST_INSTANT + 3 * 86400),
    st.floats(limits.LAST_INSTANT - 3 * 86400, limits.LAST_INSTANT),
)


@SETTINGS
@given(
    st.lists(st.tuples(near_the_edges, st.sampled_from(ZONES)), min_size=1, max_size=4),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-05:00", "x", 5]),
    st.one_of(st.integers(-(10**30), 10**30), st.floats(allow_nan=False, allow_infinity=False)),
)
def test_time_arithmetic_near_the_ends_of_time_never_raises(
    events: list[tuple[float, str]], at: object, n: float
) -> None:
    engine = EDGE_ENGINE
    lines = []
    for i, (t, zone) in enumerate(events):
        stamp = datetime.fromtimestamp(int(t), UTC).isoformat()
        contact = f"c{i}"
        lines.append(
            {
                "type": "identify",
                "userId": contact,
                "timestamp": stamp,
                "traits": {"timezone": zone, "email": "a@example.com"},
            }
        )
        props = {"at": at, "n": n}
        lines.append(
            {
                "type": "track",
                "userId": contact,
                "event": "e",
                "timestamp": stamp,
                "properties": props,
            }
        )
    log = read_events([json.dumps(line).encode() for line in lines])
    assert not log.bad
    effects: list[dict[str, str]] = []
    simulate(engine, log.events, limits.LAST_INSTANT, effects.append)
    for effect in effects:
        moment = datetime.strptime(effect["at"], "%Y-%m-%dT%H:%M:%SZ")
        assert len(effect["at"]) == 20 and moment.year >= 1


def test_a_wait_past_the_end_of_time_never_fires() -> None:
    engine = engine_of('event e()\nflow f:\n  on e\n  wait 52w\n  tag "later"\n')
    start = datetime(9999, 6, 1, tzinfo=UTC).timestamp()
    log = read_events([_line(datetime.fromtimestamp(start, UTC).isoformat())])
    effects: list[dict[str, str]] = []
    simulate(engine, log.events, limits.LAST_INSTANT, effects.append)
    assert [e["action"] for e in effects] == ["enter"]  # no tag, no exit: it never comes


def test_the_year_is_written_in_four_digits() -> None:
    assert format_time(limits.FIRST_INSTANT) == "0001-01-03T00:00:00Z"
    assert format_time(datetime(999, 12, 31, tzinfo=UTC).timestamp()) == "0999-12-31T00:00:00Z"
    assert format_time(limits.LAST_INSTANT) == limits.LAST_TEXT


def test_the_range_holds_a_day_of_zone_arithmetic_either_side() -> None:
    for t in (limits.FIRST_INSTANT, limits.LAST_INSTANT):
        moment = datetime.fromtimestamp(t, UTC)
        assert moment - timedelta(days=1, hours=14) > datetime.min.replace(tzinfo=UTC)
        assert moment + timedelta(days=1, hours=14) < datetime.max.replace(tzinfo=UTC)


@pytest.mark.parametrize("field", ["properties", "traits"])
def test_nesting_past_the_limit_is_a_bad_line_in_both_readers(field: str) -> None:
    def line(brackets: int) -> bytes:
        kind = "identify" if field == "traits" else "track"
        value = {"a": json.loads("[" * brackets + "]" * brackets)}
        return json.dumps(
            {**json.loads(_line("2025-01-01T00:00:00Z")), "type": kind, field: value}
        ).encode()

    # the line's object, then `field`, then the brackets: 64 levels in all is the limit
    lines = [line(n) for n in (1, 61, 62, 63, 64, 500)] + [_line("2025-01-02T00:00:00Z")] * 100
    text = b"\n".join(lines) + b"\n"
    for source in (io.BytesIO(text), text.splitlines()):
        log = read_events(source)  # type: ignore[arg-type]
        assert [bad.line for bad in log.bad] == [4, 5, 6]
        assert len(log.events) == 103
