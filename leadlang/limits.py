"""The representable range, decided once: numbers, durations, instants and nesting.

`check` rejects a literal outside it (S008), the event-log reader names a line whose
timestamp is outside it, and the engine treats an instant computed past `LAST_INSTANT` as one
that never comes (a wait beyond the end of time never fires). Every time computation inside
the range is total: a local date and time one day either side of it still exists in Python's
`datetime` (years 1..9999) in any zone, so the margins below keep zone arithmetic (a
wake-up's next local day, the end of a quiet window, an offset of up to a day) from raising.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

# Instants: POSIX seconds (UTC) from 0001-01-03T00:00:00Z to 9999-12-29T23:59:59Z, two days
# inside the years 1..9999 Python's `datetime` can hold, whatever the zone.
FIRST_INSTANT = datetime(1, 1, 3, tzinfo=UTC).timestamp()
LAST_INSTANT = datetime(9999, 12, 29, 23, 59, 59, tzinfo=UTC).timestamp()
FIRST_TEXT = "0001-01-03T00:00:00Z"
LAST_TEXT = "9999-12-29T23:59:59Z"

# Durations: whole seconds, at most the span of the instants (nothing longer can elapse).
MAX_DURATION = int(LAST_INSTANT - FIRST_INSTANT)

# Integers: those a float (the engine's numbers), JSON readers and the IR's content hash all
# carry exactly: |n| < 2**53.
MAX_INTEGER = 2**53 - 1

# A literal's digits are looked at before they are converted: longer than this is out of range
# whatever it says (and Python refuses to convert more than 4,300 digits to an int).
MAX_DIGITS = 400

# Depth of a metric or segment counting the definitions it reads (as the parser bounds one
# expression's own depth): the passes that follow names to definitions recurse that deep.
MAX_DEFINITION_DEPTH = 150

# Nesting of a JSON value in an event-log line (objects and arrays): deeper is a bad line.
MAX_JSON_DEPTH = 64


def instant_ok(t: float) -> bool:
    """Whether `t` (POSIX seconds) is a representable instant."""
    return FIRST_INSTANT <= t <= LAST_INSTANT


def moment_ok(moment: datetime) -> bool:
    """Whether an aware datetime is a representable instant (never raises)."""
    try:
        return instant_ok(moment.timestamp())
    except (OverflowError, ValueError):  # outside years 1..9999 once in UTC
        return False


def duration_ok(seconds: float) -> bool:
    return 0 <= abs(seconds) <= MAX_DURATION


def number_ok(value: float) -> bool:
    """Whether a number is representable: a finite float, or an integer of at most 53 bits."""
    if value.__class__ is int:
        return -MAX_INTEGER <= value <= MAX_INTEGER
    return math.isfinite(value)


def never_after_end(t: float) -> float | None:
    """An instant to wake at, or None when it lies past the end of time (it never comes)."""
    return t if t <= LAST_INSTANT else None


def json_depth_ok(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a decoded JSON value nests objects and arrays at most `limit` deep (walked
    without recursion, so any depth is safe to ask about)."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        children: Iterable[Any]
        if item.__class__ is dict:
            children = item.values()
        elif item.__class__ is list:
            children = item
        else:
            continue
        if depth > limit:
            return False
        for child in children:
            if child.__class__ is dict or child.__class__ is list:
                todo.append((child, depth + 1))
    return True
