"""Run a Program over a list of Segment-shaped dicts and return the printed effects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from bounded import bounded
from checking import check_text

from leadlang.interpreter.compile import compile_program
from leadlang.interpreter.program import Program
from leadlang.runtime.engine import Engine
from leadlang.runtime.simulate import parse_until, public, read_events, simulate


def run(
    program: Program, events: list[dict[str, Any]], until: str | None = None, workers: int = 1
) -> list[dict[str, Any]]:
    log = read_events(orjson.dumps(e) for e in events)
    assert not log.bad, log.bad
    end = parse_until(until, log.events[-1].t if log.events else None)
    assert end is not None
    out: list[dict[str, Any]] = []
    engine = Engine(compile_program(program))
    simulate(engine, log.events, end, lambda e: out.append(public(e)), None, workers)
    return out


def run_text(
    folder: Path, script: str, events: list[dict[str, Any]], until: str | None = None
) -> list[dict[str, Any]]:
    """Check `script` (written under `folder`), which must have no error, and run `events`
    through it, under `bounded`'s time and memory limits."""
    checked = check_text(folder, script)
    assert checked.program is not None, [d.message for d in checked.diagnostics]
    with bounded():
        return run(checked.program, events, until)


def track(user: str, event: str, at: str, **props: Any) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": event, "properties": props, "timestamp": at}


def identify(user: str, at: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "traits": traits, "timestamp": at}


def actions(effects: list[dict[str, Any]], *keys: str) -> list[tuple[Any, ...]]:
    return [tuple(e.get(k) for k in ("at", "action", *keys)) for e in effects]
