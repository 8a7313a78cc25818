"""The machine IR: what the compiler produces and the engine runs. Plain JSON data only.

Shape (`leadlang compile PATH --format json` prints it):

    {"version": sha256 of the rest,
     "settings": {"timezone", "quiet_hours": [start_sec, end_sec] | null,
                  "caps": [{"channel", "count", "per"}]},
     "score": {"rules": [{"event", "points", "where": EXPR | null}],
               "decay": {"amount", "percent", "every"} | null, "max": number | null},
     "traits": {name: default}, "metrics": {name: EXPR}, "segments": {name: EXPR},
     "messages": {name: {"channel", "dir", "fields": {key: {"file", "value"}}}},
     "flows": [{"name", "version", "start": STATE_ID | null, "states": {id: STATE},
                "triggers": [{"kind": "on", "event", "where"} | {"kind": "when", "cond"}],
                "exits": [same shapes], "goals": [{"event", "where", "within"}],
                "reenter": {"mode", "after"}}]}

    STATE = {"id", "kind", "next": STATE_ID | null (null: the flow is done), ...} with kind
      send {message, channel, with}   wait {duration}   wait_until {target}
      wait_for {event, where, up_to, on_timeout}   check {cond, within, on_else}
      branch {cases: [{cond, target}], otherwise}   split {name, arms: [{name, percent, target}]}
      tag/untag {tag}   set {trait, value}   score {points}   enroll {flow}   exit {}
    EXPR = {"src": Python source defining `_f(c, p)`, "deps": what it reads (see empty_deps)}

Durations are seconds; a flow's `version` is the sha256 of its canonical JSON, which an
enrollment keeps for life.
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
