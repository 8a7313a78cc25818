"""The outbox worker: the only part of serve that talks to the outside world.

It claims due outbox rows from the store under a lease, hands each to its channel's driver
(at most `concurrency` attempts at once per channel, or as many as the driver asks for, each
under `timeout`), and records the outcome: sent; a retry after exponential backoff with full
jitter (never sooner than a driver's `retry_after`); or dead after `max_attempts` or on a
final failure. A driver that raises is a retry with the error's text, never a crash.

A slow or hanging channel never holds up the others: attempts run as their own tasks, `run`
claims more rows while they are in flight, and a channel holds at most `backlog` claimed rows;
rows claimed beyond that are put back, untried, `timeout` seconds later, so one stuck channel
cannot fill the worker with its rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from leadlang.runtime.delivery.outbox import (
    FAILED,
    OTHER_CHANNELS,
    RETRY,
    SENT,
    Delivery,
    Driver,
    OutboxStore,
    Outcome,
)
from leadlang.runtime.retrying import Retrying

log = logging.getLogger("leadlang.delivery")

BACKOFF_BASE = 1.0  # seconds: the first retry waits up to this long
BACKOFF_CAP = 3600.0  # seconds: no retry waits longer than this (unless a driver asks)
# seconds a claim holds an outbox row unless renewed (every third of it, while held)
LEASE = 15.0
RECORD_PATIENCE = 20.0  # seconds an outcome is retried on a failing store (see _attempt)


class OutboxWorker:
    def __init__(
        self,
        store: OutboxStore,
        drivers: Mapping[str, Driver],
        clock: Callable[[], float],
        max_attempts: int = 8,
        timeout: float = 15.0,
        rng: random.Random | None = None,
        *,
        batch_size: int = 500,
        concurrency: int = 16,
        backlog: int = 200,
        lease: float | None = None,
        poll: float = 0.2,
        base: float = BACKOFF_BASE,
        cap: float = BACKOFF_CAP,
    ) -> None:
        if max_attempts < 1 or timeout <= 0 or batch_size < 1 or concurrency < 1:
            raise ValueError("max_attempts, timeout, batch_size and concurrency must be positive")
        self.store = store
        self.drivers = dict(drivers)
        self.clock = clock
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.rng = rng if rng is not None else random.Random()
        self.batch_size = batch_size
        self.concurrency = concurrency
        # per channel: attempts at once (its driver's `concurrency`, or ours) and claimed rows
        self._concurrency = {
            channel: max(1, int(getattr(driver, "concurrency", concurrency)))
            for channel, driver in self.drivers.items()
        }
        # (at least twice its attempts at once: the next rows are claimed, and their attempts
        # begin, while the outcomes of the last ones are being recorded)
        self._backlog = {
            channel: max(backlog, 2 * slots) for channel, slots in self._concurrency.items()
        }
        self.backlog = max(backlog, concurrency)
        # A claimed row may wait for a slot behind a full backlog of hanging attempts, then
        # make its own: the lease is renewed every third of it while the row is held here
        # (`_renew`), so no other worker takes it meanwhile, and a killed daemon's rows are
        # free again one lease after its last renewal.
        self.lease = lease if lease is not None else LEASE
        self._renewed = -math.inf  # (loop time) when the leases were last renewed
        self.poll = poll
        self.base = base
        self.cap = cap
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._held: Counter[str] = Counter()
        self._in_flight: set[str] = set()  # keys being attempted here
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """New rows are waiting (the processor calls it, on the loop, after it commits sends)."""
        self._wake.set()

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds before the next attempt, after `attempts` earlier ones and this failure."""
        ceiling = min(self.cap, self.base * 2 ** min(attempts, 64))
        delay = self.rng.uniform(0, ceiling)
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        return delay

    async def run_once(self) -> int:
        """Claim one batch, deliver it and record every outcome; the number of rows claimed."""
        claimed, tasks = await self._dispatch(self.batch_size)
        if tasks:
            await asyncio.gather(*tasks)
        return claimed

    async def run(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Deliver until `stop` is set, then let the attempts in flight finish."""
        claims = Retrying(log, "claiming outbox rows", first=0.1)
        try:
            while not stop.is_set():
                await self._renew()
                self._wake.clear()
                if wake is not None:
                    wake.clear()
                room = self._room()
                claimed = 0
                if room > 0:
                    try:
                        claimed, _ = await self._dispatch(min(self.batch_size, room))
                        claims.succeeded()
                    except Exception as exc:  # (the store down or restarting)
                        await claims.failed(exc, stop)
                if room > 0 and claimed == min(self.batch_size, room) and self._room() > 0:
                    await asyncio.sleep(0)  # a full batch: more may be due right now
                    continue
                await self._idle(stop, wake, self._room() <= 0)
        except asyncio.CancelledError:
            # Cancelled rather than stopped: abandon the attempts; their leases bring the rows
            # back (drivers are idempotent by key).
            for task in self._tasks:
                task.cancel()
            raise
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _renew(self) -> None:
        """Renew the leases of the rows held here, every third of a lease."""
        loop = asyncio.get_running_loop()
        if not self._in_flight or loop.time() < self._renewed + self.lease / 3:
            return
        self._renewed = loop.time()
        try:
            await self.store.renew_outbox_leases(list(self._in_flight), self.clock(), self.lease)
        except Exception as exc:  # the store away: the next turn tries again
            log.warning("renewing the outbox leases failed (%s)", exc)

    async def close(self) -> None:
        """Close every driver (after `run` has returned)."""
        for driver in self.drivers.values():
            try:
                await driver.close()
            except Exception:
                log.exception("closing a driver failed")

    def _room(self) -> int:
        return max(sum(self._backlog.values()), self.backlog) - len(self._tasks)

    async def _idle(self, stop: asyncio.Event, wake: asyncio.Event | None, busy: bool) -> None:
        """Wait for a signal, the next poll, or (when slots are full) an attempt to finish."""
        events = [stop, self._wake] + ([wake] if wake is not None else [])
        waiters: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(event.wait()) for event in events
        }
        watched: set[asyncio.Future[Any]] = set(waiters)
        if busy:
            watched |= set(self._tasks)
        try:
            await asyncio.wait(watched, timeout=self.poll, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*waiters, return_exceptions=True)

    async def _dispatch(self, limit: int) -> tuple[int, list[asyncio.Task[None]]]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop and not self._tasks:
            # Semaphores and events belong to one event loop (tests run several).
            woken = self._wake.is_set()
            self._loop, self._slots, self._wake = loop, {}, asyncio.Event()
            if woken:
                self._wake.set()
        now = self.clock()
        # each channel claims only what it has room for: rows past a busy channel's backlog
        # stay due in the outbox instead of being claimed and put back for later
        rooms = {channel: self._backlog[channel] - self._held[channel] for channel in self.drivers}
        rooms[OTHER_CHANNELS] = self.batch_size  # (no driver: they are dead at once)
        rows = await self.store.claim_outbox(now, limit, self.lease, rooms)
        tasks: list[asyncio.Task[None]] = []
        for delivery in rows:
            if delivery.key in self._in_flight:
                continue  # its lease ran out while it waited here; the claim renewed it
            if self._held[delivery.channel] >= self._backlog.get(delivery.channel, self.backlog):
                await self._put_back(delivery, now)
                continue
            self._held[delivery.channel] += 1
            self._in_flight.add(delivery.key)
            task = asyncio.create_task(self._attempt(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            tasks.append(task)
        return len(rows), tasks

    async def _put_back(self, delivery: Delivery, now: float) -> None:
        try:
            await self.store.outbox_retry(
                delivery.key,
                delivery.attempts,
                now + self.timeout,
                f"not attempted yet: the {delivery.channel} channel is busy",
            )
        except Exception:
            log.exception("putting back outbox row %s failed", delivery.key)

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            driver = self.drivers.get(delivery.channel)
            if driver is None:
                outcome = Outcome.failed(f"no driver for channel `{delivery.channel}`")
            else:
                async with self._slot(delivery.channel):
                    outcome = await self._deliver(driver, delivery)
            await self._record_patiently(delivery, outcome)
        except Exception:
            # The row keeps its lease and comes back when it expires; delivery is idempotent.
            log.exception("recording the outcome of outbox row %s failed", delivery.key)
        finally:
            channel = delivery.channel
            if self._held[channel] >= self._backlog.get(channel, self.backlog):
                self._wake.set()  # (its channel was full: claim more now, not at the next poll)
            self._held[channel] -= 1
            self._in_flight.discard(delivery.key)

    def _slot(self, channel: str) -> asyncio.Semaphore:
        slot = self._slots.get(channel)
        if slot is None:
            slots = self._concurrency.get(channel, self.concurrency)
            slot = self._slots[channel] = asyncio.Semaphore(slots)
        return slot

    async def _deliver(self, driver: Driver, delivery: Delivery) -> Outcome:
        try:
            outcome = await asyncio.wait_for(driver.deliver(delivery), self.timeout)
        except TimeoutError:
            return Outcome.retry(f"timed out after {self.timeout:g}s")
        except Exception as error:
            return Outcome.retry(f"{type(error).__name__}: {error}".rstrip(": "))
        if not isinstance(outcome, Outcome) or outcome.status not in (SENT, RETRY, FAILED):
            return Outcome.retry(f"the {delivery.channel} driver answered {outcome!r}")
        return outcome

    async def _record_patiently(self, delivery: Delivery, outcome: Outcome) -> None:
        """Record the outcome, trying again for up to RECORD_PATIENCE seconds while the store
        fails (a restart, a cut connection): a delivery made is then not made again when the
        row's lease runs out. Past that, the exception (and the lease) stand."""
        loop = asyncio.get_running_loop()  # (real time: `clock` may be a test's)
        deadline = loop.time() + RECORD_PATIENCE
        delay = 0.25
        while True:
            try:
                await self._record(delivery, outcome)
                return
            except Exception as exc:
                if loop.time() + delay > deadline:
                    raise
                log.warning(
                    "recording the outcome of outbox row %s failed (%s); retrying",
                    delivery.key,
                    exc,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)

    async def _record(self, delivery: Delivery, outcome: Outcome) -> None:
        now = self.clock()
        if outcome.status == SENT:
            await self.store.outbox_sent(delivery.key, now)
            return
        attempts = delivery.attempts + 1
        error = outcome.error or outcome.status
        if outcome.status == FAILED or attempts >= self.max_attempts:
            log.warning(
                "outbox row %s is dead after %d attempts: %s", delivery.key, attempts, error
            )
            await self.store.outbox_dead(delivery.key, attempts, error)
            return
        delay = self.backoff(delivery.attempts, outcome.retry_after)
        await self.store.outbox_retry(delivery.key, attempts, now + delay, error)
