"""Quiet hours on the nights clocks change: the window ends at the first instant the local
clock reads a time outside it (earlier than the written end when the clock jumps past it,
later when it falls back into the window). Each expected instant below is worked out by hand
from the zone's published transition, in three zones (one southern), across both changes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from bounded import bounded
from checking import check_text
from engine_run import identify, run, track

from leadlang.runtime.policy import DeliveryPolicy
from leadlang.runtime.state import Contact


def z(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def hm(text: str) -> int:
    hour, minute = text.split(":")
    return int(hour) * 3600 + int(minute) * 60


# (zone, window, a send at (UTC), held until (UTC), why)
TABLE = [
    # Paris: 2024-03-31 at 01:00Z, 02:00 CET becomes 03:00 CEST
    ("Europe/Paris", "22:00", "02:30", "2024-03-30T22:00", "2024-03-31T01:00", "jumps past 02:30"),
    ("Europe/Paris", "22:00", "08:00", "2024-03-30T22:00", "2024-03-31T06:00", "08:00 CEST"),
    ("Europe/Paris", "01:00", "02:00", "2024-03-31T00:30", "2024-03-31T01:00", "02:00 is 03:00"),
    # Paris: 2024-10-27 at 01:00Z, 03:00 CEST becomes 02:00 CET
    ("Europe/Paris", "22:00", "02:30", "2024-10-26T21:00", "2024-10-27T00:30", "first 02:30"),
    ("Europe/Paris", "22:00", "03:00", "2024-10-26T21:00", "2024-10-27T02:00", "03:00 CET"),
    ("Europe/Paris", "21:00", "08:00", "2024-10-26T21:00", "2024-10-27T07:00", "08:00 CET"),
    # New York: 2024-03-10 at 07:00Z, 02:00 EST becomes 03:00 EDT
    ("America/New_York", "22:00", "02:30", "2024-03-10T04:00", "2024-03-10T07:00", "jumps"),
    ("America/New_York", "22:00", "07:00", "2024-03-10T04:00", "2024-03-10T11:00", "07:00 EDT"),
    # New York: 2024-11-03 at 06:00Z, 02:00 EDT becomes 01:00 EST
    ("America/New_York", "00:00", "01:30", "2024-11-03T04:30", "2024-11-03T05:30", "01:30 EDT"),
    ("America/New_York", "00:00", "01:30", "2024-11-03T06:15", "2024-11-03T06:30", "again EST"),
    ("America/New_York", "22:00", "02:00", "2024-11-03T03:00", "2024-11-03T07:00", "02:00 EST"),
    # Sydney: 2024-04-07 at 16:00Z on the 6th, 03:00 AEDT becomes 02:00 AEST
    ("Australia/Sydney", "22:00", "02:30", "2024-04-06T12:00", "2024-04-06T15:30", "first"),
    ("Australia/Sydney", "22:00", "03:00", "2024-04-06T12:00", "2024-04-06T17:00", "03:00 AEST"),
    ("Australia/Sydney", "21:00", "08:00", "2024-04-06T12:00", "2024-04-06T22:00", "08:00 AEST"),
    # Sydney: 2024-10-06 at 16:00Z on the 5th, 02:00 AEST becomes 03:00 AEDT
    ("Australia/Sydney", "22:00", "02:30", "2024-10-05T12:00", "2024-10-05T16:00", "jumps"),
    ("Australia/Sydney", "21:00", "08:00", "2024-10-05T12:00", "2024-10-05T21:00", "08:00 AEDT"),
    # ordinary nights, for comparison
    ("Europe/Paris", "22:00", "02:30", "2024-06-01T21:00", "2024-06-02T00:30", "02:30 CEST"),
    ("Australia/Sydney", "22:00", "02:30", "2024-06-01T12:00", "2024-06-01T16:30", "02:30 AEST"),
]


@pytest.mark.parametrize(
    ("zone", "start", "end", "at", "until", "why"), TABLE, ids=[f"{r[0]}-{r[5]}" for r in TABLE]
)
def test_quiet_window_ends_at_the_first_reading_outside_it(
    zone: str, start: str, end: str, at: str, until: str, why: str
) -> None:
    policy = DeliveryPolicy({"timezone": zone, "quiet_hours": [hm(start), hm(end)]})
    decision = policy.decide(Contact("c"), "push", z(at))
    assert decision.defer_until == z(until), why
    # and the instant it ends at is not quiet: the send goes
    assert policy.decide(Contact("c"), "push", z(until)).defer_until is None


SCRIPT = """
settings:
  timezone "{zone}"
  quiet hours {start} to {end}

message hello:
  channel push
  text "hi"

flow welcome:
  on signed_up
  reenter always
  send hello
"""


@pytest.mark.parametrize(
    ("zone", "start", "end", "at", "until"),
    [row[:5] for row in TABLE[::3]],
    ids=[f"{r[0]}-{r[3]}" for r in TABLE[::3]],
)
def test_simulate_sends_at_the_end_of_the_window(
    tmp_path: Path, zone: str, start: str, end: str, at: str, until: str
) -> None:
    checked = check_text(tmp_path, SCRIPT.format(zone=zone, start=start, end=end))
    assert checked.program is not None
    with bounded():
        effects = run(checked.program, [track("u", "signed_up", at + ":00Z")])
    sends = [e["at"] for e in effects if e["action"] == "send"]
    assert sends == [until + ":00Z"]


def test_equal_times_are_an_empty_window(tmp_path: Path) -> None:
    checked = check_text(tmp_path, SCRIPT.format(zone="Europe/Paris", start="09:00", end="09:00"))
    assert [d.code for d in checked.diagnostics] == ["F021"]
    assert checked.program is not None
    events = [
        identify("u", "2025-01-01T00:00:00Z"),
        *(track("u", "signed_up", f"2025-01-0{d}T{h:02d}:00:00Z") for d in (2, 3) for h in (8, 9)),
    ]
    with bounded():
        effects = run(checked.program, events)
    # every send at once, whatever the hour (08:00Z is 09:00 in Paris)
    assert [e["at"] for e in effects if e["action"] == "send"] == [
        e["timestamp"] for e in events[1:]
    ]
