"""A contact's state survives a JSON round trip between any two inputs (what serve does when it
stores a contact per row): the effects are the same as an uninterrupted run."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from test_engine_properties import PROGRAM, logs

from leadlang.interpreter.compile import compile_program
from leadlang.runtime.engine import Engine
from leadlang.runtime.simulate import parse_until, public, read_events, simulate
from leadlang.runtime.state import contact_from_json, contact_to_json
from leadlang.runtime.store import MemoryStore


def _reloading_run(engine: Engine, events: list[Any], until: float) -> list[dict[str, Any]]:
    """simulate's loop, but every contact is saved to JSON and loaded back after each input."""
    store = MemoryStore()
    out: list[dict[str, Any]] = []

    def reload(contact_id: str) -> None:
        contact = store.contacts[contact_id]
        scheduled = contact.scheduled
        fresh = contact_from_json(orjson.loads(orjson.dumps(contact_to_json(contact))))
        fresh.scheduled = scheduled
        store.contacts[contact_id] = fresh

    def fire(limit: float) -> None:
        while (due := store.pop_due(limit)) is not None:
            instant, contact = due
            out.extend(public(e) for e in engine.on_time(contact, instant))
            store.schedule(contact)
            reload(contact.id)

    for event in events:
        fire(event.t)
        contact = store.get(event.contact)
        out.extend(public(e) for e in engine.on_event(contact, event))
        store.schedule(contact)
        reload(contact.id)
    fire(until)
    return out


@settings(max_examples=20, deadline=None)
@given(logs())
def test_state_round_trips_through_json(raw: list[dict[str, Any]]) -> None:
    ir = compile_program(PROGRAM)
    log = read_events(orjson.dumps(e) for e in raw)
    until = parse_until(None, log.events[-1].t)
    assert until is not None
    straight: list[dict[str, Any]] = []
    simulate(Engine(ir), log.events, until, lambda e: straight.append(public(e)))
    assert _reloading_run(Engine(ir), log.events, until) == straight
