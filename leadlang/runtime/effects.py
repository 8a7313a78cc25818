"""Effects: what the engine decides (enter, send, skip, split, tag, untag, goal, exit).

An effect is a dict with the fields of LANGUAGE.md section 9. A `send` also carries, for
serve, its idempotency `key` (RUNTIME.md section 3) and the evaluated `with` values (`data`);
`public` keeps only the specified fields, in a stable order, which is what simulate prints.
Beyond the actions of section 9, a `stop` reports a chain of flows that never settles at one
instant (`flow`: the flow not entered again, `reason`: `never_settles`, `cycle`: the flows of
one turn, the first repeated at the end).
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from typing import Any

from leadlang.source import escaped

Effect = dict[str, Any]

OUTPUT_FIELDS = (
    "at",
    "contact",
    "action",
    "flow",
    "step",
    "channel",
    "message",
    "reason",
    "split",
    "arm",
    "tag",
    "cycle",
)


# format_time's fast path: "YYYY-MM-DDTHH:" per hour number (whole seconds // 3600), each
# cut from a string the exact expression below produced, and "MM:SSZ" per second of the hour.
_HOUR_PREFIX: dict[int, str] = {}
_HOUR_PREFIX_MAX = 8192  # about a year of distinct hours; emptied when full
_MINUTE_SECOND = tuple(f"{m:02d}:{s:02d}Z" for m in range(60) for s in range(60))


def format_time(t: float) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds).

    The first time an hour is seen the string is made from `datetime.fromtimestamp` (the
    year always four digits, `0001`, where strftime's `%Y` would write `1`) and its
    `YYYY-MM-DDTHH:` part is kept; POSIX time has no leap seconds, so the rest of that hour
    is the kept part plus minutes and seconds.
    """
    second = math.floor(t)
    hour, rest = divmod(second, 3600)
    prefix = _HOUR_PREFIX.get(hour)
    if prefix is not None:
        return prefix + _MINUTE_SECOND[rest]
    text = datetime.fromtimestamp(second, UTC).replace(tzinfo=None).isoformat() + "Z"
    if len(_HOUR_PREFIX) >= _HOUR_PREFIX_MAX:
        _HOUR_PREFIX.clear()
    _HOUR_PREFIX[hour] = text[:-6]
    return text


def idempotency_key(contact: str, flow: str, version: str, number: int, step: str) -> str:
    """RUNTIME.md section 3: (contact, flow, flow version, enrollment, step)."""
    raw = "\x1f".join((contact, flow, version, str(number), step))
    return hashlib.sha256(raw.encode()).digest()[:16].hex()  # = hexdigest()[:32]


def public(effect: Effect) -> Effect:
    """The effect as simulate prints it: the fields of LANGUAGE.md section 9, in that order."""
    return {key: effect[key] for key in OUTPUT_FIELDS if key in effect}


def printable(value: object) -> str:
    """`value` as text with control characters (and other unprintable ones) escaped, so an
    id or a tag from a log can neither break a line nor move a terminal's cursor."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else escaped(ch) for ch in text)


def format_text(effect: Effect) -> str:
    """One readable timeline line."""
    details = " ".join(
        f"{key}={printable(_text(effect[key]))}" for key in OUTPUT_FIELDS[3:] if key in effect
    )
    contact = printable(effect["contact"])
    return f"{effect['at']}  {contact:<16} {effect['action']:<7} {details}".rstrip()


def _text(value: object) -> object:
    """A field as the text timeline shows it (a stop's cycle as `a -> b -> a`)."""
    return " -> ".join(map(str, value)) if isinstance(value, list) else value
