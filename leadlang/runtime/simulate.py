"""`leadlang simulate`: read a Segment-shaped event log and replay it on a virtual clock.

Events are processed in timestamp order (input order breaks ties); before each event, every
timer due at or before its instant fires first, in due order, so time-driven changes happen
at their exact instant. After the last event the clock runs on to `until`.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from heapq import heappop
from typing import Any

import attrs
import orjson

from leadlang.interpreter.scope import normalize_event_name
from leadlang.runtime.effects import Effect, format_text, public
from leadlang.runtime.engine import Engine, Event
from leadlang.runtime.store import MemoryStore

DEFAULT_RUN_ON = 30 * 86400.0


@attrs.frozen
class BadLine:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@attrs.define
class EventLog:
    events: list[Event]
    bad: list[BadLine]


def parse_timestamp(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_line(raw: bytes, number: int) -> Event | BadLine | None:
    """One line of the log; None for a blank line."""
    if not raw.strip():
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return BadLine(number, f"not valid JSON ({exc.args[0].split(':')[0]})")
    if not isinstance(data, dict):
        return BadLine(number, "expected a JSON object")
    kind = data.get("type")
    if kind not in ("track", "identify", "page"):
        return BadLine(
            number, f"unknown type {orjson.dumps(kind).decode()}; expected track, identify or page"
        )
    contact = data.get("userId") or data.get("anonymousId")
    if contact is None or contact == "":
        return BadLine(number, "missing userId or anonymousId")
    raw_time = data.get("timestamp")
    if raw_time is None:
        return BadLine(number, "missing timestamp")
    t = parse_timestamp(raw_time)
    if t is None:
        shown = orjson.dumps(raw_time).decode()
        return BadLine(number, f"timestamp {shown} is not an ISO 8601 time")
    props = data.get("properties")
    if not isinstance(props, dict):
        props = {}
    traits = data.get("traits")
    if kind == "identify":
        if traits is not None and not isinstance(traits, dict):
            return BadLine(number, "traits must be an object")
        return Event(t, number, str(contact), None, props, traits or {})
    if kind == "page":
        return Event(t, number, str(contact), "page_viewed", props, None)
    event = data.get("event")
    name = _event_name(event) if isinstance(event, str) else None
    if not name:
        return BadLine(number, "track without an event name")
    return Event(t, number, str(contact), name, props, None)


_NAMES: dict[str, str] = {}


def _event_name(raw: str) -> str:
    """Normalised event name; logs repeat a few names, so they are normalised once each."""
    name = _NAMES.get(raw)
    if name is None:
        name = _NAMES[raw] = normalize_event_name(raw)
    return name


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector. Reading and simulating allocate hundreds of
    thousands of long-lived objects (events, histories) and create no reference cycles, so
    the collector's passes over the growing heap are pure overhead (~10% of a run);
    reference counting still frees everything as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_events(lines: Iterable[bytes]) -> EventLog:
    events: list[Event] = []
    bad: list[BadLine] = []
    with gc_paused():
        for number, raw in enumerate(lines, start=1):
            parsed = parse_line(raw, number)
            if parsed is None:
                continue
            if isinstance(parsed, BadLine):
                bad.append(parsed)
            else:
                events.append(parsed)
    events.sort(key=lambda e: e.t)  # stable: input order breaks ties
    return EventLog(events, bad)


_RELATIVE = re.compile(r"^\+((?:\d+[smhdw])+)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_until(text: str | None, last_event: float | None) -> float | None:
    """`--until`: an ISO time, or `+D` after the last event; None when unparseable."""
    base = last_event if last_event is not None else 0.0
    if text is None:
        return base + DEFAULT_RUN_ON
    match = _RELATIVE.match(text.strip())
    if match:
        total = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", match.group(1)))
        return base + total
    return parse_timestamp(text)


def simulate(
    engine: Engine,
    events: list[Event],
    until: float,
    emit: Callable[[Effect], None],
    progress: Callable[[int], None] | None = None,
) -> MemoryStore:
    """Run every event and timer up to `until`, calling `emit` for each effect in order."""
    with gc_paused():
        return _simulate(engine, events, until, emit, progress)


def _simulate(
    engine: Engine,
    events: list[Event],
    until: float,
    emit: Callable[[Effect], None],
    progress: Callable[[int], None] | None,
) -> MemoryStore:
    store = MemoryStore()
    on_event, on_time, quiet_time, pop_due, get, schedule = (
        engine.on_event,
        engine.on_time,
        engine.quiet_time,
        store.pop_due,
        store.get,
        store.schedule,
    )
    timers = store.timers
    contacts = store.contacts
    for i, event in enumerate(events):
        if event.t > until:
            break
        t = event.t
        # `store.pop_due` inlined (one call per timer is measurable at 150,000 timers):
        # the earliest timer at or before the event, skipping superseded ones.
        while timers and timers[0][0] <= t:
            instant, _, contact_id = heappop(timers)
            contact = contacts[contact_id]
            if contact.scheduled != instant:
                continue  # superseded by a later schedule
            contact.wake = contact.scheduled = None
            if contact.quiet_at == instant:
                quiet_time(contact, instant)  # an instant that cannot change anything
            else:
                for effect in on_time(contact, instant):
                    emit(effect)
            schedule(contact)
        contact = get(event.contact)
        for effect in on_event(contact, event):
            emit(effect)
        schedule(contact)
        if progress is not None and i % 1000 == 0:
            progress(i)
    while (due := pop_due(until)) is not None:
        instant, contact = due
        for effect in on_time(contact, instant):
            emit(effect)
        schedule(contact)
    return store


__all__ = ["format_text", "parse_until", "public", "read_events", "simulate"]
