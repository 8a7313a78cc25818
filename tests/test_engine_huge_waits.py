"""Waits whose computed duration is too large to hold (LANGUAGE.md section 5.2, docs/language.md
"The representable range"): `event.n * 1h` with n = 1e12 is longer than Python's `timedelta`
holds. Such a wait is past the end of time, so it never ends: it is not `none`, which a wait
takes as "go on at once" (kept for values that are genuinely missing, and for negative ones).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bounded import bounded
from checking import check_text
from engine_run import track

from leadlang import limits
from leadlang.interpreter.compile import compile_program
from leadlang.runtime.engine import Engine
from leadlang.runtime.simulate import public, read_events, simulate

START = "2025-01-01T00:00:00Z"


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
