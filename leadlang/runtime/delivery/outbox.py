"""The outbox's data and the two small interfaces the delivery worker talks to.

A `Delivery` is one outbox row as a driver sees it; a driver answers each attempt with an
`Outcome` (sent, retry maybe after a delay, failed for good). The worker claims rows from an
`OutboxStore` (the SQL store in serve, an in-memory one in tests) and records the outcome
there; retries, backoff and dead letters live in the worker, never in a driver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

SENT = "sent"
RETRY = "retry"
FAILED = "failed"


@attrs.frozen
class Delivery:
    """One outbox row handed to a driver."""

    key: str  # the send's idempotency key (32 hex chars)
    contact: str
    flow: str
    message: str
    channel: str  # "email" | "sms" | "push"
    at: str  # the logical instant the engine decided the send, "YYYY-MM-DDTHH:MM:SSZ"
    to: str | None  # email address / phone number at decision time (None for push)
    content: dict[str, Any]  # what render_message returned
    attempts: int  # attempts already made before this one


@attrs.frozen
class Outcome:
    """What one attempt came to: `Outcome.sent()`, `.retry(error, after)`, `.failed(error)`."""

    status: str  # "sent" | "retry" | "failed"
    error: str | None = None
    retry_after: float | None = None  # seconds, e.g. from a Retry-After header

    @classmethod
    def sent(cls) -> Outcome:
        return cls(SENT)

    @classmethod
    def retry(cls, error: str, after: float | None = None) -> Outcome:
        return cls(RETRY, error, after)

    @classmethod
    def failed(cls, error: str) -> Outcome:
        return cls(FAILED, error)


OTHER_CHANNELS = "*"  # in `claim_outbox`'s rooms: every channel not named there


class Driver(Protocol):
    """Delivers over one channel; idempotent by `delivery.key`.

    A driver may also have an int attribute `concurrency`: how many attempts it wants at
    once (the Maildir driver writes its sends in groups, so it takes many); the worker's own
    `concurrency` applies to the others."""

    async def deliver(self, delivery: Delivery) -> Outcome: ...

    async def close(self) -> None: ...


class OutboxStore(Protocol):
    """The store's outbox queries, as the worker needs them."""

    async def claim_outbox(
        self, now: float, limit: int, lease: float, rooms: Mapping[str, int] | None = None
    ) -> list[Delivery]:
        """Pending rows with next_attempt <= now, or claimed rows whose lease expired; with
        `rooms`, at most that many of each channel named, and of all others together at most
        `rooms[OTHER_CHANNELS]` (none without that key).

        Each claim sets a lease until now + lease so no other worker takes them meanwhile.
        """
        ...

    async def outbox_sent(self, key: str, now: float) -> None: ...

    async def outbox_retry(
        self, key: str, attempts: int, next_attempt: float, error: str
    ) -> None: ...

    async def outbox_dead(self, key: str, attempts: int, error: str) -> None: ...

    async def renew_outbox_leases(self, keys: Sequence[str], now: float, lease: float) -> None: ...
