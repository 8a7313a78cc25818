"""The standard-library fast paths of `format_time` and the delivery policy's local time
arithmetic give exactly what the former pendulum / strftime code gave (kept below as the
reference, computing the contact's zone itself and calling pendulum and zoneinfo directly, so
nothing of the policy under test judges the policy), bit for bit, for any instant: around DST gaps and folds, 30-minute DST, odd
historical offsets, before 1970 and at the ends of the calendar. The end of quiet hours is
checked against the rule itself (the first instant the local clock reads a time outside the
window), found by brute force."""

from __future__ import annotations

import math
import zoneinfo
from datetime import UTC, datetime, time
from functools import cache
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from leadlang.limits import LAST_INSTANT
from leadlang.runtime import effects, policy
from leadlang.runtime.effects import format_time
from leadlang.runtime.policy import DeliveryPolicy
from leadlang.runtime.state import Contact

ZONES = (
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",  # DST of 30 minutes
    "Asia/Ho_Chi_Minh",
    "UTC",
    "Africa/Monrovia",  # -0:44:30 until 1972
    "Asia/Kolkata",  # +5:53:28, +5:21:10, +6:30 in its history
)
YEAR_1850 = -3786825600
YEAR_2045 = 2366841600
FIRST = datetime(1, 1, 1, tzinfo=UTC).timestamp()
LAST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# The reference: the code before the fast paths, except that an instant past the calendar is
# `math.inf` (never), as `leadlang.limits` decides, where pendulum raises, and that the zone is
# worked out here from the trait and the settings (never by the policy under test).


def expected_zone(trait: Any, settings_zone: str) -> str:
    """The zone the docs promise: the `timezone` trait when it names an IANA zone, else the
    settings' zone (never UTC by default)."""
    if isinstance(trait, str) and trait:
        try:
            zoneinfo.ZoneInfo(trait)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
        else:
            return trait
    return settings_zone


def ref_format_time(t: float) -> str:
    # (the year in four digits, as `YYYY-MM-DD` says: strftime's `%Y` writes year 1 as `1`)
    d = datetime.fromtimestamp(math.floor(t), UTC)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}Z"


def ref_local(zone: str, t: float) -> Any:
    return pendulum.from_timestamp(t, tz=zone)


def ref_at_local(zone: str, day: Any, sod: int) -> float:
    try:
        moment = pendulum.datetime(
            day.year, day.month, day.day, sod // 3600, sod // 60 % 60, sod % 60, tz=zone
        )
        return float(moment.timestamp())
    except Exception:  # past the calendar: a day that never comes (the engine's limits)
        return math.inf


def ref_quiet_end(window: tuple[int, int], zone_name: str, t: float) -> float | None:
    """LANGUAGE.md section 6 read literally, by brute force: the first instant after `t` at
    which the local clock reads a time outside the window (the clock read with the standard
    library; boundaries are whole seconds, so whole seconds are looked at). inf: past the end of the calendar."""
    start, end = window
    if start == end:  # equal times: an empty window
        return None
    zone = zoneinfo.ZoneInfo(zone_name)

    def wall(x: float) -> datetime:
        return datetime.fromtimestamp(x, zone)

    def outside(x: float) -> bool:
        local = wall(x)
        sod = local.hour * 3600 + local.minute * 60 + local.second
        return not (start <= sod < end if start < end else (sod >= start or sod < end))

    try:
        if outside(t):
            return None
        # Strides no longer than the time outside the window cannot step over it while the
        # clock runs evenly; a stride across a clock change is read second by second.
        stride = min(60, (start - end) % 86400)
        probe = math.floor(t)
        while True:
            nxt = probe + stride
            if outside(nxt) or wall(probe).utcoffset() != wall(nxt).utcoffset():
                for second in range(probe + 1, nxt + 1):
                    if outside(second):
                        return float(second)
            probe = nxt
    except (OverflowError, ValueError, OSError):
        return math.inf
    raise AssertionError("unreachable")


def ref_until_instant(zone: str, target: Any, t: float) -> Any:
    if isinstance(target, str) and len(target) <= 8 and ":" in target and "T" not in target:
        try:
            target = time.fromisoformat(target)
        except ValueError:
            return None
    assert isinstance(target, time)
    local = ref_local(zone, t)
    sod = target.hour * 3600 + target.minute * 60 + target.second
    at = ref_first_at_local(zone, local.date(), sod)
    if at < t:
        at = ref_at_local(zone, local.date(), sod)
        if at < t:
            try:
                day = local.date().add(days=1)
            except Exception:  # after 9999-12-31: a day that never comes
                return math.inf
            at = ref_first_at_local(zone, day, sod)
    return at


def ref_first_at_local(zone: str, day: Any, sod: int) -> float:
    """The first instant the local clock shows `sod` on `day` (pendulum's fold=0), or, when it
    never does (a gap), the instant the gap's length later (pendulum's fold=1)."""
    wall = (sod // 3600, sod // 60 % 60, sod % 60)
    try:
        early = pendulum.datetime(day.year, day.month, day.day, *wall, tz=zone, fold=0)
    except Exception:  # past the calendar: a day that never comes (the engine's limits)
        return math.inf
    if (early.hour, early.minute, early.second) == wall:
        return float(early.timestamp())
    return ref_at_local(zone, day, sod)


def outcome(call: Any, *args: Any) -> tuple[Any, ...]:
    """A result with its exact type (so 1.0 is not 1), or the exception's type and text."""
    try:
        value = call(*args)
    except Exception as error:
        return ("raised", type(error), str(error))
    return ("value", type(value), repr(value))


# Instants: near each zone's transitions, anywhere in 1850-2045, anywhere at all.


@cache
def transitions(name: str) -> tuple[int, ...]:
    """The instants (whole seconds) where the zone's UTC offset changes, 1850-2045."""
    zone = pendulum.timezone(name)

    def offset(t: int) -> Any:
        return datetime.fromtimestamp(t, zone).utcoffset()

    found = []
    t, before = YEAR_1850, offset(YEAR_1850)
    while t < YEAR_2045:
        nxt = t + 86400
        after = offset(nxt)
        if after != before:
            lo, hi = t, nxt  # offset(lo) == before != offset(hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(mid) == before else (lo, mid)
            found.append(hi)
        t, before = nxt, after
    return tuple(found) or (0,)


def test_the_zones_have_the_transitions_the_tests_rely_on() -> None:
    assert len(transitions("Europe/Paris")) > 100
    assert len(transitions("America/New_York")) > 100
    assert len(transitions("Australia/Lord_Howe")) > 50
    assert len(transitions("Asia/Ho_Chi_Minh")) >= 5
    assert len(transitions("Africa/Monrovia")) >= 2
    assert len(transitions("Asia/Kolkata")) >= 3
    assert transitions("UTC") == (0,)


@st.composite
def zone_and_instant(draw: st.DrawFn, spread: int = 3 * 3600) -> tuple[str, float]:
    name = draw(st.sampled_from(ZONES))
    kind = draw(st.sampled_from(("transition", "transition", "anywhere", "extreme")))
    if kind == "transition":
        base = draw(st.sampled_from(transitions(name)))
        t: float = base + draw(st.integers(-spread, spread))
        if draw(st.booleans()):
            t += draw(st.floats(0, 1, exclude_max=True))
    elif kind == "anywhere":
        t = draw(st.floats(YEAR_1850, YEAR_2045 * 1.5))
    else:
        t = draw(
            st.one_of(
                st.floats(FIRST - 86400 * 2, FIRST + 86400 * 2),
                st.floats(LAST - 86400 * 2, LAST + 86400 * 2),
                st.floats(allow_nan=True, allow_infinity=True),
            )
        )
    return name, t


def contact_in(name: str) -> Contact:
    contact = Contact("c")
    contact.traits["timezone"] = name
    return contact


# Seconds of day: on the minute, plus the local times where transitions happen.
TRANSITION_TIMES = [h * 3600 + m * 60 for h in range(5) for m in (0, 15, 30, 45)] + [
    23 * 3600,
    23 * 3600 + 30 * 60,
    86399,
]
second_of_day = st.one_of(
    st.integers(0, 1439).map(lambda m: m * 60),
    st.sampled_from(TRANSITION_TIMES),
    st.integers(0, 86399),
)


# format_time


@SETTINGS
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(FIRST - 86400 * 400, LAST + 86400 * 400),
        st.floats(-(10**10), 4 * 10**9),
        st.integers(int(FIRST) - 10**8, int(LAST) + 10**8),
    )
)
@example(0.0)
@example(-0.5)
@example(-1e-300)
@example(1e-300)
@example(-86400.0)
@example(-86401.0)
@example(FIRST)
@example(FIRST - 1)
@example(LAST)
@example(LAST + 1)
@example(datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())
@example(datetime(1000, 1, 1, tzinfo=UTC).timestamp())
def test_format_time_is_the_strftime_of_the_floored_second(t: float) -> None:
    assert outcome(format_time, t) == outcome(ref_format_time, t)
    # the second call of an hour is a cache hit
    assert outcome(format_time, t) == outcome(ref_format_time, t)


@SETTINGS
@given(
    st.integers(int(FIRST) // 3600, int(LAST) // 3600),
    st.lists(st.floats(0, 3600, exclude_max=True), min_size=1, max_size=20),
)
def test_format_time_within_one_hour(hour: int, offsets: list[float]) -> None:
    for offset in offsets:
        t = hour * 3600 + offset  # (may round up to the next hour: past the calendar, both raise)
        assert outcome(format_time, t) == outcome(ref_format_time, t)


def test_format_time_survives_its_cache_being_emptied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(effects, "_HOUR_PREFIX_MAX", 3)
    monkeypatch.setattr(effects, "_HOUR_PREFIX", {})
    for t in range(1_700_000_000, 1_700_000_000 + 10 * 3600, 599):
        assert format_time(t + 0.25) == ref_format_time(t + 0.25)
        assert len(effects._HOUR_PREFIX) <= 3  # bounded memory, whatever the log


# Quiet hours


@SETTINGS
@given(zone_and_instant(spread=30 * 3600), second_of_day, second_of_day)
@example(("Europe/Paris", 1711836000.0), 22 * 3600, 2 * 3600 + 30 * 60)  # end in the gap
@example(("Europe/Paris", 1711843200.0), 21 * 3600, 2 * 3600)  # end at the gap's start
@example(("America/New_York", 1730599200.0), 22 * 3600, 3600 + 30 * 60)  # end in the fold
@example(("Australia/Lord_Howe", 1728122400.0), 20 * 3600, 2 * 3600 + 15 * 60)  # 30-min gap
@example(("Australia/Lord_Howe", 1712412000.0), 0, 3600 + 45 * 60)  # 30-min fold
@example(("Asia/Kolkata", -3600.0 * 24 * 365 * 100), 0, 0)  # start == end
@example(("UTC", LAST), 22 * 3600, 3600)  # the end would be on the day after 9999-12-31
@example(("Europe/Paris", 1711838000.123456), 22 * 3600, 2 * 3600 + 30 * 60)  # a fraction
def test_quiet_end_is_the_first_reading_outside(
    zi: tuple[str, float], start: int, end: int
) -> None:
    name, t = zi
    pol = DeliveryPolicy({"timezone": "UTC", "quiet_hours": [start, end]})
    expected = outcome(ref_quiet_end, (start, end), name, t)
    assert outcome(pol._quiet_end, contact_in(name), t) == expected


@SETTINGS
@given(zone_and_instant(spread=30 * 3600), second_of_day, second_of_day)
def test_quiet_decision_through_the_settings_zone(
    zi: tuple[str, float], start: int, end: int
) -> None:
    # no timezone trait: the settings' zone; a bad trait: the settings' zone too
    name, t = zi
    pol = DeliveryPolicy({"timezone": name, "quiet_hours": [start, end]})
    for contact in (Contact("plain"), contact_in("Not/A_Zone"), contact_in("")):
        zone = expected_zone(contact.traits.get("timezone"), name)
        assert zone == name
        assert _never_past_the_end(outcome(pol._quiet_end, contact, t)) == _never_past_the_end(
            outcome(ref_quiet_end, (start, end), zone, t)
        )


def _never_past_the_end(result: tuple[Any, ...]) -> tuple[Any, ...]:
    """An end of quiet hours past the last representable instant never comes (the engine
    schedules nothing there): any such instant is `inf`, whichever one was computed."""
    if result[0] == "value" and result[1] is float and float(result[2]) > LAST_INSTANT:
        return ("value", float, repr(math.inf))
    return result


# wait until a time of day


@SETTINGS
@given(zone_and_instant(), second_of_day, st.booleans())
@example(("Europe/Paris", 1711836000.0), 2 * 3600 + 30 * 60, False)  # gap: 02:30 is 03:30
@example(("America/New_York", 1730606400.0), 3600 + 30 * 60, False)  # fold: the first 01:30
@example(("America/New_York", 1730610000.0), 3600 + 30 * 60, False)  # fold: then the second
@example(("Australia/Lord_Howe", 1728141600.0), 2 * 3600 + 10 * 60, True)
@example(("UTC", LAST), 3600, True)  # tomorrow is past the calendar
def test_until_instant_is_the_pendulum_one(zi: tuple[str, float], sod: int, as_text: bool) -> None:
    name, t = zi
    pol = DeliveryPolicy({"timezone": "UTC"})
    target: Any = time(sod // 3600, sod // 60 % 60, sod % 60)
    if as_text:
        target = target.isoformat()
    assert outcome(pol.until_instant, contact_in(name), target, t) == outcome(
        ref_until_instant, name, target, t
    )


def test_the_cases_the_examples_pin() -> None:
    """Quiet hours and `wait until` on the nights clocks change, spelt out."""
    paris = DeliveryPolicy({"timezone": "Europe/Paris", "quiet_hours": [22 * 3600, 9000]})
    plain = Contact("c")
    # 2024-03-30 23:00 CET; the window ends at 02:30 on the 31st, which the clock never reads:
    # at 02:00 CET (01:00Z) it jumps to 03:00 CEST, outside the window: the end.
    end = paris._quiet_end(plain, datetime(2024, 3, 30, 22, tzinfo=UTC).timestamp())
    assert end == datetime(2024, 3, 31, 1, 0, tzinfo=UTC).timestamp()
    # New York 2024-11-03 01:30 happens twice: `wait until 01:30` from 00:00 EDT (04:00Z) is
    # the first (EDT, 05:30Z); from 01:45 EDT (05:45Z), the second (EST, 06:30Z).
    ny = DeliveryPolicy({"timezone": "America/New_York"})
    at = ny.until_instant(plain, "01:30", datetime(2024, 11, 3, 4, tzinfo=UTC).timestamp())
    assert at == datetime(2024, 11, 3, 5, 30, tzinfo=UTC).timestamp()
    at = ny.until_instant(plain, "01:30", datetime(2024, 11, 3, 5, 45, tzinfo=UTC).timestamp())
    assert at == datetime(2024, 11, 3, 6, 30, tzinfo=UTC).timestamp()


def test_the_instant_cache_is_emptied_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy, "_INSTANTS_MAX", 2)
    monkeypatch.setattr(policy, "_INSTANTS", {})
    pol = DeliveryPolicy({"timezone": "Europe/Paris"})
    contact = Contact("c")
    for t in range(1_700_000_000, 1_700_000_000 + 20 * 86400, 7 * 3600 + 17):
        assert pol.until_instant(contact, "08:00", t) == ref_until_instant(
            "Europe/Paris", "08:00", t
        )
        assert len(policy._INSTANTS) <= 2  # bounded memory, whatever the log


def test_in_range_instants_never_fall_back_to_pendulum(monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard-library path alone serves the instants of 1850-2045 around every DST
    change (the pendulum fallback is for the ends of the calendar): a fast path that raised
    and fell back would give the right answers, slowly."""

    def no_fallback(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"fell back to pendulum for {args}")

    monkeypatch.setattr(policy, "_instant_pendulum", no_fallback)
    monkeypatch.setattr(
        policy, "pendulum", SimpleNamespace(timezone=pendulum.timezone, from_timestamp=no_fallback)
    )
    monkeypatch.setattr(policy, "_INSTANTS", {})
    window = (22 * 3600, 2 * 3600 + 30 * 60)  # ends inside spring-forward gaps and fall-back folds
    pol = DeliveryPolicy({"timezone": "UTC", "quiet_hours": list(window)})
    for name in ZONES:
        contact = contact_in(name)
        for base in transitions(name)[-12:]:
            for offset in range(-6 * 3600, 6 * 3600 + 1, 3600):
                t = float(base + offset)
                assert pol._quiet_end(contact, t) == ref_quiet_end(window, name, t)
                for sod in (3600 + 1800, 2 * 3600 + 1800):
                    expected = ref_until_instant(name, time(sod // 3600, sod // 60 % 60), t)
                    assert (
                        pol.until_instant(contact, time(sod // 3600, sod // 60 % 60), t) == expected
                    )
