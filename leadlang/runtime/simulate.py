"""`leadlang simulate`: read a Segment-shaped event log and replay it on a virtual clock.

Each contact's events are processed in timestamp order (input order breaks ties); before each
event, the contact's time-driven instants due at or before it come first, so time-driven
changes happen at their exact instant; after its last event the clock runs on to `until`.
Contacts are run one after the other (or shared among processes) and their effects merged
into one order (see `simulate`).
"""

from __future__ import annotations

import gc
import io
import math
import multiprocessing
import pickle
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any, BinaryIO

import attrs
import msgspec
import orjson

from leadlang.interpreter.scope import normalize_event_name
from leadlang.limits import (
    FIRST_INSTANT,
    FIRST_TEXT,
    LAST_INSTANT,
    LAST_TEXT,
    MAX_DIGITS,
    MAX_JSON_DEPTH,
    json_depth_ok,
)
from leadlang.runtime.effects import Effect, format_text, public
from leadlang.runtime.engine import Engine, Event
from leadlang.runtime.state import Contact

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
    # Segment calls simulate has no use for (`alias`, `group`): how many of each were read.
    ignored: dict[str, int] = attrs.field(factory=dict)


# Segment's `page` and `screen` calls are tracks of these events.
VIEW_EVENTS = {"page": "page_viewed", "screen": "screen_viewed"}
# Segment calls that say nothing simulate uses: read, counted, and left aside.
IGNORED_TYPES = frozenset({"alias", "group"})


def contact_id(data: dict[str, Any]) -> str | None:
    """The contact of a line: `userId`, else `anonymousId`. An empty or null id is missing,
    but `0` is the contact "0": a number is its JSON text. A boolean, list or object is no
    id (as serve's ingest decides: the same log names the same contacts in both)."""
    for key in ("userId", "anonymousId"):
        value = data.get(key)
        if value is None or value == "" or isinstance(value, bool | dict | list):
            continue
        if isinstance(value, str):
            return value
        # whole, however long; a float as serve's ingest writes it (orjson: `1e+21`)
        return str(value) if isinstance(value, int) else orjson.dumps(value).decode()
    return None


def parse_timestamp(text: Any) -> float | None:
    """An ISO 8601 time as POSIX seconds; None when it is not one, or out of range."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        t = moment.timestamp()
    except (ValueError, OverflowError):  # (year 0 or 10000 once in UTC: out of range)
        return None
    return t if FIRST_INSTANT <= t <= LAST_INSTANT else None


def _instant(raw: Any) -> float | None:
    """A line's `timestamp` as POSIX seconds (None: not an ISO 8601 time in range)."""
    try:  # the common `2025-01-01T10:00:00Z`, at C speed
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is not None:
            t = moment.timestamp()
            if FIRST_INSTANT <= t <= LAST_INSTANT:
                return t
            return None
    except (TypeError, ValueError, OverflowError):
        pass
    return parse_timestamp(raw)


def _time_problem(raw: Any) -> str:
    """Why a line's `timestamp` was refused."""
    shown = _show(raw)
    if isinstance(raw, str):
        try:
            datetime.fromisoformat(raw.strip().replace("z", "Z"))
        except ValueError:
            pass
        else:
            return f"timestamp {shown} is out of range ({FIRST_TEXT} to {LAST_TEXT})"
    return f"timestamp {shown} is not an ISO 8601 time"


_BYTE = re.compile(r"\s*\(byte (\d+)\)$")


def _json_problem(exc: msgspec.MsgspecError, raw: bytes) -> str:
    """msgspec's `JSON is malformed: invalid character (byte 5)` as `invalid character at
    column 6` (columns count characters, from 1)."""
    text = str(exc).removeprefix("JSON is malformed: ").split(" - at `", 1)[0]

    def column(match: re.Match[str]) -> str:
        offset = int(match.group(1))
        return f" at column {len(raw[:offset].decode('utf-8', 'replace')) + 1}"

    text = _BYTE.sub(column, text)
    return text[:1].lower() + text[1:]


def parse_line(raw: bytes, number: int) -> Event | BadLine | str | None:
    """One line of the log; None for a blank line, its type for an ignored call."""
    try:
        data = _decode_any(raw)
    except msgspec.MsgspecError as exc:
        if not raw.strip():
            return None
        return BadLine(number, f"not valid JSON ({_json_problem(exc, raw)})")
    except RecursionError:
        return BadLine(number, _TOO_DEEP)
    if not isinstance(data, dict):
        return BadLine(number, "expected a JSON object")
    if not _shallow(data.get("properties"), data.get("traits")):
        return BadLine(number, _TOO_DEEP)
    kind = data.get("type")
    if isinstance(kind, str) and kind in IGNORED_TYPES:
        return kind
    if kind not in ("track", "identify", "page", "screen"):
        return BadLine(
            number, f"unknown type {_show(kind)}; expected track, identify, page or screen"
        )
    contact = contact_id(data)
    if contact is None:
        return BadLine(number, "missing userId or anonymousId")
    raw_time = data.get("timestamp")
    if raw_time is None:
        return BadLine(number, "missing timestamp")
    t = _instant(raw_time)
    if t is None:
        return BadLine(number, _time_problem(raw_time))
    # (as serve's ingest, which answers 400: a list or a text is no set of properties)
    props = data.get("properties")
    if props is None:
        props = {}
    elif not isinstance(props, dict):
        return BadLine(number, "properties must be an object")
    traits = data.get("traits")
    if traits is not None and not isinstance(traits, dict):
        return BadLine(number, "traits must be an object")
    if kind == "identify":
        context = data.get("context")
        if isinstance(context, dict) and context.get("traits") is not None:
            traits = _with_context_traits(traits, context["traits"])
            if traits is None:
                return BadLine(number, "context.traits must be an object")
            if not _shallow(None, traits):
                return BadLine(number, _TOO_DEEP)
        return Event(t, number, contact, None, props, traits or {})
    if kind in VIEW_EVENTS:
        return Event(t, number, contact, VIEW_EVENTS[kind], props, None)
    event = data.get("event")
    name = _event_name(event) if isinstance(event, str) else None
    if not name:
        return BadLine(number, "track without an event name")
    return Event(t, number, contact, name, props, None)


def _with_context_traits(traits: dict[str, Any] | None, extra: Any) -> dict[str, Any] | None:
    """An identify's traits with its `context.traits` under them (RudderStack's client sends
    an identify's traits only there; serve's ingest reads them the same way); None when
    `context.traits` is not an object."""
    if not isinstance(extra, dict):
        return None
    return {**extra, **(traits or {})}


def _show(value: Any) -> str:
    """A JSON value as the log wrote it (a long one by its start)."""
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


_TOO_DEEP = f"properties or traits nested more than {MAX_JSON_DEPTH} levels deep"


class _Line(msgspec.Struct, gc=False):
    """The fields of a log line simulate reads, when they have their usual types (any other
    line goes to `parse_line`, which names what is wrong)."""

    type: str
    timestamp: str
    # Ids of any JSON type (`0`, `12345`): `contact_id` turns them into text.
    userId: Any = None
    anonymousId: Any = None
    event: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    # left undecoded: only an identify's `context.traits` is read (`_with_context_traits`)
    context: msgspec.Raw = msgspec.Raw(b"")


_decode_any = msgspec.json.Decoder().decode
_decode_lines = msgspec.json.Decoder(_Line).decode_lines


def _parse_chunk(chunk: bytes, first: int, ignored: dict[str, int]) -> list[Event] | None:
    """The events of whole lines `chunk` (numbered from `first`), decoded in one call to
    msgspec; None when some line is blank or not a plain valid event (`parse_line` then reads
    the chunk line by line, naming the bad lines)."""
    try:
        lines = _decode_lines(chunk)
    except (msgspec.MsgspecError, RecursionError):
        return None
    if len(lines) != chunk.count(b"\n") + (not chunk.endswith(b"\n")):
        return None  # blank lines (skipped by msgspec, but counted)
    events: list[Event] = []
    append = events.append
    skipped: dict[str, int] = {}
    known = len(lines)  # `{` or `[` of the chunk: each line's own object, ...
    for number, line in enumerate(lines, start=first):
        kind = line.type
        if kind in IGNORED_TYPES:
            skipped[kind] = skipped.get(kind, 0) + 1
            continue
        contact = line.userId
        if contact.__class__ is not str or not contact:
            contact = contact_id({"userId": line.userId, "anonymousId": line.anonymousId})
        t = _instant(line.timestamp)
        if contact is None or t is None:
            return None
        props = line.properties
        if props is None:
            props = {}
        else:
            known += 1  # ... its properties ...
        if line.traits is not None:
            known += 1  # ... and its traits
        if kind == "track":
            name = line.event
            if name is None or not (name := _event_name(name)):
                return None
            append(Event(t, number, contact, name, props, None))
        elif kind == "identify":
            traits = line.traits
            if line.context:
                context = _decode_any(line.context)
                if isinstance(context, dict) and context.get("traits") is not None:
                    traits = _with_context_traits(traits, context["traits"])
                    if traits is None or not _shallow(None, traits):
                        return None  # (`parse_line` names the problem)
            append(Event(t, number, contact, None, props, traits or {}))
        elif kind in VIEW_EVENTS:
            append(Event(t, number, contact, VIEW_EVENTS[kind], props, None))
        else:
            return None
    # Any other opening bracket belongs to a nested value (or a string, or a field simulate
    # does not read). A line nested more than MAX_JSON_DEPTH deep needs MAX_JSON_DEPTH - 2 of
    # them: with fewer in the whole chunk, no line is walked to measure its depth.
    if chunk.count(b"{") + chunk.count(b"[") - known > MAX_JSON_DEPTH - 3:
        for line in lines:
            if not _shallow(line.properties, line.traits):
                return None
    for kind, count in skipped.items():  # counted only once the whole chunk is good
        ignored[kind] = ignored.get(kind, 0) + count
    return events


def _shallow(props: Any, traits: Any) -> bool:
    """Whether a line's properties and traits nest at most MAX_JSON_DEPTH deep, counting
    the line's own object."""
    return (props is None or json_depth_ok(props, MAX_JSON_DEPTH - 1)) and (
        traits is None or json_depth_ok(traits, MAX_JSON_DEPTH - 1)
    )


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
            if not gc.get_freeze_count():  # (nobody else froze objects, to keep them so)
                # What was allocated meanwhile joins the oldest generation as it stands
                # (`freeze` then `unfreeze`: two list splices), where only a full collection
                # looks at it, as at any long-lived object. Left in the youngest, all of it
                # would be walked by the collection the next allocation starts (~3% of a run).
                gc.freeze()
                gc.unfreeze()
            gc.enable()


CHUNK = 1 << 16  # bytes of a log decoded at once (small chunks stay in the CPU cache)
# A line longer than this is a bad line, skipped without being held in memory whole (a
# log of one endless line, `/dev/zero`, would otherwise take all memory).
MAX_LINE = 1 << 20
TOO_LONG = f"longer than {MAX_LINE >> 20} MB (one event a line): skipped"


def read_events(source: BinaryIO | Iterable[bytes]) -> EventLog:
    """The events of a log (a binary file, or its lines), sorted by time (input order breaks
    ties), and its bad lines. A file is decoded `CHUNK` bytes of whole lines at a time; a
    chunk with a blank or bad line, like lines given one by one, is read line by line."""
    events: list[Event] = []
    bad: list[BadLine] = []
    ignored: dict[str, int] = {}

    def line_by_line(lines: Iterable[bytes], first: int) -> int:
        number = first - 1
        for number, raw in enumerate(lines, start=first):
            parsed = parse_line(raw, number)
            if parsed is None:
                continue
            if isinstance(parsed, BadLine):
                bad.append(parsed)
            elif isinstance(parsed, str):
                ignored[parsed] = ignored.get(parsed, 0) + 1
            else:
                events.append(parsed)
        return number + 1

    with gc_paused():
        if isinstance(source, io.IOBase):
            number = 1
            rest = b""
            pieces: list[bytes] = []  # of a line longer than a block (joined once: linear)
            held = 0  # bytes in `pieces`
            skipping = False  # in a line over MAX_LINE, dropped up to its end
            while block := source.read(CHUNK):
                if skipping:
                    cut = block.find(b"\n") + 1
                    if not cut:
                        continue
                    bad.append(BadLine(number, TOO_LONG))
                    number += 1
                    skipping, block = False, block[cut:]
                end = block.rfind(b"\n") + 1
                if not end:
                    pieces.append(block)
                    held += len(block)
                    if len(rest) + held > MAX_LINE:
                        rest, pieces, held, skipping = b"", [], 0, True
                    continue
                if pieces:
                    first = block.find(b"\n") + 1  # (the end of the line in pieces)
                    if len(rest) + held + first - 1 > MAX_LINE:
                        bad.append(BadLine(number, TOO_LONG))
                        number += 1
                        rest, block, end = b"", block[first:], end - first
                    else:
                        rest = b"".join([rest, *pieces])
                    pieces, held = [], 0
                    if not end:
                        rest = block
                        continue
                chunk, rest = rest + block[:end], block[end:]
                parsed = _parse_chunk(chunk, number, ignored)
                if parsed is None:
                    number = line_by_line(chunk.split(b"\n")[:-1], number)
                else:
                    events.extend(parsed)
                    number += chunk.count(b"\n")
            if pieces:
                rest = b"".join([rest, *pieces])
            if skipping or len(rest) > MAX_LINE:
                bad.append(BadLine(number, TOO_LONG))
            elif rest:
                line_by_line([rest], number)
        else:
            line_by_line(source, 1)
    events.sort(key=attrgetter("t"))
    return EventLog(events, bad, ignored)


_RELATIVE = re.compile(r"^\+((?:\d+[smhdw])+)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_until(text: str | None, last_event: float | None) -> float | None:
    """`--until`: an ISO time, or `+D` after the last event; None when unparseable."""
    base = last_event if last_event is not None else 0.0
    if text is None:
        return min(base + DEFAULT_RUN_ON, LAST_INSTANT)
    match = _RELATIVE.match(text.strip())
    if match:
        parts = re.findall(r"(\d+)([smhdw])", match.group(1))
        if any(len(n) > MAX_DIGITS for n, _ in parts):
            return LAST_INSTANT  # (beyond the end of time: the clock runs to its end)
        total = sum(int(n) * _UNITS[u] for n, u in parts)
        return min(base + total, LAST_INSTANT)
    t = parse_timestamp(text)
    if t is None and _time_problem(text).endswith(f"to {LAST_TEXT})"):
        # a valid ISO time out of range: after the end, the clock runs to the end of time
        # (`--until 9999-12-31` is "run everything"); before the start, nothing can run
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
        return LAST_INSTANT if moment.year > 5000 else None
    return t


def simulate(
    engine: Engine,
    events: list[Event],
    until: float,
    emit: Callable[[Any], None],
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    render: Callable[[Effect], Any] | None = None,
) -> int:
    """Run every event and timer up to `until`, calling `emit` for each effect in order
    (with `render`, for what it makes of each effect: it runs where the effects are made,
    in the worker processes when there are several); returns the number of contacts.

    Contacts share nothing, so each contact's whole timeline (its events, and the instants
    at which time alone changes something for it) is run in one go, and the effects are then
    put in the global order of section 7: by instant; at one instant, time-driven changes
    before events; time-driven changes of different contacts in the order the contacts first
    appear in the log; events in input order. That order does not depend on which instants
    the engine proves uneventful and passes over, nor on how the contacts are shared out:
    with `workers` > 1 (and fork available), that many processes each run a share of the
    contacts and the steps are merged into the same order.
    """
    with gc_paused():
        timelines: dict[str, list[Event]] = {}
        for event in events:
            if event.t > until:
                break
            timeline = timelines.get(event.contact)
            if timeline is None:
                timelines[event.contact] = [event]
            else:
                timeline.append(event)
        ranked = list(enumerate(timelines.values()))
        workers = min(workers, len(ranked))  # (a process more would have no contact to run)
        if workers > 1 and _can_fork():
            steps = _run_shared(engine, ranked, until, workers, progress, render)
        else:
            steps = _run_share(engine, ranked, until, progress, 1, render)
        steps.sort(key=_STEP_ORDER)
        for step in steps:
            for effect in step[4]:
                emit(effect)
    return len(timelines)


# A step is one call into the engine: (instant, 0 for time / 1 for an event, the contact's
# rank / the event's input order, sub-order, its effects); sorting the first four fields
# gives the order effects are emitted in.
Step = tuple[float, int, int, int, list[Any]]
Share = list[tuple[int, list[Event]]]  # (contact rank, the contact's events)


def _run_share(
    engine: Engine,
    share: Share,
    until: float,
    progress: Callable[[int], None] | None,
    scale: int,
    render: Callable[[Effect], Any] | None = None,
) -> list[Step]:
    """Run each contact of `share` from a fresh state; `progress` hears about events done
    (times `scale`, an estimate of the whole when this is one of `scale` equal shares)."""
    steps: list[Step] = []
    done = report = 0
    for rank, timeline in share:
        _run_contact(engine, Contact(timeline[0].contact), rank, timeline, until, steps)
        done += len(timeline)
        if progress is not None and done >= report:
            progress(done * scale)
            report = done + 1000
    if render is not None:
        steps = [(*step[:4], [render(effect) for effect in step[4]]) for step in steps]
    return steps


def _can_fork() -> bool:
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _run_shared(
    engine: Engine,
    ranked: Share,
    until: float,
    workers: int,
    progress: Callable[[int], None] | None,
    render: Callable[[Effect], Any] | None,
) -> list[Step]:
    """Run the contacts in `workers` forked processes (this one runs the first share)."""
    context = multiprocessing.get_context("fork")
    shares = _shares(ranked, workers)
    children = []
    for share in shares[1:]:
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(
            target=_child, args=(engine, share, until, render, sender), daemon=True
        )
        child.start()
        sender.close()
        children.append((child, receiver))
    steps = _run_share(engine, shares[0], until, progress, workers, render)
    for child, receiver in children:
        try:
            status, payload = pickle.loads(receiver.recv_bytes())
        except EOFError:
            status, payload = "error", f"a simulate worker died (exit code {child.exitcode})"
        child.join()
        if status != "ok":
            raise RuntimeError(payload)
        steps.extend(payload)
    return steps


def _shares(ranked: Share, workers: int) -> list[Share]:
    """`workers` shares with as many contacts and about as many events each: the contacts
    from the busiest down, dealt out back and forth (0, 1, 1, 0, 0, 1, ... for two)."""
    shares: list[Share] = [[] for _ in range(workers)]
    busiest = sorted(ranked, key=lambda item: len(item[1]), reverse=True)
    for start in range(0, len(busiest), workers):
        deal = busiest[start : start + workers]
        if (start // workers) % 2:
            deal.reverse()
        for share, item in zip(shares, deal, strict=False):
            share.append(item)
    return shares


def _child(
    engine: Engine,
    share: Share,
    until: float,
    render: Callable[[Effect], Any] | None,
    sender: Any,
) -> None:
    try:
        result: tuple[str, Any] = ("ok", _run_share(engine, share, until, None, 1, render))
    except BaseException:  # reported to the parent, which raises it
        result = ("error", traceback.format_exc())
    sender.send_bytes(pickle.dumps(result, pickle.HIGHEST_PROTOCOL))
    sender.close()


_STEP_ORDER = itemgetter(0, 1, 2, 3)


def _run_contact(
    engine: Engine,
    contact: Contact,
    rank: int,
    timeline: list[Event],
    until: float,
    steps: list[Step],
    last_horizon: float | None = None,
) -> tuple[float, int, int, int]:
    """One contact's events in order, each preceded by the time-driven instants due by then,
    then the instants due up to `until`; appends the steps that had effects and returns the
    last step run (its instant first). serve runs each contact's new events through this very
    function, with `last_horizon` infinite (it does not know when the next input comes)."""
    on_time, on_event = engine.on_time, engine.on_event
    last: tuple[float, int, int, int] = (-math.inf, 0, 0, 0)
    # each step is told when the contact's next input comes (the engine need not work out
    # wake-ups after it: it is asked again then)
    horizons = [event.t for event in timeline[1:]]
    if timeline:  # (serve runs a contact with no new event when only a timer is due)
        horizons.append(until if last_horizon is None else last_horizon)
    for event, horizon in zip(timeline, horizons, strict=True):
        t = event.t
        while (wake := contact.wake) is not None and wake <= t:
            last = _at(last, wake, rank)
            effects = on_time(contact, wake, t)
            if effects:
                steps.append((*last, effects))
        effects = on_event(contact, event, horizon)
        last = (t, 1, event.order, 0)
        if effects:
            steps.append((t, 1, event.order, 0, effects))
    final = until if last_horizon is None else last_horizon
    while (wake := contact.wake) is not None and wake <= until:
        last = _at(last, wake, rank)
        effects = on_time(contact, wake, final)
        if effects:
            steps.append((*last, effects))
    return last


def _at(last: tuple[float, int, int, int], wake: float, rank: int) -> tuple[float, int, int, int]:
    """The order of a time-driven step at `wake` after the contact's step `last`: with the
    other contacts' at that instant, unless it is due at the very instant of `last` (a wait of
    zero), where it follows `last` at once."""
    if wake > last[0]:
        return (wake, 0, rank, 0)
    return (last[0], last[1], last[2], last[3] + 1)


__all__ = ["format_text", "parse_until", "public", "read_events", "run_contact", "simulate"]

run_contact = _run_contact
