"""The outbox worker against an in-memory outbox: outcomes, backoff, dead letters, timeouts,
per-channel isolation, waking; and end to end with the real maildir and JSON-lines drivers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import mailbox
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from leadlang.runtime.delivery import worker as worker_module
from leadlang.runtime.delivery.drivers import make_drivers
from leadlang.runtime.delivery.drivers.smtp import SmtpDriver
from leadlang.runtime.delivery.outbox import Delivery, Driver, Outcome
from leadlang.runtime.delivery.worker import LEASE, OutboxWorker
from leadlang.runtime.store.sql import open_store
from tests.test_store_outbox import NOW, _row, _statuses, _with_rows

pytestmark = pytest.mark.timeout(30)


@attrs.define
class Row:
    delivery: Delivery
    status: str = "pending"  # pending | claimed | sent | dead
    attempts: int = 0
    next_attempt: float = 0.0
    lease_until: float = 0.0
    error: str | None = None
    sent_at: float | None = None


class MemoryOutbox:
    """The OutboxStore interface over a dict, as the SQL store behaves."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.claims: list[tuple[float, int, float]] = []

    def add(self, delivery: Delivery, next_attempt: float = 0.0) -> None:
        self.rows[delivery.key] = Row(delivery, next_attempt=next_attempt)

    async def claim_outbox(
        self, now: float, limit: int, lease: float, rooms: dict[str, int] | None = None
    ) -> list[Delivery]:
        self.claims.append((now, limit, lease))
        due = [
            row
            for row in self.rows.values()
            if (row.status == "pending" and row.next_attempt <= now)
            or (row.status == "claimed" and row.lease_until <= now)
        ]
        if rooms is not None:  # at most `room` rows of each channel
            left = dict(rooms)
            kept = []
            for row in sorted(due, key=lambda row: row.next_attempt):
                channel = row.delivery.channel if row.delivery.channel in left else "*"
                if left.get(channel, 0) > 0:
                    left[channel] -= 1
                    kept.append(row)
            due = kept
        due.sort(key=lambda row: row.next_attempt)
        out = []
        for row in due[:limit]:
            row.status, row.lease_until = "claimed", now + lease
            out.append(attrs.evolve(row.delivery, attempts=row.attempts))
        return out

    async def renew_outbox_leases(self, keys: Sequence[str], now: float, lease: float) -> None:
        for key in keys:
            if self.rows[key].status == "claimed":
                self.rows[key].lease_until = now + lease

    async def outbox_sent(self, key: str, now: float) -> None:
        row = self.rows[key]
        row.status, row.sent_at = "sent", now

    async def outbox_retry(self, key: str, attempts: int, next_attempt: float, error: str) -> None:
        row = self.rows[key]
        row.status, row.attempts, row.next_attempt, row.error = (
            "pending",
            attempts,
            next_attempt,
            error,
        )

    async def outbox_dead(self, key: str, attempts: int, error: str) -> None:
        row = self.rows[key]
        row.status, row.attempts, row.error = "dead", attempts, error


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Scripted:
    """A fake driver for the worker's logic: answers with `answer(delivery)`."""

    def __init__(self, answer: Callable[[Delivery], Awaitable[Outcome]]) -> None:
        self.answer = answer
        self.seen: list[Delivery] = []
        self.active = 0
        self.most_active = 0
        self.closed = False

    async def deliver(self, delivery: Delivery) -> Outcome:
        self.seen.append(delivery)
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            return await self.answer(delivery)
        finally:
            self.active -= 1

    async def close(self) -> None:
        self.closed = True


def answers(*outcomes: Outcome | BaseException) -> Callable[[Delivery], Awaitable[Outcome]]:
    """Each call takes the next answer (the last one repeats); an exception is raised."""
    queue = list(outcomes)

    async def answer(_: Delivery) -> Outcome:
        result = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(result, BaseException):
            raise result
        return result

    return answer


async def hang(_: Delivery) -> Outcome:
    await asyncio.Event().wait()  # forever
    raise AssertionError("unreachable")


async def quick(_: Delivery) -> Outcome:
    return Outcome.sent()


def delivery(n: int, channel: str = "email", **changes: Any) -> Delivery:
    base = Delivery(
        key=f"{n:032x}",
        contact=f"c{n}",
        flow="welcome",
        message={"email": "hello", "sms": "hello_sms", "push": "hello_push"}[channel],
        channel=channel,
        at="2025-06-01T08:00:00Z",
        to={"email": f"c{n}@example.com", "sms": "+15550100", "push": None}[channel],
        content={
            "email": {"subject": "Hello", "text": "Hi\n", "html": "<p>Hi</p>"},
            "sms": {"text": "Hi"},
            "push": {"url": "https://p.example", "headers": {}, "json": {"n": n}},
        }[channel],
        attempts=0,
    )
    return attrs.evolve(base, **changes)


def worker(
    store: MemoryOutbox, drivers: dict[str, Driver], clock: Clock, **options: Any
) -> OutboxWorker:
    return OutboxWorker(store, drivers, clock, **options)


def test_a_sent_row_is_marked_sent_at_the_clock() -> None:
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1))
    store.add(delivery(2), next_attempt=clock.now + 10)  # not due yet
    driver = Scripted(quick)
    assert asyncio.run(worker(store, {"email": driver}, clock).run_once()) == 1
    assert store.rows[delivery(1).key].status == "sent"
    assert store.rows[delivery(1).key].sent_at == clock.now
    assert store.rows[delivery(2).key].status == "pending"
    assert [d.key for d in driver.seen] == [delivery(1).key]


def test_retries_back_off_exponentially_with_full_jitter() -> None:
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1))
    w = worker(store, {"email": Scripted(answers(Outcome.retry("503")))}, clock)
    w.rng = random.Random(7)
    expected_rng = random.Random(7)
    row = store.rows[delivery(1).key]
    for attempt in range(7):
        before = clock.now
        asyncio.run(w.run_once())
        assert row.status == "pending" and row.attempts == attempt + 1 and row.error == "503"
        delay = row.next_attempt - before
        ceiling = min(3600.0, 1.0 * 2**attempt)
        assert 0 <= delay <= ceiling
        assert delay == pytest.approx(expected_rng.uniform(0, ceiling))
        clock.now = row.next_attempt
    asyncio.run(w.run_once())
    assert row.status == "dead" and row.attempts == 8 and row.error == "503"


def test_the_backoff_is_capped_at_an_hour() -> None:
    w = worker(MemoryOutbox(), {}, Clock(), rng=random.Random(1))
    delays = [w.backoff(30) for _ in range(500)]
    assert max(delays) <= 3600.0 and max(delays) > 3000.0
    assert min(w.backoff(0) for _ in range(500)) >= 0.0


def test_retry_after_is_the_least_delay() -> None:
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1))
    driver = Scripted(answers(Outcome.retry("429 too many requests", after=120.0)))
    asyncio.run(worker(store, {"email": driver}, clock, rng=random.Random(3)).run_once())
    row = store.rows[delivery(1).key]
    assert row.status == "pending" and row.next_attempt - clock.now == 120.0
    assert row.error == "429 too many requests"


def test_a_driver_exception_is_a_retry_with_its_text() -> None:
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1))
    driver = Scripted(answers(ConnectionRefusedError("connection refused"), Outcome.sent()))
    w = worker(store, {"email": driver}, clock)
    asyncio.run(w.run_once())
    row = store.rows[delivery(1).key]
    assert row.status == "pending" and row.attempts == 1
    assert row.error == "ConnectionRefusedError: connection refused"
    clock.now = row.next_attempt
    asyncio.run(w.run_once())
    assert row.status == "sent"
    assert driver.seen[1].attempts == 1  # the driver sees the attempts made before


def test_a_final_failure_is_dead_at_once() -> None:
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1))
    driver = Scripted(answers(Outcome.failed("550 no such mailbox")))
    asyncio.run(worker(store, {"email": driver}, clock).run_once())
    row = store.rows[delivery(1).key]
    assert (row.status, row.attempts, row.error) == ("dead", 1, "550 no such mailbox")


def test_after_max_attempts_the_row_is_dead_with_the_last_error() -> None:
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1))
    errors = [Outcome.retry(f"attempt {n} failed") for n in range(1, 4)]
    w = worker(store, {"email": Scripted(answers(*errors))}, clock, max_attempts=3)
    row = store.rows[delivery(1).key]
    for _ in range(3):
        asyncio.run(w.run_once())
        clock.now = max(clock.now, row.next_attempt)
    assert (row.status, row.attempts, row.error) == ("dead", 3, "attempt 3 failed")
    assert asyncio.run(w.run_once()) == 0


def test_a_channel_without_a_driver_is_dead() -> None:
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1, "push"))
    asyncio.run(worker(store, {"email": Scripted(quick)}, clock).run_once())
    row = store.rows[delivery(1, "push").key]
    assert row.status == "dead" and "push" in (row.error or "")


def test_a_hanging_channel_times_out_and_does_not_delay_the_others() -> None:
    store, clock = MemoryOutbox(), Clock()
    for n in range(3):
        store.add(delivery(n, "sms"))
    for n in range(10, 13):
        store.add(delivery(n, "email"))
    done_at: dict[str, float] = {}

    async def record(d: Delivery) -> Outcome:
        done_at[d.key] = time.monotonic()
        return Outcome.sent()

    async def go() -> float:
        w = worker(store, {"sms": Scripted(hang), "email": Scripted(record)}, clock, timeout=1.0)
        start = time.monotonic()
        await w.run_once()
        return start

    start = asyncio.run(go())
    assert len(done_at) == 3 and max(done_at.values()) - start < 0.5
    for n in range(10, 13):
        assert store.rows[delivery(n, "email").key].status == "sent"
    for n in range(3):
        row = store.rows[delivery(n, "sms").key]
        assert (row.status, row.attempts, row.error) == ("pending", 1, "timed out after 1s")


def test_while_a_channel_hangs_run_keeps_delivering_the_others() -> None:
    store, clock = MemoryOutbox(), Clock()
    for n in range(40):
        store.add(delivery(n, "sms"))
    email = Scripted(quick)

    async def go() -> tuple[float, float]:
        w = worker(
            store,
            {"sms": Scripted(hang), "email": email},
            clock,
            timeout=2.0,
            concurrency=2,
            backlog=4,
            poll=0.05,
        )
        stop, wake = asyncio.Event(), asyncio.Event()
        running = asyncio.create_task(w.run(stop, wake))
        await asyncio.sleep(0.3)  # the sms channel is stuck with all its slots taken
        sent = time.monotonic()
        store.add(delivery(100, "email"))
        wake.set()
        while store.rows[delivery(100, "email").key].status != "sent":
            await asyncio.sleep(0.01)
        delivered = time.monotonic()
        stop.set()
        await running  # lets the hanging attempts run into their timeout
        return sent, delivered

    sent, delivered = asyncio.run(go())
    assert delivered - sent < 0.5
    rows = [store.rows[delivery(n, "sms").key] for n in range(40)]
    tried = [row for row in rows if row.attempts == 1]
    assert len(tried) == 4  # the backlog: 2 in flight, 2 waiting for a slot
    assert all(row.error == "timed out after 2s" for row in tried)
    # the rest were never claimed: a busy channel claims only what its backlog has room for,
    # so they stay due in the outbox, untouched, for when the channel frees up
    waiting = [row for row in rows if row.attempts == 0]
    assert len(waiting) == 36
    assert all(row.status == "pending" and row.error is None for row in waiting)
    assert all(row.next_attempt <= clock.now for row in waiting)


@pytest.mark.parametrize("asks", [None, 40], ids=["worker-limit", "driver-asks-for-more"])
def test_at_most_concurrency_attempts_per_channel_at_once(asks: int | None) -> None:
    """At most `concurrency` attempts per channel at once, or as many as a channel's driver
    asks for (its `concurrency`: the Maildir driver writes sends in groups); the other
    channel keeps the worker's own limit."""
    store, clock = MemoryOutbox(), Clock()
    for n in range(60):
        store.add(delivery(n))
    for n in range(100, 130):
        store.add(delivery(n, "sms"))

    async def slow(_: Delivery) -> Outcome:
        await asyncio.sleep(0.01)
        return Outcome.sent()

    email, sms = Scripted(slow), Scripted(slow)
    if asks is not None:
        email.concurrency = asks  # type: ignore[attr-defined]
    w = worker(store, {"email": email, "sms": sms}, clock, concurrency=3, batch_size=200)
    assert asyncio.run(w.run_once()) == 90
    assert email.most_active == (asks or 3) and sms.most_active == 3
    assert all(row.status == "sent" for row in store.rows.values())


def test_leases_are_renewed_while_a_row_is_held() -> None:
    """A short lease (so that a killed daemon's rows come back soon) covers a long attempt
    (and rows queued behind one): the worker renews the leases of the rows it holds."""
    store = MemoryOutbox()
    store.add(delivery(1))
    store.add(delivery(2))

    async def slow(_: Delivery) -> Outcome:
        await asyncio.sleep(1.0)
        return Outcome.sent()

    async def go() -> list[Delivery]:
        # (one slot, and its backlog of two full, one row attempted and one waiting for the
        # slot: no room to claim more meanwhile, so only a renewal keeps the leases)
        options: dict[str, Any] = {"lease": 0.3, "concurrency": 1, "backlog": 1}
        w = worker(store, {"email": Scripted(slow)}, time.time, **options)  # type: ignore[arg-type]
        stop = asyncio.Event()
        running = asyncio.create_task(w.run(stop))
        await asyncio.sleep(0.7)  # over two leases into the attempt
        stolen = await store.claim_outbox(time.time(), 10, 0.3)  # another daemon's claim
        stop.set()
        await running
        return stolen

    assert asyncio.run(go()) == []
    assert store.rows[delivery(1).key].status == "sent"
    assert store.rows[delivery(2).key].status == "sent"
    assert worker(MemoryOutbox(), {}, Clock()).lease == LEASE == 15.0


def test_a_row_still_in_flight_here_is_not_attempted_twice() -> None:
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1))

    async def slow(_: Delivery) -> Outcome:
        await asyncio.sleep(0.2)
        return Outcome.sent()

    driver = Scripted(slow)

    async def go() -> None:
        w = worker(store, {"email": driver}, clock, lease=1.0)
        first = asyncio.create_task(w.run_once())
        await asyncio.sleep(0.05)
        clock.now += 5.0  # the lease ran out while the attempt is still running
        assert await w.run_once() == 1  # claimed again...
        await first

    asyncio.run(go())
    assert len(driver.seen) == 1  # ...but attempted once
    assert store.rows[delivery(1).key].status == "sent"


def test_wake_delivers_without_waiting_for_the_poll() -> None:
    store, clock = MemoryOutbox(), Clock()

    async def go() -> float:
        w = worker(store, {"email": Scripted(quick)}, clock, poll=10.0)
        stop = asyncio.Event()
        running = asyncio.create_task(w.run(stop, asyncio.Event()))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        store.add(delivery(1))
        w.wake()
        while store.rows[delivery(1).key].status != "sent":
            await asyncio.sleep(0.005)
        took = time.monotonic() - start
        stop.set()
        await running
        return took

    assert asyncio.run(go()) < 1.0


def test_run_polls_and_survives_a_failing_store() -> None:
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1))
    failures = [RuntimeError("database is locked")]
    claim = store.claim_outbox

    async def flaky(
        now: float, limit: int, lease: float, rooms: dict[str, int] | None = None
    ) -> list[Delivery]:
        if failures:
            raise failures.pop()
        return await claim(now, limit, lease, rooms)

    store.claim_outbox = flaky  # type: ignore[method-assign]

    async def go() -> None:
        w = worker(store, {"email": Scripted(quick)}, clock, poll=0.02)
        stop = asyncio.Event()
        running = asyncio.create_task(w.run(stop))
        while store.rows[delivery(1).key].status != "sent":
            await asyncio.sleep(0.01)
        stop.set()
        await running
        await w.close()

    asyncio.run(go())
    assert not failures


def test_cancelling_run_abandons_the_attempts_in_flight() -> None:
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1, "sms"))

    async def go() -> None:
        w = worker(store, {"sms": Scripted(hang)}, clock, timeout=10.0, poll=0.01)
        running = asyncio.create_task(w.run(asyncio.Event()))
        while not w._tasks:
            await asyncio.sleep(0.01)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert not w._tasks

    start = time.monotonic()
    asyncio.run(go())
    assert time.monotonic() - start < 2.0
    assert store.rows[delivery(1, "sms").key].status == "claimed"  # until its lease runs out


def test_close_closes_the_drivers() -> None:
    driver = Scripted(quick)
    asyncio.run(worker(MemoryOutbox(), {"email": driver}, Clock()).close())
    assert driver.closed


def test_end_to_end_with_the_default_drivers(tmp_path: Path) -> None:
    store, clock = MemoryOutbox(), Clock()
    for n in range(5):
        store.add(delivery(n, "email"))
        store.add(delivery(10 + n, "sms"))
        store.add(delivery(20 + n, "push"))

    async def go() -> None:
        drivers = make_drivers({}, tmp_path)
        w = worker(store, drivers, clock)
        assert await w.run_once() == 15
        # A crash after delivering, before the store recorded it: the rows come back.
        for row in store.rows.values():
            row.status = "pending"
        assert await w.run_once() == 15
        await w.close()

    asyncio.run(go())
    assert all(row.status == "sent" for row in store.rows.values())
    box = mailbox.Maildir(tmp_path / "outbox", create=False)
    assert sorted(box.iterkeys()) == sorted(delivery(n).key for n in range(5))
    sms_lines = (tmp_path / "outbox" / "sms.jsonl").read_text(encoding="utf-8").splitlines()
    push_lines = (tmp_path / "outbox" / "push.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(sms_lines) == 5 and len(push_lines) == 5


def test_a_full_channel_claims_again_as_soon_as_it_has_room() -> None:
    """Rows beyond a channel's backlog wait in the outbox; when an attempt ends and makes room,
    the worker claims them at once, not at its next poll (with nothing else to wake it, and
    another channel, idle, with room to spare)."""
    store = MemoryOutbox()
    for n in range(3):
        store.add(delivery(n))
    driver = Scripted(quick)

    async def go() -> float:
        options: dict[str, Any] = {"concurrency": 1, "backlog": 1, "poll": 10.0}
        drivers: dict[str, Driver] = {"email": driver, "sms": Scripted(quick)}
        w = worker(store, drivers, time.time, **options)  # type: ignore[arg-type]
        stop = asyncio.Event()
        started = time.monotonic()
        running = asyncio.create_task(w.run(stop))
        while any(row.status != "sent" for row in store.rows.values()):
            await asyncio.sleep(0.01)
            assert time.monotonic() - started < 5, "the rows waited for the next poll"
        stop.set()
        await running
        return time.monotonic() - started

    assert asyncio.run(go()) < 5
    assert len(driver.seen) == 3


@pytest.mark.parametrize(
    "option",
    [{"max_attempts": 0}, {"timeout": 0.0}, {"batch_size": 0}, {"concurrency": 0}],
    ids=["max_attempts", "timeout", "batch_size", "concurrency"],
)
def test_an_option_that_is_not_positive_is_refused(option: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        worker(MemoryOutbox(), {}, Clock(), **option)
    smallest = {key: 1 if key != "timeout" else 0.001 for key in option}
    assert worker(MemoryOutbox(), {}, Clock(), **smallest)


def test_a_driver_asking_for_no_attempts_at_once_still_gets_one() -> None:
    store, clock = MemoryOutbox(), Clock()
    for n in range(3):
        store.add(delivery(n))
    driver = Scripted(quick)
    driver.concurrency = 0  # type: ignore[attr-defined]

    async def go() -> int:
        return await asyncio.wait_for(worker(store, {"email": driver}, clock).run_once(), 5)

    assert asyncio.run(go()) == 3
    assert driver.most_active == 1
    assert all(row.status == "sent" for row in store.rows.values())


def test_a_channel_holds_twice_the_attempts_its_driver_asks_for() -> None:
    """A driver asking for more attempts at once than the backlog gets a backlog of twice
    that many: the next rows are claimed while the last ones' outcomes are recorded."""
    store, clock = MemoryOutbox(), Clock()
    for n in range(10):
        store.add(delivery(n))
    driver = Scripted(quick)
    driver.concurrency = 2  # type: ignore[attr-defined]
    w = worker(store, {"email": driver}, clock, backlog=1)
    assert asyncio.run(w.run_once()) == 4
    assert [row.status for row in store.rows.values()].count("sent") == 4


def test_rows_of_a_channel_without_a_driver_are_dead_up_to_the_attempts_at_once() -> None:
    """Rows of a channel with no driver are dead at once, as many at a time as the worker's
    `concurrency` (its backlog is never less), not put back as if the channel were busy."""
    store, clock = MemoryOutbox(), Clock()
    for n in range(3):
        store.add(delivery(n, "push"))
    w = worker(store, {"email": Scripted(quick)}, clock, concurrency=3, backlog=1)
    assert asyncio.run(w.run_once()) == 3
    rows = [store.rows[delivery(n, "push").key] for n in range(3)]
    assert [(row.status, row.attempts) for row in rows] == [("dead", 1)] * 3
    assert all(row.error == "no driver for channel `push`" for row in rows)


def test_the_backoff_takes_its_base_and_cap_and_any_number_of_attempts() -> None:
    w = worker(MemoryOutbox(), {}, Clock(), rng=random.Random(5), base=0.5, cap=10.0)
    expected = random.Random(5)
    for attempts in (0, 1, 3, 5, 64, 5000):
        ceiling = min(10.0, 0.5 * 2 ** min(attempts, 64))
        assert w.backoff(attempts) == pytest.approx(expected.uniform(0, ceiling))
    # max_attempts has no upper bound: a thousandth retry waits at most the cap
    assert 0 <= worker(MemoryOutbox(), {}, Clock()).backoff(5000) <= 3600.0


def test_a_retry_after_shorter_than_the_backoff_does_not_shorten_it() -> None:
    w = worker(MemoryOutbox(), {}, Clock(), rng=random.Random(11))
    expected = random.Random(11)
    delays = [w.backoff(10, retry_after=0.5) for _ in range(20)]
    assert delays == [max(0.5, expected.uniform(0, 1024.0)) for _ in range(20)]
    assert max(delays) > 0.5


def test_an_idle_worker_claims_once_per_wake_or_poll() -> None:
    """A wake, from `wake()` or the `wake` event, makes one claim, not a busy loop; a claim
    that got less than a full batch is not followed by another at once."""
    store, clock = MemoryOutbox(), Clock()

    async def go() -> int:
        w = worker(store, {"email": Scripted(quick)}, clock, poll=10.0)
        stop, wake = asyncio.Event(), asyncio.Event()
        running = asyncio.create_task(w.run(stop, wake))
        await asyncio.sleep(0.1)
        before = len(store.claims)
        store.add(delivery(1))
        w.wake()
        await asyncio.sleep(0.2)
        store.add(delivery(2))
        wake.set()
        await asyncio.sleep(0.2)
        assert all(row.status == "sent" for row in store.rows.values())
        claims = len(store.claims) - before
        stop.set()
        await running
        return claims

    assert asyncio.run(go()) == 2


def test_a_failing_store_is_claimed_from_again_soon_and_each_run_of_failures_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first failure of a run of them is logged with its traceback (an error), a second
    in a row in one line (a warning); a claim that succeeds ends the run. The first pause is
    short (a fifth of a second), not the five seconds the pauses grow to."""
    store, clock = MemoryOutbox(), Clock()
    failures: list[Exception] = []
    claim = store.claim_outbox

    async def flaky(
        now: float, limit: int, lease: float, rooms: dict[str, int] | None = None
    ) -> list[Delivery]:
        if failures:
            raise failures.pop()
        return await claim(now, limit, lease, rooms)

    store.claim_outbox = flaky  # type: ignore[method-assign]

    async def sent(n: int) -> float:
        start = time.monotonic()
        while store.rows[delivery(n).key].status != "sent":
            await asyncio.sleep(0.01)
        return time.monotonic() - start

    async def go() -> list[float]:
        w = worker(store, {"email": Scripted(quick)}, clock, poll=0.02)
        stop = asyncio.Event()
        running = asyncio.create_task(w.run(stop))
        took = []
        for n in (1, 2):
            store.add(delivery(n))
            failures.append(RuntimeError("database is locked"))
            took.append(await sent(n))
        stop.set()
        await running
        return took

    with caplog.at_level(logging.WARNING, logger="leadlang.delivery"):
        took = asyncio.run(go())
    assert max(took) < 2.5
    claiming = [r for r in caplog.records if r.getMessage().startswith("claiming outbox rows")]
    assert [r.levelname for r in claiming] == ["ERROR", "ERROR"]
    assert all(r.exc_info for r in claiming)


def test_leases_are_renewed_every_third_of_a_lease_and_a_failed_renewal_is_tried_again() -> None:
    """Only rows held here are renewed, every third of a lease (not at every turn of the
    loop, not once a lease), and a renewal the store fails is tried again at the next."""
    store = MemoryOutbox()
    store.add(delivery(1))
    renewals: list[tuple[float, list[str]]] = []
    renew = store.renew_outbox_leases

    async def counted(keys: Sequence[str], now: float, lease: float) -> None:
        renewals.append((time.monotonic(), list(keys)))
        if len(renewals) == 1:
            raise RuntimeError("the store is restarting")
        await renew(keys, now, lease)

    store.renew_outbox_leases = counted  # type: ignore[method-assign]

    async def slow(_: Delivery) -> Outcome:
        await asyncio.sleep(1.2)
        return Outcome.sent()

    async def go() -> float:
        options: dict[str, Any] = {"lease": 0.6, "poll": 0.01}
        w = worker(store, {"email": Scripted(slow)}, time.time, **options)  # type: ignore[arg-type]
        stop = asyncio.Event()
        running = asyncio.create_task(w.run(stop))
        await asyncio.sleep(0.2)  # idle, nothing held: nothing renewed
        start = time.monotonic()
        while store.rows[delivery(1).key].status != "sent":
            await asyncio.sleep(0.01)
        stop.set()
        await running
        return time.monotonic() - start

    took = asyncio.run(go())
    assert all(keys == [delivery(1).key] for _, keys in renewals)
    # one at the start of the attempt, then one every 0.2 s of its 1.2 s (or a little more)
    assert 5 <= len(renewals) <= took / 0.2 + 2
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(renewals)]
    assert min(gaps) >= 0.2


def test_after_a_full_batch_the_worker_claims_again_at_once() -> None:
    store, clock = MemoryOutbox(), Clock()
    for n in range(5):
        store.add(delivery(n))

    async def go() -> None:
        w = worker(store, {"email": Scripted(quick)}, clock, batch_size=2, poll=10.0)
        stop = asyncio.Event()
        running = asyncio.create_task(w.run(stop))
        started = time.monotonic()
        while any(row.status != "sent" for row in store.rows.values()):
            await asyncio.sleep(0.01)
            assert time.monotonic() - started < 5, "the rows waited for the next poll"
        stop.set()
        await running

    asyncio.run(go())
    assert [limit for _, limit, _ in store.claims[:3]] == [2, 2, 2]


def test_rows_claimed_beyond_a_channels_backlog_are_put_back_untried() -> None:
    """(Only rows of a channel without a driver can be claimed beyond its backlog: the others
    are claimed only up to their room.) They wait `timeout` seconds, attempts unchanged."""
    store, clock = MemoryOutbox(), Clock()
    for n in range(3):
        store.add(delivery(n, "push"))
    w = worker(store, {"email": Scripted(quick)}, clock, concurrency=1, backlog=1, timeout=7.0)
    assert asyncio.run(w.run_once()) == 3
    rows = [store.rows[delivery(n, "push").key] for n in range(3)]
    assert (rows[0].status, rows[0].attempts) == ("dead", 1)
    for row in rows[1:]:
        assert (row.status, row.attempts, row.next_attempt) == ("pending", 0, clock.now + 7.0)
        assert row.error == "not attempted yet: the push channel is busy"


def test_run_without_any_driver_still_marks_rows_dead() -> None:
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1, "sms"))

    async def go() -> None:
        w = worker(store, {}, clock, poll=0.01)
        stop = asyncio.Event()
        running = asyncio.create_task(w.run(stop))
        started = time.monotonic()
        while store.rows[delivery(1, "sms").key].status != "dead":
            await asyncio.sleep(0.01)
            assert time.monotonic() - started < 5, "never claimed"
        stop.set()
        await running

    asyncio.run(go())


def test_close_closes_every_driver_even_when_one_fails(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(Scripted):
        async def close(self) -> None:
            raise OSError("the connection is gone")

    last = Scripted(quick)
    drivers: dict[str, Driver] = {"email": Failing(quick), "sms": last}
    with caplog.at_level(logging.ERROR, logger="leadlang.delivery"):
        asyncio.run(worker(MemoryOutbox(), drivers, Clock()).close())
    assert last.closed
    assert [r.getMessage() for r in caplog.records] == ["closing a driver failed"]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (ConnectionResetError(), "ConnectionResetError"),
        (None, "the email driver answered None"),
        (Outcome("delivered"), "the email driver answered Outcome(status='delivered'"),
    ],
    ids=["exception-without-text", "none", "unknown-status"],
)
def test_a_driver_answering_nonsense_is_a_retry_saying_what_it_answered(
    answer: Any, error: str
) -> None:
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1))

    async def odd(_: Delivery) -> Outcome:
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]

    asyncio.run(worker(store, {"email": Scripted(odd)}, clock).run_once())
    row = store.rows[delivery(1).key]
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.error is not None and row.error.startswith(error)
    assert row.error == error or error.endswith("'delivered'")


def test_an_outcome_the_store_failed_to_record_is_recorded_again_not_delivered_again() -> None:
    """The store fails while recording a send (a restart): the worker records it again a
    little later, so the row is sent, and the driver was called once."""
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1))
    failures = [RuntimeError("the store is restarting")]
    sent = store.outbox_sent

    async def flaky(key: str, now: float) -> None:
        if failures:
            raise failures.pop()
        await sent(key, now)

    store.outbox_sent = flaky  # type: ignore[method-assign]
    driver = Scripted(quick)
    asyncio.run(worker(store, {"email": driver}, clock).run_once())
    assert store.rows[delivery(1).key].status == "sent" and len(driver.seen) == 1


@pytest.mark.timeout(90)
def test_a_store_down_for_seconds_is_tried_again_at_least_every_four_seconds() -> None:
    """The store is away for 9 s (a restart) while a send's outcome is to be recorded: the
    worker tries again at growing pauses of at most 4 s, so the send is recorded soon after
    the store is back (well within RECORD_PATIENCE: not left to its lease, to be sent again).
    Takes about 12 s."""
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1))
    sent = store.outbox_sent
    tries: list[float] = []
    back = time.monotonic() + 9.0

    async def restarting(key: str, now: float) -> None:
        tries.append(time.monotonic())
        if tries[-1] < back:
            raise RuntimeError("the store is restarting")
        await sent(key, now)

    store.outbox_sent = restarting  # type: ignore[method-assign]
    driver = Scripted(quick)
    asyncio.run(worker(store, {"email": driver}, clock).run_once())
    assert store.rows[delivery(1).key].status == "sent" and len(driver.seen) == 1
    assert max(b - a for a, b in itertools.pairwise(tries)) < 6.0  # (4 s, and slack)


def test_past_its_patience_a_failed_record_leaves_the_row_to_its_lease(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker tries to record an outcome for RECORD_PATIENCE seconds, waiting a quarter of
    a second, then twice as long each time (here: at 0, 0.25 and 0.75 s of a second)."""
    monkeypatch.setattr(worker_module, "RECORD_PATIENCE", 1.0)
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1))
    tries: list[float] = []

    async def down(key: str, now: float) -> None:
        tries.append(time.monotonic())
        raise RuntimeError("the store is down")

    store.outbox_sent = down  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="leadlang.delivery"):
        assert asyncio.run(worker(store, {"email": Scripted(quick)}, clock).run_once()) == 1
    assert store.rows[delivery(1).key].status == "claimed"  # until its lease runs out
    assert 2 <= len(tries) <= 3 and tries[1] - tries[0] >= 0.25
    assert caplog.records[-1].getMessage() == (
        f"recording the outcome of outbox row {delivery(1).key} failed"
    )


def test_a_row_the_store_fails_to_put_back_does_not_stop_the_others() -> None:
    store, clock = MemoryOutbox(), Clock()
    for n in range(2):
        store.add(delivery(n, "push"))

    async def down(key: str, attempts: int, next_attempt: float, error: str) -> None:
        raise RuntimeError("the store is down")

    store.outbox_retry = down  # type: ignore[method-assign]
    w = worker(store, {"email": Scripted(quick)}, clock, concurrency=1, backlog=1)
    assert asyncio.run(w.run_once()) == 2
    rows = [store.rows[delivery(n, "push").key] for n in range(2)]
    assert [row.status for row in rows] == ["dead", "claimed"]  # (the second: until its lease)


def test_an_outcome_without_an_error_is_recorded_with_its_status() -> None:
    """A driver may build its Outcome from the documented status texts."""
    store, clock = MemoryOutbox(), Clock()
    store.add(delivery(1))
    store.add(delivery(2, "sms"))
    store.add(delivery(3, "push"))
    drivers: dict[str, Driver] = {
        "email": Scripted(answers(Outcome("retry"))),
        "sms": Scripted(answers(Outcome("failed"))),
        "push": Scripted(answers(Outcome("sent"))),
    }
    asyncio.run(worker(store, drivers, clock).run_once())
    email, sms = store.rows[delivery(1).key], store.rows[delivery(2, "sms").key]
    assert (email.status, email.error) == ("pending", "retry")
    assert (sms.status, sms.error) == ("dead", "failed")
    assert store.rows[delivery(3, "push").key].status == "sent"


@pytest.mark.timeout(90)
def test_a_worker_whose_rows_all_hang_asks_the_store_for_none_until_one_ends() -> None:
    """While every row it may hold is being attempted (a provider that hangs), the worker does
    not query the outbox at every poll for rows it has no room for; when the attempts end it
    claims the rest."""
    store, clock = MemoryOutbox(), Clock()
    for n in range(6):
        store.add(delivery(n))

    async def go() -> None:
        release = asyncio.Event()

        async def hang(_: Delivery) -> Outcome:
            await release.wait()
            return Outcome.sent()

        w = worker(store, {"email": Scripted(hang)}, clock, concurrency=2, backlog=2, poll=0.02)
        stop = asyncio.Event()
        running = asyncio.create_task(w.run(stop))
        for _ in range(2000):  # (up to 20 s for the first claim, on a loaded machine)
            await asyncio.sleep(0.01)
            if store.claims:
                break
        await asyncio.sleep(0.5)  # 25 polls with every slot and the backlog taken
        assert len(store.claims) == 1
        release.set()
        for _ in range(2000):
            await asyncio.sleep(0.01)
            if all(row.status == "sent" for row in store.rows.values()):
                break
        stop.set()
        await asyncio.wait_for(running, 10)

    asyncio.run(go())
    assert [row.status for row in store.rows.values()] == ["sent"] * 6


@pytest.mark.timeout(90)
def test_a_running_worker_asks_for_no_more_rows_than_it_has_room_for() -> None:
    """Rows of a channel without a driver take room like any others: `run` never claims more
    rows at once than it can hold (its backlog), however large the batch size, so fewer are
    put back untried ("the push channel is busy") and delayed."""
    store, clock = MemoryOutbox(), Clock()
    for n in range(20):
        store.add(delivery(n, "push"))

    async def go() -> None:
        w = worker(store, {"email": Scripted(quick)}, clock, concurrency=2, backlog=2, poll=0.02)
        stop = asyncio.Event()
        running = asyncio.create_task(w.run(stop))
        for _ in range(2000):
            await asyncio.sleep(0.01)
            clock.now += 1.0  # (rows put back for want of room come due again)
            if all(row.status == "dead" for row in store.rows.values()):
                break
        stop.set()
        await asyncio.wait_for(running, 10)

    asyncio.run(go())
    assert [row.status for row in store.rows.values()] == ["dead"] * 20
    # (the email channel's backlog: twice its 2 attempts at once)
    assert store.claims and max(limit for _, limit, _ in store.claims) == 4


@pytest.mark.timeout(90)
def test_a_full_worker_claims_as_soon_as_an_attempt_of_a_channel_without_a_driver_ends(
    tmp_path: Path,
) -> None:
    """Rows of a channel without a driver take room like any others. When they fill the
    worker's last room while no channel with a driver is full (here one email attempt hangs
    on a server that never answers and one push row, with no push driver, takes the other
    place), the end of that row's attempt frees room and the worker claims the next due row
    at once, not at its next poll (10 s here)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    rows = [_row("e0", "email", NOW - 2), _row("p1", "push", NOW - 1), _row("p2", "push", NOW)]

    async def go(port: int) -> tuple[float | None, str]:
        store = await _with_rows(url, rows)
        driver = SmtpDriver("127.0.0.1", port, "shop@example.com", timeout=60)
        # one email attempt at once, a backlog of 2, one row of each channel per claim
        w = OutboxWorker(
            store,
            {"email": driver},
            lambda: NOW + 5,
            timeout=60,
            concurrency=1,
            backlog=2,
            batch_size=1,
            poll=10.0,
        )
        running = asyncio.create_task(w.run(asyncio.Event()))
        started = time.monotonic()
        try:
            while time.monotonic() - started < 30:
                statuses = await _statuses(store)
                if statuses["p2"][0] == "dead":
                    return time.monotonic() - started, statuses["p1"][0]
                await asyncio.sleep(0.05)
            return None, statuses["p1"][0]
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await w.close()
            await store.close()

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # (connections are made, and never answered)
        p2_dead_after, p1 = asyncio.run(go(silent.getsockname()[1]))
    assert p1 == "dead"
    assert p2_dead_after is not None and p2_dead_after < 5.0


def test_a_worker_used_from_a_second_event_loop_starts_afresh(tmp_path: Path) -> None:
    """A worker's semaphores belong to one event loop: used again from another (a script
    calling `asyncio.run` twice, as these tests do) it makes new ones, and attempts that wait
    for a slot there are delivered as in the first."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    drivers = make_drivers({"sms": {"driver": "jsonl", "path": "sms.jsonl"}}, tmp_path)
    rows = [_row(f"s{n}", "sms") for n in range(4)]
    made: list[OutboxWorker] = []

    async def once(first: bool) -> dict[str, Any]:
        store = await _with_rows(url, rows) if first else await open_store(url)
        if first:
            made.append(OutboxWorker(store, drivers, lambda: NOW, concurrency=1, batch_size=2))
        w = made[0]
        w.store = store
        try:
            assert await asyncio.wait_for(w.run_once(), 20) == 2  # (one waits for the slot)
            return {key: status[0] for key, status in (await _statuses(store)).items()}
        finally:
            await store.close()

    assert sorted(asyncio.run(once(True)).values()) == ["pending", "pending", "sent", "sent"]
    assert set(asyncio.run(once(False)).values()) == {"sent"}
    assert len((tmp_path / "sms.jsonl").read_text().splitlines()) == 4
