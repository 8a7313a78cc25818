"""What a bare name in an expression refers to: the one rule the checker and compiler share.

LANGUAGE.md section 4: inside an event's `where`, names are that event's properties first,
then profile names; `event.NAME` is always the bound event's property. Elsewhere a name is
a built-in, a trait, a metric or a segment; inside a flow also a message-status built-in.
"""

from __future__ import annotations

import enum

BUILTIN_TRAITS: dict[str, str] = {
    "email": "text",
    "phone": "text",
    "timezone": "text",
    "unsubscribed": "bool",
}
# Built-in names readable in any condition, with their types.
BUILTIN_NAMES: dict[str, str] = {
    "score": "number",
    "tags": "list",
    "id": "text",
    "now": "datetime",
}
# Booleans about the most recent message an enrollment sent (flows only).
MESSAGE_STATUSES: tuple[str, ...] = ("opened", "clicked", "delivered", "bounced")
BUILTIN_EVENTS: dict[str, dict[str, str]] = {
    name: {"message": "text", "message_id": "text", "channel": "text"}
    for name in (
        "message_sent",
        "message_delivered",
        "message_opened",
        "message_clicked",
        "message_bounced",
        "unsubscribed",
        "subscribed",
    )
}
BUILTIN_EVENTS["message_clicked"]["url"] = "text"  # the link clicked (serve's `/c/` route)
# Reserved words (LANGUAGE.md section 2): the words that start a declaration, a header
# clause or a step, the operators and the literals. No trait, metric, segment, message, flow or
# event may be named with one (N018). The grammar's other words are contextual (`after`,
# `every`, `file`, `to`, `up`, ...): the parser reads them as keywords only where the grammar
# expects one, so they stay free as names. tests/test_keywords.py keeps both sets in step with
# the grammar.
KEYWORDS: frozenset[str] = frozenset(
    {
        "and",
        "check",
        "contains",
        "elif",
        "else",
        "enroll",
        "event",
        "exit",
        "false",
        "flow",
        "for",
        "goal",
        "if",
        "in",
        "matches",
        "message",
        "metric",
        "none",
        "not",
        "on",
        "or",
        "reenter",
        "score",
        "segment",
        "send",
        "set",
        "settings",
        "split",
        "tag",
        "then",
        "trait",
        "true",
        "untag",
        "until",
        "use",
        "wait",
        "when",
        "where",
        "with",
        "within",
    }
)
# Keywords that still read as names inside expressions: the built-in `score`, the bound
# `event`, and the built-in events' `message` property (`where message == "deal"`). Any
# other keyword where a name is read (`count(send)`, `on within`, `split when:`) is N018.
EXPRESSION_KEYWORDS: frozenset[str] = frozenset({"score", "event", "message"})
CONTEXTUAL_KEYWORDS: frozenset[str] = frozenset(
    {
        "after",
        "always",
        "cap",
        "decay",
        "edits",
        "ends",
        "every",
        "file",
        "hours",
        "idle",
        "keep",
        "max",
        "migrate",
        "never",
        "per",
        "quiet",
        "starts",
        "timezone",
        "to",
        "up",
    }
)
CHANNELS: tuple[str, ...] = ("email", "sms", "push")
AGGREGATES: tuple[str, ...] = ("count", "total", "average", "last", "days_since")
SCALAR_FUNCTIONS: tuple[str, ...] = (
    "sigmoid",
    "min",
    "max",
    "abs",
    "round",
    "lower",
    "upper",
    "len",
)


class NameKind(enum.Enum):
    PROPERTY = "property"  # a property of the event in scope (declared, or event undeclared)
    EVENT = "event"  # the bound event itself (`event`, `event.x`)
    BUILTIN = "builtin"  # score, tags, id, now
    TRAIT = "trait"  # built-in or declared trait
    METRIC = "metric"
    SEGMENT = "segment"
    MESSAGE_STATUS = "message_status"  # opened, clicked, ... inside a flow
    UNKNOWN = "unknown"


def classify(
    name: str,
    *,
    event_params: dict[str, str] | None,
    event_declared: bool,
    in_flow: bool,
    traits: dict[str, object],
    metrics: dict[str, object],
    segments: dict[str, object],
) -> NameKind:
    """Classify a bare name.

    `event_params` is the property table of the event whose `where` we are in (None outside
    a `where`). When that event is not declared, any name that is not a profile name is
    taken to be a property (events are open-ended, as in Segment).
    """
    if event_params is not None and name in event_params:
        return NameKind.PROPERTY
    if name == "event":
        return NameKind.EVENT
    if name in BUILTIN_NAMES:
        return NameKind.BUILTIN
    if name in BUILTIN_TRAITS or name in traits:
        return NameKind.TRAIT
    if name in metrics:
        return NameKind.METRIC
    if name in segments:
        return NameKind.SEGMENT
    if in_flow and name in MESSAGE_STATUSES:
        return NameKind.MESSAGE_STATUS
    if event_params is not None and not event_declared:
        return NameKind.PROPERTY
    return NameKind.UNKNOWN


def normalize_event_name(name: str) -> str:
    """`"Order Completed"` -> `order_completed` (LANGUAGE.md section 3)."""
    out: list[str] = []
    pending = False
    for ch in name.lower():
        if ch.isalnum():
            if pending and out:
                out.append("_")
            pending = False
            out.append(ch)
        else:
            pending = True
    return "".join(out)
