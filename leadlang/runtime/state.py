"""Per-contact state the engine keeps: profile, score, history, consent, enrollments.

Plain mutable objects with slots (simulate holds one per contact in memory; serve will
serialise them per contact row). Times are float seconds since the Unix epoch, UTC.
"""

from __future__ import annotations

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
