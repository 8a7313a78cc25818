"""Claims on PostgreSQL (RUNTIME.md section 3, scale-out): processors sharing one database
run disjoint contacts, every event once, and a claim whose processor was killed, or went
quiet past its lease, is taken over by another processor, whose write is the only one
that lands. Two stores (two connection pools, as two daemons have) in one test process."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError

from leadlang.interpreter.check import check_paths
from leadlang.interpreter.compile import compile_program
from leadlang.runtime.engine import Engine
from leadlang.runtime.processor import Processor, Runner
from leadlang.runtime.server.ingest import parse_message
from leadlang.runtime.store import schema, sql
from leadlang.runtime.store.sql import (
    ContactRow,
    Pending,
    RoundConflict,
    RoundResult,
    SqlStore,
    open_store,
)
from tests.serve_daemon import GREET
from tests.test_serve_crash import iso, ledger_text, simulate

pytestmark = pytest.mark.timeout(120)


def program(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    script = tmp_path / "greet.lead"
    script.write_text(GREET, encoding="utf-8")
    checked = check_paths([str(script)])
    assert checked.program is not None
    ir = compile_program(checked.program)
    ir["event_types"] = {}
    return script, ir


def signups(n: int, contacts: int, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = time.time() - 3600
    return [
        {
            "type": "track",
            "userId": f"u{rng.randrange(contacts)}",
            "event": "Signed Up",
            "timestamp": iso(start + i),
            "messageId": f"m{i}",
            "properties": {"email": f"u{i}@example.com"},
        }
        for i in range(n)
    ]


async def ingest(store: SqlStore, events: list[dict[str, Any]]) -> None:
    now = time.time()
    rows = [parse_message(e, None, now, i) for i, e in enumerate(events)]
    await store.accept([[row for row in rows if row is not None]], now)
    await store.admit_all()  # (on SQLite ingest's commit went to the inbox)


async def pending_events(store: SqlStore) -> int:
    return (await store.counts())["pending_events"]


class Watch:
    """A runner that counts the contacts its processor runs, and records each contact it
    runs while another processor runs it too (`overlaps`)."""

    def __init__(self, runner: Runner, name: str, running: dict[str, str], lock: Any) -> None:
        self.runner, self.name, self.running, self.lock = runner, name, running, lock
        self.contacts = 0
        self.overlaps: list[tuple[str, str]] = []

    def __call__(
        self,
        rows: list[ContactRow],
        pending: dict[str, list[Pending]],
        cut: dict[str, bool],
        now: float,
    ) -> RoundResult:
        with self.lock:
            self.overlaps += [
                (row.id, self.running[row.id]) for row in rows if row.id in self.running
            ]
            self.running.update((row.id, self.name) for row in rows)
        try:
            time.sleep(0.002)  # (a round that takes a moment, as real ones do)
            return self.runner(rows, pending, cut, now)
        finally:
            self.contacts += len(rows)
            with self.lock:
                for row in rows:
                    self.running.pop(row.id, None)


async def with_stores(db: str, body: Callable[[SqlStore, SqlStore], Awaitable[None]]) -> None:
    first, second = await open_store(db), await open_store(db)
    try:
        await body(first, second)
    finally:
        await first.close()
        await second.close()


def test_two_processors_run_disjoint_contacts_and_every_event_once(
    tmp_path: Path, postgres_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    script, ir = program(tmp_path)
    events = signups(3000, 400)
    running: dict[str, str] = {}
    lock = threading.Lock()
    watches: list[Watch] = []

    async def body(first: SqlStore, second: SqlStore) -> None:
        await ingest(first, events)
        processors = []
        for name, store in (("a", first), ("b", second)):
            p = Processor(store, Engine(ir), ir, time.time, batch=40)
            p.runner = watch = Watch(p.runner, name, running, lock)  # type: ignore[assignment]
            watches.append(watch)
            processors.append(p)

        async def drain(p: Processor) -> None:
            while await p.run_once() or await pending_events(p.store):
                await asyncio.sleep(0)

        await asyncio.gather(*(drain(p) for p in processors))
        assert await pending_events(first) == 0

    with caplog.at_level(logging.INFO, logger="leadlang.serve"):
        asyncio.run(with_stores(postgres_db, body))
    a, b = watches
    assert a.contacts and b.contacts, "the work was not shared"
    assert a.overlaps == b.overlaps == []  # never one contact in two processors at once
    # claimed, not collided: no round read contacts another round was running
    assert "another processor took" not in caplog.text
    assert ledger_text(postgres_db, tmp_path) == simulate(script, events, time.time(), tmp_path)


def test_a_reader_following_the_effects_cursor_misses_none_while_two_processors_write(
    tmp_path: Path, postgres_db: str
) -> None:
    """`GET /v1/effects?after=CURSOR` (and `leadlang effects --follow`) page by effect id: a
    round that took its ids first but commits last must not be passed by the cursor of a
    reader that saw a later round's. Each round's commit is held back a little after its
    write, at random, so that two processors' commits cross."""
    _, ir = program(tmp_path)
    events = signups(1200, 300)
    rng = random.Random(7)
    seen: list[int] = []

    async def body(first: SqlStore, second: SqlStore) -> None:
        await ingest(first, events)
        for store in (first, second):
            write_round = store._write_round

            async def slow_commit(conn: Any, result: Any, write: Any = write_round) -> None:
                await write(conn, result)
                await asyncio.sleep(rng.uniform(0, 0.03))  # (the commit comes after this)

            store._write_round = slow_commit  # type: ignore[method-assign]
        processors = [
            Processor(store, Engine(ir), ir, time.time, batch=3) for store in (first, second)
        ]
        done = asyncio.Event()

        async def drain(p: Processor) -> None:
            while await p.run_once() or await pending_events(p.store):
                await asyncio.sleep(0)

        async def follow() -> None:
            after = 0
            while True:
                finished = done.is_set()
                rows = await first.effects_after(after, 1000)
                seen.extend(effect_id for effect_id, _ in rows)
                if rows:
                    after = rows[-1][0]
                elif finished:
                    return
                else:
                    await asyncio.sleep(0.001)

        reader = asyncio.create_task(follow())
        await asyncio.gather(*(drain(p) for p in processors))
        done.set()
        await reader
        every = [effect_id for effect_id, _ in await first.effects_after(0, 1_000_000)]
        assert len(every) >= 2 * len(events)
        assert sorted(seen) == every, f"{len(set(every) - set(seen))} effects missed"

    asyncio.run(with_stores(postgres_db, body))


# the connection of a round that holds claims while its engine runs
IDLE_CLAIMS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    " AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
)


async def takeover(first: SqlStore, second: SqlStore, ir: dict[str, Any], lost: str) -> float:
    """`first` claims every contact and goes quiet; `lost` says how its claim ends ("killed":
    its connection is cut, as when its process dies; "lease": it stays quiet past its lease).
    Returns the seconds until `second` has claimed the contacts, after running them; checks
    that `first`'s late write fails."""
    now = time.time()
    held = first.claim_round(now, 1000, 20_000)
    work = await held.__aenter__()
    assert work.rows
    async with second.claim_round(now, 1000, 20_000) as other:
        assert not other.rows  # claimed: nothing for another processor
    result = Runner(Engine(ir), ir)(work.rows, work.pending, work.cut, now)
    started = time.monotonic()
    if lost == "killed":
        async with second.engine.connect() as admin:
            pids = [r[0] for r in await admin.exec_driver_sql(IDLE_CLAIMS)]
            assert len(pids) == 1
            await admin.exec_driver_sql(f"SELECT pg_terminate_backend({pids[0]})")
    processor = Processor(second, Engine(ir), ir, time.time)
    while not await processor.run_once():
        assert time.monotonic() - started < 10, "the claim was not taken over"
        await asyncio.sleep(0.05)
    waited = time.monotonic() - started
    while await processor.run_once():
        pass
    with pytest.raises(DBAPIError):  # the round's transaction is gone: its write cannot land
        await work.save(result)
    await held.__aexit__(None, None, None)
    assert await pending_events(second) == 0
    return waited


@pytest.mark.parametrize("lost", ["killed", "lease"])
def test_a_lost_claim_is_taken_over_and_its_late_write_fails(
    tmp_path: Path, postgres_db: str, monkeypatch: pytest.MonkeyPatch, lost: str
) -> None:
    monkeypatch.setattr(sql, "CLAIM_LEASE", 1.5)
    script, ir = program(tmp_path)
    events = signups(300, 60)
    waited: list[float] = []

    async def body(first: SqlStore, second: SqlStore) -> None:
        await ingest(first, events)
        waited.append(await takeover(first, second, ir, lost))

    asyncio.run(with_stores(postgres_db, body))
    if lost == "killed":
        assert waited[0] < 1.0  # the database drops a dead connection's claims at once
    else:
        assert 1.0 < waited[0] < 5.0  # after the lease, not before
    assert ledger_text(postgres_db, tmp_path) == simulate(script, events, time.time(), tmp_path)


@pytest.mark.parametrize("meanwhile", ["updated", "created"])
def test_a_round_whose_contacts_were_written_meanwhile_is_refused(
    tmp_path: Path, store_url: str, meanwhile: str
) -> None:
    """The net under the claims (and SQLite's one processor): were a claim ever lost, a write
    whose contacts another writer changed, or created, since the round read them writes
    nothing (RoundConflict)."""
    _, ir = program(tmp_path)
    events = signups(200, 20)

    async def body(first: SqlStore, second: SqlStore) -> None:
        if meanwhile == "updated":
            await ingest(first, events[:100])
            processor = Processor(first, Engine(ir), ir, time.time)
            while await processor.run_once():
                pass
        await ingest(first, events[100:])
        effects = (await first.ledger_and_cursor())[1]
        pending = await pending_events(first)
        async with first.claim_round(time.time(), 1000, 20_000) as work:
            result = Runner(Engine(ir), ir)(work.rows, work.pending, work.cut, time.time())
            async with second.write() as conn:  # a write that ignores the claim
                if meanwhile == "updated":
                    known = next(row.id for row in work.rows if row.state is not None)
                    sql = "UPDATE contacts SET updated = updated + 1 WHERE id = ?"
                    await conn.exec_driver_sql(second._sql(sql), (known,))
                else:
                    new = next(row.id for row in work.rows if row.state is None)
                    sql = (
                        "INSERT INTO contacts (id, state, wake, clock, rank_t, rank_id, updated)"
                        " VALUES (?, '{}', NULL, 0, 0, 0, 1)"
                    )
                    await conn.exec_driver_sql(second._sql(sql), (new,))
            with pytest.raises(RoundConflict):
                await work.save(result)
        assert (await first.ledger_and_cursor())[1] == effects  # nothing of the round was written
        assert await pending_events(first) == pending

    asyncio.run(with_stores(store_url, body))


async def with_work(
    store: SqlStore,
    timers: Sequence[tuple[str, float]] = (),
    events: Sequence[str] = (),
) -> None:
    """Contacts with a timer (id, wake) and pending events (one per contact id given, in
    that order), written as a round and ingest would write them."""
    async with store.write() as conn:
        if timers:
            await conn.execute(
                insert(schema.contacts),
                [
                    {"id": i, "state": "{}", "wake": wake, "clock": 0.0, "rank_t": 0.0}
                    | {"rank_id": 0, "updated": 1.0}
                    for i, wake in timers
                ],
            )
        for contact in events:  # (one statement each: their ids in this order)
            await conn.execute(
                insert(schema.events).values(contact=contact, t=1.0, received=1.0, body="{}")
            )


def test_a_round_takes_due_timers_earliest_first_then_the_oldest_events_up_to_its_size(
    store_url: str,
) -> None:
    """RUNTIME.md section 3: a round's contacts are those whose timer is due (a wake at
    exactly now included), earliest first, then those of the oldest pending events, never
    more than the round's size; a contact whose timer is not due and has no event waits."""
    now = time.time()

    async def body() -> None:
        store = await open_store(store_url)
        try:
            timers = [("d1", now - 20), ("d2", now - 10), ("d3", now - 30), ("d4", now)]
            await with_work(store, [*timers, ("later", now + 60)], ["b", "a", "b", "c"])
            async with store.claim_round(now, 6, 20_000) as work:
                assert [row.id for row in work.rows] == ["d3", "d1", "d2", "d4", "b", "a"]
                assert {name: len(found) for name, found in work.pending.items()} == {
                    "b": 2,
                    "a": 1,
                }
            async with store.claim_round(now, 2, 20_000) as work:
                assert [row.id for row in work.rows] == ["d3", "d1"]
            # the timers' contacts in a round still being written: the events' contacts only
            # (b's two events do not keep c out)
            async with store.claim_round(now, 3, 20_000, {"d1", "d2", "d3", "d4"}) as work:
                assert [row.id for row in work.rows] == ["b", "a", "c"]
        finally:
            await store.close()

    asyncio.run(body())


def test_a_processor_claims_past_the_contacts_another_one_holds(postgres_db: str) -> None:
    """`_claim`: candidates are read a window at a time (twice the round's size of due
    timers, four times of pending events) past those another processor holds, for at most
    four windows a source; due timers earliest first, then the oldest events."""
    now = time.time()

    async def claimed(store: SqlStore, limit: int) -> tuple[sql.ClaimedRound, list[str]]:
        held = store.claim_round(now, limit, 20_000)
        work = await held.__aenter__()
        return held, [row.id for row in work.rows]

    async def body(first: SqlStore, second: SqlStore) -> None:
        contacts = [f"c{i:02}" for i in range(40)]
        async with first.write() as conn:  # (stored last to first: ids, not places, order them)
            await conn.execute(
                insert(schema.events),
                [
                    {"id": i + 1, "contact": c, "t": 1.0, "received": 1.0, "body": "{}"}
                    for i, c in reversed(list(enumerate(contacts)))
                ],
            )
        for held_by_first, expected in ((30, ["c30", "c31"]), (32, [])):
            held, ids = await claimed(first, held_by_first)
            assert ids == contacts[:held_by_first]
            other, ids = await claimed(second, 2)
            assert ids == expected  # (32 held: the four windows of 8 events are all taken)
            for work in (other, held):
                await work.__aexit__(None, None, None)
        # timers (written out of their order), ahead of the events
        timers = [f"t{i:02}" for i in range(20)]
        await with_work(first, [(t, now - 100 + i) for i, t in reversed(list(enumerate(timers)))])
        held, ids = await claimed(first, 14)
        assert ids == timers[:14]
        other, ids = await claimed(second, 2)
        assert ids == ["t14", "t15"]
        for work in (other, held):
            await work.__aexit__(None, None, None)

    asyncio.run(with_stores(postgres_db, body))


def test_the_backlog_counts_events_in_the_inbox_and_those_not_yet_processed(
    tmp_path: Path, store_url: str
) -> None:
    """What `server.max_backlog` is compared with: every accepted event not yet processed,
    whether still in SQLite's inbox or admitted, and none once processing is done."""
    _, ir = program(tmp_path)
    events = signups(30, 5)

    async def body() -> None:
        store = await open_store(store_url)
        try:
            assert await store.backlog() == 0
            now = time.time()
            rows = [parse_message(e, None, now, i) for i, e in enumerate(events)]
            accepted = [row for row in rows if row is not None]
            await store.accept([accepted[:10]], now)
            await store.accept([accepted[10:]], now)
            assert await store.backlog() == 30
            await store.admit_all()
            assert await store.backlog() == 30
            processor = Processor(store, Engine(ir), ir, time.time)
            while await processor.run_once() or await pending_events(store):
                await asyncio.sleep(0)
            assert await store.backlog() == 0
            await ingest(store, [{**e, "messageId": f"n{i}"} for i, e in enumerate(signups(7, 5))])
            assert await store.backlog() == 7
        finally:
            await store.close()

    asyncio.run(body())
