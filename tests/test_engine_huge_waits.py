"""Waits whose computed duration is too large to hold (LANGUAGE.md section 5.2, docs/language.md
"The representable range"): `event.n * 1h` with n = 1e12 is longer than Python's `timedelta`
holds. Such a wait is past the end of time, so it never ends: it is not `none`, which a wait
takes as "go on at once" (kept for values that are genuinely missing, and for negative ones).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bounded import bounded
from checking import check_text
from engine_run import track

from leadlang import limits
from leadlang.interpreter.compile import compile_program
from leadlang.runtime.engine import Engine
from leadlang.runtime.simulate import public, read_events, simulate

SCRIPT = """
event x(n: number)
event y()
flow w:
  on x
  wait event.n * 1h
  tag "w"
flow wf:
  on x
  wait for y up to event.n * 1h else tag "timeout"
  tag "got"
flow ck:
  on x
  check "late" in tags within event.n * 1h else tag "ck_else"
  tag "ck_ok"
flow wu:
  on x
  wait until now + event.n * 1h
  tag "wu"
flow late:
  on y
  tag "late"
"""
START = "2025-01-01T00:00:00Z"
AT_ONCE = {(START, "w"), (START, "timeout"), (START, "ck_else"), (START, "wu")}


def run_text(folder: Path, script: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """As `engine_run.run_text`, to the end of time, with the log written by `json` (orjson
    writes no integer past 64 bits, and the reader takes them)."""
    checked = check_text(folder, script)
    assert checked.program is not None, [d.message for d in checked.diagnostics]
    log = read_events(json.dumps(e).encode() for e in events)
    assert not log.bad, log.bad
    out: list[dict[str, Any]] = []
    with bounded():
        engine = Engine(compile_program(checked.program))
        simulate(engine, log.events, limits.LAST_INSTANT, lambda e: out.append(public(e)), None, 1)
    return out


def _tags(effects: list[dict[str, Any]]) -> dict[str, set[tuple[str, str]]]:
    found: dict[str, set[tuple[str, str]]] = {}
    for e in effects:
        if e["action"] == "tag":
            found.setdefault(e["contact"], set()).add((e["at"], e["tag"]))
    return found


@pytest.mark.parametrize("n", [1e12, 1e15, 1e308, 123456789012345678901234567890])
def test_a_wait_too_long_to_hold_never_ends_but_a_missing_or_negative_one_goes_on_at_once(
    tmp_path: Path, n: float
) -> None:
    events = [
        track("huge", "x", START, n=n),
        track("answered", "x", START, n=n),
        track("missing", "x", START),
        track("negative", "x", START, n=-n),
        track("answered", "y", "2030-01-01T00:00:00Z"),
    ]
    effects = run_text(tmp_path, SCRIPT, events)
    assert _tags(effects) == {
        # no tag at all: each flow still waits at the end of time (no exit either)
        "answered": {
            # `wait for` and `check ... within` still wait for their event and condition
            ("2030-01-01T00:00:00Z", "late"),
            ("2030-01-01T00:00:00Z", "got"),
            ("2030-01-01T00:00:00Z", "ck_ok"),
        },
        "missing": AT_ONCE,
        "negative": AT_ONCE,
    }
    assert {e["flow"] for e in effects if e["contact"] == "huge"} == {"w", "wf", "ck", "wu"}
    assert not any(e["action"] == "exit" for e in effects if e["contact"] == "huge")


def test_header_durations_too_long_to_hold_are_as_long_as_any_span(tmp_path: Path) -> None:
    # 99999999 * 521722w is more seconds than a 64-bit integer of the IR holds
    script = """
event x()
event y()
flow g:
  on x
  reenter after 99999999 * 521722w
  goal y within 99999999 * 521722w
  wait 300000w
  tag "never"
"""
    events = [
        track("u", "x", START),
        track("u", "y", "5025-01-01T00:00:00Z"),  # 3,000 years later: within
        track("u", "x", "5026-01-01T00:00:00Z"),  # after its exit: not again
    ]
    effects = run_text(tmp_path, script, events)
    assert [(e["at"], e["action"], e.get("reason")) for e in effects] == [
        (START, "enter", None),
        ("5025-01-01T00:00:00Z", "goal", None),
        ("5025-01-01T00:00:00Z", "exit", "goal"),
    ]


def test_a_wait_for_up_to_a_negative_duration_times_out_now_not_in_the_past(
    tmp_path: Path,
) -> None:
    script = """
event x(n: number)
event y()
flow wf:
  on x
  wait for y up to event.n * 1h else tag "timeout"
"""
    effects = run_text(tmp_path, script, [track("u", "x", START, n=-1000)])
    assert [(e["at"], e["action"]) for e in effects] == [
        (START, "enter"),
        (START, "tag"),
        (START, "exit"),
    ]


def test_a_saturated_result_keeps_its_sign_through_subtraction_and_division(
    tmp_path: Path,
) -> None:
    # one minute minus a duration past FOREVER is negative (it was FOREVER: the wait never
    # ended), as is a negative duration divided by a tiny positive number; a duration too
    # long to hold is 999,999,999 days (docs/language.md "The representable range")
    script = """
event x(n: number, tiny: number)
flow sub:
  on x
  wait 1m - (event.n * 1h + 1h)
  tag "sub"
flow div:
  on x
  wait (0s - 1h) / event.tiny
  tag "div"
flow days:
  on x
  if event.n * 1h / 1d == 999999999:
    tag "days"
"""
    effects = run_text(tmp_path, script, [track("u", "x", START, n=1e12, tiny=1e-300)])
    assert _tags(effects) == {"u": {(START, "sub"), (START, "div"), (START, "days")}}


def test_a_wait_for_up_to_one_second_times_out_a_second_later(tmp_path: Path) -> None:
    script = """
event x(n: number)
event y()
flow wf:
  on x
  wait for y up to event.n * 1s else tag "timeout"
"""
    effects = run_text(tmp_path, script, [track("u", "x", START, n=1)])
    assert [(e["at"], e["action"]) for e in effects] == [
        (START, "enter"),
        ("2025-01-01T00:00:01Z", "tag"),
        ("2025-01-01T00:00:01Z", "exit"),
    ]
