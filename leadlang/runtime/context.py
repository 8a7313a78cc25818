"""The evaluation context generated condition code reads (`c` in `_f(c, p)`).

One context per contact per instant; metric and segment values are cached in it until
the profile changes (`invalidate`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from leadlang.runtime.state import Contact, Enrollment
from leadlang.runtime.values import held

DAY = 86400.0


class Profiles(Protocol):
    """What a context reads from the engine: the score and the compiled metrics and segments.

    A protocol rather than the `Engine` class, so this module does not import the engine
    that imports it.
    """

    @property
    def metrics(self) -> Mapping[str, Callable[..., Any]]: ...

    @property
    def segments(self) -> Mapping[str, Callable[..., Any]]: ...

    def score_at(self, contact: Contact, t: float) -> float: ...


class Context:
    __slots__ = (
        "_metrics",
        "_score",
        "_segments",
        "chain",
        "contact",
        "engine",
        "enr",
        "event",
        "history",
        "id",
        "t",
        "traits",
    )

    def __init__(self, engine: Profiles, contact: Contact, t: float) -> None:
        self.engine = engine
        self.contact = contact
        self.id = contact.id
        self.traits = contact.traits
        self.history = contact.history
        self.t = t
        self.event: dict[str, Any] | None = None
        self.enr: Enrollment | None = None
        self._metrics: dict[str, Any] = {}
        self._segments: dict[str, bool] = {}
        self._score: float | None = None
        self.chain: Any = None  # flows re-entered at this instant (the engine's `_Chain`)

    def invalidate(self) -> None:
        if self._metrics:
            self._metrics = {}
        if self._segments:
            self._segments = {}
        self._score = None

    def score(self) -> float:
        score = self._score
        if score is None:
            score = self._score = self.engine.score_at(self.contact, self.t)
        return score

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    def tags(self) -> list[str]:
        return list(self.contact.tags)

    def metric(self, name: str) -> Any:
        cache = self._metrics
        if name in cache:
            return cache[name]
        cache[name] = None  # a cycle reads none rather than recursing forever
        fn = self.engine.metrics.get(name)
        value = fn(self, None) if fn is not None else None
        cache[name] = value
        return value

    def segment(self, name: str) -> bool:
        cache = self._segments
        if name in cache:
            return cache[name]
        cache[name] = False
        fn = self.engine.segments.get(name)
        value = bool(fn(self, None)) if fn is not None else False
        cache[name] = value
        return value

    # ------------------------------------------------------------------ aggregates

    def _events(self, event: str, where: Any, within: float | None) -> list[dict[str, Any]]:
        entry = self.contact.history.get(event)
        if entry is None:
            return []
        times, props = entry
        hi = bisect.bisect_right(times, self.t)
        lo = 0 if within is None else bisect.bisect_right(times, self.t - within)
        selected = props[lo:hi]
        if where is None:
            return selected
        saved = self.event
        try:
            return [p for p in selected if where(self, p)]
        finally:
            self.event = saved

    def count(self, event: str, where: Any, within: float | None) -> int:
        if where is None:
            entry = self.history.get(event)
            if entry is None:
                return 0
            times = entry[0]
            t = self.t
            # Inputs arrive in time order, so usually every recorded event is at or before now.
            hi = len(times) if not times or times[-1] <= t else bisect.bisect_right(times, t)
            if within is None:
                return hi
            lo = bisect.bisect_right(times, t - within)
            return hi - lo if hi > lo else 0
        return len(self._events(event, where, within))

    def _values(self, event: str, prop: str, where: Any, within: float | None) -> list[Any]:
        values = [p.get(prop) for p in self._events(event, where, within)]
        return [v for v in values if v.__class__ is int or v.__class__ is float]

    def total(self, event: str, prop: str, where: Any, within: float | None) -> float | None:
        return held(sum(self._values(event, prop, where, within)))

    def average(self, event: str, prop: str, where: Any, within: float | None) -> float | None:
        values = self._values(event, prop, where, within)
        return held(sum(values) / len(values)) if values else None

    def last(self, event: str, where: Any, within: float | None = None) -> dict[str, Any] | None:
        selected = self._events(event, where, within)
        return selected[-1] if selected else None

    def days_since(self, event: str, where: Any) -> float | None:
        entry = self.contact.history.get(event)
        if entry is None:
            return None
        times, props = entry
        hi = bisect.bisect_right(times, self.t)
        for i in range(hi - 1, -1, -1):
            if where is None or where(self, props[i]):
                return (self.t - times[i]) / DAY
        return None

    # ------------------------------------------------------------------ message statuses

    def status(self, kind: str, message: str | None) -> bool:
        """`opened` (etc.): whether a status event of `kind` for the enrollment's latest send
        (or its send of `message`) came after it. An event with a `message_id` is about the
        send with that id only (the send's key); one without is matched by its `message`
        name (LANGUAGE.md section 5.2)."""
        enr = self.enr
        if enr is None:
            return False
        sent = enr.last_sent if message is None else enr.sent.get(message)
        if sent is None:
            return False
        name, message_id, when = sent
        for t, order, ev_kind, ev_message, ev_id in reversed(self.contact.msg_events):
            if (t, order) <= when:
                break
            if ev_kind == kind and (ev_id == message_id if _has_id(ev_id) else ev_message == name):
                return True
        return False


def _has_id(message_id: Any) -> bool:
    """Whether a status event names its send: a `message_id` that is neither missing nor
    empty (then only that send's key matches it)."""
    return message_id is not None and message_id != ""
