"""Effects: what the engine decides (enter, send, skip, split, tag, untag, goal, exit).

An effect is a dict with the fields of LANGUAGE.md section 9. A `send` also carries, for
serve, its idempotency `key` (RUNTIME.md section 3) and the evaluated `with` values (`data`);
`public` keeps only the specified fields, in a stable order, which is what simulate prints.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from typing import Any

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
)


def format_time(t: float) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds)."""
    return datetime.fromtimestamp(math.floor(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def idempotency_key(contact: str, flow: str, version: str, number: int, step: str) -> str:
    """RUNTIME.md section 3: (contact, flow, flow version, enrollment, step)."""
    raw = "\x1f".join((contact, flow, version, str(number), step))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def public(effect: Effect) -> Effect:
    """The effect as simulate prints it: the fields of LANGUAGE.md section 9, in that order."""
    return {key: effect[key] for key in OUTPUT_FIELDS if key in effect}


def format_text(effect: Effect) -> str:
    """One readable timeline line."""
    details = " ".join(f"{key}={effect[key]}" for key in OUTPUT_FIELDS[3:] if key in effect)
    return f"{effect['at']}  {effect['contact']:<16} {effect['action']:<7} {details}".rstrip()
