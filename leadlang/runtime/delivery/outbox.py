"""The outbox's data and the protocols between the outbox worker, the store and the drivers."""

from __future__ import annotations

from typing import Any, Protocol

import attrs


@attrs.frozen
class Delivery:
    """One outbox row handed to a driver."""

    key: str  # the send's idempotency key
    contact: str
    flow: str
    message: str
    channel: str  # "email" | "sms" | "push"
    at: str  # the logical instant the engine decided the send
    to: str | None  # the address from the profile at decision time (None for push)
    content: dict[str, Any]  # the rendered message
    attempts: int  # attempts already made before this one


@attrs.frozen
class Outcome:
    status: str  # "sent" | "retry" | "failed"
    error: str | None = None
    retry_after: float | None = None

    @classmethod
    def sent(cls) -> Outcome:
        return cls("sent")

    @classmethod
    def retry(cls, error: str, after: float | None = None) -> Outcome:
        return cls("retry", error, after)

    @classmethod
    def failed(cls, error: str) -> Outcome:
        return cls("failed", error)


class Driver(Protocol):
    async def deliver(self, delivery: Delivery) -> Outcome: ...

    async def close(self) -> None: ...


class OutboxStore(Protocol):
    async def claim_outbox(self, now: float, limit: int, lease: float) -> list[Delivery]: ...

    async def outbox_sent(self, key: str, now: float) -> None: ...

    async def outbox_retry(
        self, key: str, attempts: int, next_attempt: float, error: str
    ) -> None: ...

    async def outbox_dead(self, key: str, attempts: int, error: str) -> None: ...
