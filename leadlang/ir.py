"""The machine IR: what the compiler produces and the engine runs. Plain JSON data only.

A compiled program is a dict (see `leadlang.interpreter.compile`) holding settings, the score
table, metrics, segments, messages and one state machine per flow. Expressions are stored as
Python source text defining `_f(c, p)` plus the names they read (`deps`), so the engine can
compile them once and knows which instants can change a condition. Each flow carries
`version`: the sha256 of its canonical JSON, which an enrollment keeps for life.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

JSON = dict[str, Any]


def canonical(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def content_hash(data: Any) -> str:
    return hashlib.sha256(canonical(data)).hexdigest()


def empty_deps() -> JSON:
    """What an expression reads. `windows` are `[event, seconds]` pairs of `within` clauses;
    `since` are `[event, seconds]` for `days_since(event) >= N`-like comparisons, whose value
    changes `seconds` after the last such event."""
    return {
        "score": False,
        "now": False,
        "tags": False,
        "status": False,
        "traits": [],
        "events": [],
        "windows": [],
        "since": [],
    }


def merge_deps(into: JSON, other: JSON) -> None:
    for key in ("score", "now", "tags", "status"):
        into[key] = into[key] or other[key]
    for key in ("traits", "events"):
        into[key] = sorted(set(into[key]) | set(other[key]))
    into["windows"] = sorted(
        {tuple(w) for w in into["windows"]} | {tuple(w) for w in other["windows"]}
    )
    into["windows"] = [list(w) for w in into["windows"]]
    since = {tuple(w) for w in into.get("since", [])} | {tuple(w) for w in other.get("since", [])}
    into["since"] = [list(w) for w in sorted(since)]


def expr(src: str, deps: JSON) -> JSON:
    return {"src": src, "deps": deps}
