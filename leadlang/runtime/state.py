"""Per-contact state the engine keeps: profile, score, history, consent, enrollments.

Plain mutable objects with slots (simulate holds one per contact in memory; serve will
serialise them per contact row). Times are float seconds since the Unix epoch, UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class Enrollment:
    """One contact's run through one flow, from `enter` to its single `exit`."""

    __slots__ = (
        "deadline",
        "ended",
        "entered_at",
        "event",
        "flow",
        "last_sent",
        "number",
        "resume",
        "sent",
        "state",
        "version",
        "wait",
    )

    def __init__(self, flow: str, version: str, number: int, entered_at: float) -> None:
        self.flow = flow
        self.version = version
        self.number = number  # 1 for the contact's first enrollment in this flow, then 2...
        self.entered_at = entered_at
        self.state: str | None = None
        self.event: dict[str, Any] | None = None  # the bound `event`
        self.wait: str | None = None  # None (running), "time", "event", "check", "quiet"
        self.deadline: float | None = None
        self.resume: str | None = None  # the state to go on with after a plain wait
        # (message, message_id, (t, order)) of the most recent send, and per message name
        self.last_sent: tuple[str, str, tuple[float, int]] | None = None
        self.sent: dict[str, tuple[str, str, tuple[float, int]]] = {}
        self.ended = False


class Contact:
    __slots__ = (
        "applied_decay",
        "enrollments",
        "entries",
        "history",
        "id",
        "last_activity",
        "msg_events",
        "scheduled",
        "score",
        "sends",
        "seq",
        "subscribed",
        "tags",
        "traits",
        "unsubscribed",
        "wake",
        "when_values",
    )

    def __init__(self, contact_id: str) -> None:
        self.id = contact_id
        self.traits: dict[str, Any] = {}
        self.score: float = 0
        self.last_activity: float | None = None
        self.applied_decay = 0  # decay steps since last_activity already taken by `score` steps
        self.tags: dict[str, None] = {}  # an ordered set
        # event name -> (timestamps, properties), only for events some aggregate reads
        self.history: dict[str, tuple[list[float], list[dict[str, Any]]]] = {}
        # channel (None: every channel) -> (t, order) of the last (un)subscribed event
        self.unsubscribed: dict[str | None, tuple[float, int]] = {}
        self.subscribed: dict[str | None, tuple[float, int]] = {}
        self.sends: dict[str, list[float]] = {}  # channel -> send times, for caps
        # (t, order, kind, message, message_id) of message_opened/clicked/... events
        self.msg_events: list[tuple[float, int, str, Any, Any]] = []
        self.enrollments: dict[str, Enrollment] = {}  # active, by flow name
        self.entries: dict[str, tuple[int, float]] = {}  # flow -> (enrollments, last entry)
        self.when_values: dict[int, bool] = {}  # `when` trigger id -> last value
        self.wake: float | None = None  # next instant the engine must look at this contact
        self.scheduled: float | None = None  # the instant a store's timer is set for
        # inputs processed so far: orders same-timestamp events ("arrived after the send")
        self.seq = 0


# ---------------------------------------------------------------- to and from JSON
# serve keeps one row per contact; these give it a plain-JSON form of the whole state.

_ENROLLMENT_FIELDS = (
    "flow",
    "version",
    "number",
    "entered_at",
    "state",
    "event",
    "wait",
    "deadline",
    "resume",
    "ended",
)


def _record(value: tuple[str, str, tuple[float, int]]) -> list[Any]:
    return [value[0], value[1], list(value[2])]


def _unrecord(value: list[Any]) -> tuple[str, str, tuple[float, int]]:
    return (value[0], value[1], (value[2][0], value[2][1]))


def enrollment_to_json(enr: Enrollment) -> dict[str, Any]:
    data = {name: getattr(enr, name) for name in _ENROLLMENT_FIELDS}
    data["last_sent"] = _record(enr.last_sent) if enr.last_sent else None
    data["sent"] = {k: _record(v) for k, v in enr.sent.items()}
    return data


def enrollment_from_json(data: dict[str, Any]) -> Enrollment:
    enr = Enrollment(data["flow"], data["version"], data["number"], data["entered_at"])
    for name in _ENROLLMENT_FIELDS[4:]:
        setattr(enr, name, data[name])
    enr.last_sent = _unrecord(data["last_sent"]) if data["last_sent"] else None
    enr.sent = {k: _unrecord(v) for k, v in data["sent"].items()}
    return enr


_ALL_CHANNELS = "*"  # JSON keys are text: the key for events without a `channel`


def contact_to_json(contact: Contact, triggers: Sequence[str] | None = None) -> dict[str, Any]:
    """The contact as JSON. `triggers`: the engine's `when` trigger names (`Engine.trigger_names`),
    by which the triggers' last values are kept, so that they stay with their triggers when
    a reload adds, removes or reorders flows (without: by the triggers' numbers)."""

    def consent(table: dict[str | None, tuple[float, int]]) -> dict[str, list[Any]]:
        return {(k if k is not None else _ALL_CHANNELS): list(v) for k, v in table.items()}

    return {
        "id": contact.id,
        "traits": contact.traits,
        "score": contact.score,
        "last_activity": contact.last_activity,
        "applied_decay": contact.applied_decay,
        "tags": list(contact.tags),
        "history": {k: [v[0], v[1]] for k, v in contact.history.items()},
        "unsubscribed": consent(contact.unsubscribed),
        "subscribed": consent(contact.subscribed),
        "sends": contact.sends,
        "msg_events": [list(e) for e in contact.msg_events],
        "enrollments": {k: enrollment_to_json(v) for k, v in contact.enrollments.items()},
        "entries": {k: list(v) for k, v in contact.entries.items()},
        "when_values": {
            (str(k) if triggers is None else triggers[k]): v for k, v in contact.when_values.items()
        },
        "wake": contact.wake,
        "seq": contact.seq,
    }


def contact_from_json(
    data: dict[str, Any], trigger_ids: Mapping[str, int] | None = None
) -> Contact:
    """The contact `contact_to_json` wrote; `trigger_ids`: each trigger name's number
    (`Engine.trigger_ids`). A trigger the program no longer has is forgotten; one it did not
    have yet has no last value (it counts as false)."""

    def consent(table: dict[str, list[Any]]) -> dict[str | None, tuple[float, int]]:
        return {(None if k == _ALL_CHANNELS else k): (v[0], v[1]) for k, v in table.items()}

    contact = Contact(data["id"])
    contact.traits = dict(data["traits"])
    contact.score = data["score"]
    contact.last_activity = data["last_activity"]
    contact.applied_decay = data["applied_decay"]
    contact.tags = dict.fromkeys(data["tags"])
    contact.history = {k: (list(v[0]), list(v[1])) for k, v in data["history"].items()}
    contact.unsubscribed = consent(data["unsubscribed"])
    contact.subscribed = consent(data["subscribed"])
    contact.sends = {k: list(v) for k, v in data["sends"].items()}
    contact.msg_events = [(e[0], e[1], e[2], e[3], e[4]) for e in data["msg_events"]]
    contact.enrollments = {k: enrollment_from_json(v) for k, v in data["enrollments"].items()}
    contact.entries = {k: (v[0], v[1]) for k, v in data["entries"].items()}
    contact.when_values = _when_values(data["when_values"], trigger_ids or {})
    contact.wake = data["wake"]
    contact.seq = data["seq"]
    return contact


def _when_values(data: dict[str, Any], ids: Mapping[str, int]) -> dict[int, Any]:
    values: dict[int, Any] = {}
    for key, value in data.items():
        if key.isdigit():  # by number (a state written before triggers had names)
            values[int(key)] = value
        elif key in ids:
            values[ids[key]] = value
    return values
