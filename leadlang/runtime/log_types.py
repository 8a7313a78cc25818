"""Declared property types applied to an event log's values, before the engine sees them.

Segment sources often send numbers as text (`"total": "99.5"`). For an event declared with
`event order_completed(total: number, completed_on: datetime)`, a text that reads as a
number becomes that number, and a datetime text must read as ISO 8601 (it stays text: the
engine reads it as a datetime wherever it is compared with one). A value that does not fit
is kept as it is and its line is reported once, with what was expected: nothing is silently
read as missing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from leadlang.runtime.engine import Event
from leadlang.runtime.values import to_datetime

# What `float()` accepts, less its spellings that are not numbers in a log ("inf", "nan",
# "1_000"): digits, one optional point, an optional exponent.
_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def number_from_text(text: str) -> int | float | None:
    """`"99.5"` -> 99.5, `" 12 "` -> 12; None when the text is not a finite number."""
    if _INTEGER.fullmatch(text):
        return int(text)
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _fits(expected: str, value: Any) -> tuple[bool, Any]:
    """(whether `value` fits the declared type, the value to keep)."""
    if value is None:
        return True, None  # missing is `none`, as the language says
    if expected == "number":
        if value.__class__ in (int, float):
            return True, value
        if isinstance(value, str):
            number = number_from_text(value)
            if number is not None:
                return True, number
        return False, value
    # datetime
    if isinstance(value, str) and to_datetime(value) is not None:
        return True, value
    return False, value


_EXPECTED = {"number": "a number", "datetime": "an ISO 8601 datetime"}


def apply_declared_types(
    events: Iterable[Event], event_params: Mapping[str, Mapping[str, str]]
) -> list[tuple[int, str]]:
    """Convert, in place, the declared `number` and `datetime` properties of `events`;
    returns (line, problem) for each line with a value that does not fit, one per line."""
    typed = {
        event: {prop: kind for prop, kind in params.items() if kind in _EXPECTED}
        for event, params in event_params.items()
    }
    typed = {event: props for event, props in typed.items() if props}
    problems: list[tuple[int, str]] = []
    if not typed:
        return problems
    for event in events:
        props = typed.get(event.name) if event.name is not None else None
        if props is None or not event.props:
            continue
        misfits: list[str] = []
        for prop, kind in props.items():
            if prop not in event.props:
                continue
            value = event.props[prop]
            fits, kept = _fits(kind, value)
            if fits:
                if kept is not value:
                    event.props[prop] = kept
            else:
                shown = msgspec.json.encode(value).decode()  # as the log wrote it
                if len(shown) > 40:
                    shown = shown[:37] + "..."
                misfits.append(f"`{prop}` is {shown}, expected {_EXPECTED[kind]}")
        if misfits:
            problems.append((event.order, f"{event.name}: " + "; ".join(misfits)))
    return problems
