"""Where contact state, timers and the effects outbox live.

`Store` is the protocol serve's SQLAlchemy store implements (async; several processes
share one database, so claiming work takes row locks and each commit is one transaction
holding the new state, the outbox rows and the contact's next timer). `MemoryStore` is an
in-process store for code and tests written against that protocol; simulate needs no store
(it runs each contact's timeline in one go, `runtime/simulate.py`).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any, Protocol

from leadlang.runtime.state import Contact


class Store(Protocol):
    async def load(self, contact_id: str) -> Contact:
        """The contact's state (a fresh one if unknown), locked for this transaction."""
        ...

    async def commit(self, contact: Contact, effects: Sequence[dict[str, Any]]) -> None:
        """Atomically save the state, append effects to the outbox (sends keyed by their
        idempotency key, so a replay cannot enqueue twice) and set the timer to `contact.wake`."""
        ...

    async def claim_due(self, now: float, limit: int) -> list[str]:
        """Contacts whose timer is due, claimed (row lock / lease) so no other process runs them."""
        ...


class MemoryStore:
    """Contacts in a dict; timers in a heap of (instant, rank, contact) with lazy deletion,
    where a contact's rank is the order it was first seen in: timers due at one instant fire
    in that order, as in simulate."""

    def __init__(self) -> None:
        self.contacts: dict[str, Contact] = {}
        self.outbox: list[dict[str, Any]] = []
        self.timers: list[tuple[float, int, str]] = []
        self._rank: dict[str, int] = {}

    def get(self, contact_id: str) -> Contact:
        contact = self.contacts.get(contact_id)
        if contact is None:
            contact = self.contacts[contact_id] = Contact(contact_id)
            self._rank.setdefault(contact_id, len(self._rank))
        return contact

    def schedule(self, contact: Contact) -> None:
        wake = contact.wake
        if wake is not None and wake != contact.scheduled:
            heapq.heappush(self.timers, (wake, self._rank[contact.id], contact.id))
            contact.scheduled = wake

    def pop_due(self, until: float) -> tuple[float, Contact] | None:
        """The earliest live timer at or before `until`, removed; None if there is none."""
        timers = self.timers
        while timers and timers[0][0] <= until:
            instant, _, contact_id = heapq.heappop(timers)
            contact = self.contacts[contact_id]
            if contact.scheduled == instant:  # else superseded by a later schedule
                contact.wake = contact.scheduled = None
                return instant, contact
        return None

    # The async protocol, for code written against `Store`.
    async def load(self, contact_id: str) -> Contact:
        return self.get(contact_id)

    async def commit(self, contact: Contact, effects: Sequence[dict[str, Any]]) -> None:
        self.outbox.extend(effects)
        self.schedule(contact)

    async def claim_due(self, now: float, limit: int) -> list[str]:
        claimed: list[str] = []
        while len(claimed) < limit:
            due = self.pop_due(now)
            if due is None:
                break
            claimed.append(due[1].id)
        return claimed
