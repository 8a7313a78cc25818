"""`wait until` and quiet hours at their edges: what a target text means, the very instant a
time happens, fractional seconds, and datetimes at the ends of the calendar (docs/language.md
section 5.2 and docs/simulate.md). Each expected instant is worked out by hand from the zone's
offset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_run import identify, run_text, track

WAIT = """
settings:
  timezone "{zone}"
trait target: time
flow f:
  on go
  wait until {target}
  tag "done"
"""


def resumes_with_trait(tmp_path: Path, zone: str, kind: str, value: str) -> str | None:
    """When `wait until target` resumes for a contact whose trait `target` (of `kind`) is
    `value`, entering at 2025-01-10T06:00:00Z."""
    script = WAIT.format(zone=zone, target="target").replace("target: time", f"target: {kind}")
    events = [
        identify("u", "2025-01-10T05:00:00Z", target=value),
        track("u", "go", "2025-01-10T06:00:00Z"),
    ]
    return tag_time(tmp_path, script, events, "2025-02-01T00:00:00Z")


def tag_time(tmp_path: Path, script: str, events: list[dict[str, Any]], until: str) -> str | None:
    tags = [e["at"] for e in run_text(tmp_path, script, events, until) if e["action"] == "tag"]
    return tags[0] if tags else None


@pytest.mark.parametrize(
    ("text", "resumes"),
    [
        ("09:30", "2025-01-10T08:30:00Z"),  # 09:30 in Paris (UTC+1)
        ("09:30:15", "2025-01-10T08:30:15Z"),
        # not HH:MM[:SS] and not a datetime: nothing to wait for, the flow goes on at once
        ("09:30:00Z", "2025-01-10T06:00:00Z"),
        ("T09:30", "2025-01-10T06:00:00Z"),
        ("0930", "2025-01-10T06:00:00Z"),
        ("9am", "2025-01-10T06:00:00Z"),
    ],
)
def test_a_text_target_is_a_time_of_day_only_as_hh_mm(
    tmp_path: Path, text: str, resumes: str
) -> None:
    assert resumes_with_trait(tmp_path, "Europe/Paris", "time", text) == resumes


def test_a_wait_until_at_the_first_instant_of_a_time_that_happens_twice_goes_on_now(
    tmp_path: Path,
) -> None:
    # New York, 2 Nov 2025: 01:30 EDT (05:30Z) and again 01:30 EST (06:30Z); at the first, the
    # next instant at or after now that reads 01:30 is now
    script = WAIT.format(zone="America/New_York", target="01:30")
    events = [track("u", "go", "2025-11-02T05:30:00Z")]
    assert tag_time(tmp_path, script, events, "2025-11-03T00:00:00Z") == "2025-11-02T05:30:00Z"


@pytest.mark.parametrize(
    ("value", "resumes"),
    [
        # a datetime trait whose UTC instant is before year 1 has passed: at once
        ("0001-01-01T00:30:00+01:00", "2025-01-10T06:00:00Z"),
        # one whose UTC instant is past year 9999 never comes
        ("9999-12-31T23:30:00-01:00", None),
    ],
)
def test_a_datetime_past_either_end_of_the_calendar(
    tmp_path: Path, value: str, resumes: str | None
) -> None:
    assert resumes_with_trait(tmp_path, "UTC", "datetime", value) == resumes


def test_a_send_at_a_fractional_second_in_quiet_hours_waits_for_the_local_end(
    tmp_path: Path,
) -> None:
    # 22:15:00.250 in Paris (UTC+1), quiet 21:00 to 08:00: the send goes at 08:00 local
    script = """
settings:
  timezone "Europe/Paris"
  quiet hours 21:00 to 08:00
message hello:
  channel push
  text "hi"
flow f:
  on go
  send hello
"""
    effects = run_text(tmp_path, script, [track("u", "go", "2025-01-10T21:15:00.250Z")])
    assert [e["at"] for e in effects if e["action"] == "send"] == ["2025-01-11T07:00:00Z"]
