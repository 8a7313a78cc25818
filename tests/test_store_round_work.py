"""What a processing round reads and writes, on SQLite and PostgreSQL (docs/serve.md, "One
transaction per processing round"): whole contacts up to the round's number of events,
their events in time order; each contact's timer, clock, state and position written back;
a contact the engine fails on set aside; a round computed from what was since written
refused; a send already in the outbox not queued twice; claims and the ledger's order
under several processors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import insert, select, update

from leadlang.interpreter.check import check_paths
from leadlang.interpreter.compile import compile_program
from leadlang.runtime.engine import Engine
from leadlang.runtime.processor import Processor, Runner
from leadlang.runtime.store import schema as s
from leadlang.runtime.store.sql import RoundConflict, RoundResult, SqlStore, open_store
from tests.serve_daemon import SLOW
from tests.test_serve_crash import iso, ledger_text, simulate
from tests.test_store_claims import ingest, pending_events, program

pytestmark = pytest.mark.timeout(120)


def on_store(url: str, body: Callable[[SqlStore], Awaitable[None]]) -> None:
    """Run `body` on a store opened on `url`, closed after it, whatever happens."""

    async def main() -> None:
        store = await open_store(url)
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def slow_program(tmp_path: Path) -> dict[str, Any]:
    """SLOW (tests/serve_daemon.py): each `started` enters, waits 5 s, sends and exits."""
    script = tmp_path / "slow.lead"
    script.write_text(SLOW, encoding="utf-8")
    checked = check_paths([str(script)])
    assert checked.program is not None
    ir = compile_program(checked.program)
    ir["event_types"] = {}
    return ir


def started(contact: str, t: float, message_id: str, event: str = "started") -> dict[str, Any]:
    return {
        "type": "track",
        "userId": contact,
        "event": event,
        "timestamp": iso(t),
        "messageId": message_id,
        "properties": {"email": f"{contact}@example.com"},
    }


class Clock:
    """The processor's clock, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def contacts(store: SqlStore) -> dict[str, tuple[float | None, float]]:
    """Each stored contact's (wake, clock)."""
    c = s.contacts.c
    async with store.engine.connect() as conn:
        return {r[0]: (r[1], r[2]) for r in await conn.execute(select(c.id, c.wake, c.clock))}


async def positions(store: SqlStore) -> dict[str, tuple[str, str | None, float | None]]:
    """Each stored position: contact -> (flow, step, waiting_until)."""
    p = s.positions.c
    async with store.engine.connect() as conn:
        found = await conn.execute(select(p.contact, p.flow, p.step, p.waiting_until))
        return {r[0]: (r[1], r[2], r[3]) for r in found}


def effects_of(lines: list[str]) -> list[tuple[str, str]]:
    """(at, action) of ledger lines."""
    return [(e["at"], e["action"]) for e in map(orjson.loads, lines)]


async def store_events(store: SqlStore, rows: list[tuple[str, float, int]]) -> list[int]:
    """Events (contact, t, pending) stored one statement each, so their ids follow the list;
    returns the ids."""
    ids = []
    async with store.write() as conn:
        for contact, t, pending in rows:
            done = await conn.execute(
                insert(s.events)
                .values(contact=contact, t=t, received=t, body="{}", pending=pending)
                .returning(s.events.c.id)
            )
            ids.append(int(done.scalar_one()))
    return ids


def test_a_round_takes_whole_contacts_up_to_its_events_and_a_contact_over_them_alone(
    store_url: str,
) -> None:
    """A round (the processor's `max_events`) takes contacts, oldest events first, as
    long as all their pending events fit in the round's number of events (processed ones
    do not count); one that has more than the round takes runs alone on its first events in
    time order (`cut`), the rest waiting for the next round. Each contact's events come in
    time order, not in the order they arrived."""

    async def body(store: SqlStore) -> None:
        ids = await store_events(
            store,
            [
                ("c", 1.0, 0),  # processed already: not counted
                ("c", 2.0, 0),
                ("m", 15.0, 1),  # m: the oldest pending event, 3 events
                ("c", 11.0, 1),  # c: 2 events
                ("b", 12.0, 1),  # b: 3 events
                ("m", 13.0, 1),
                ("c", 16.0, 1),
                ("b", 17.0, 1),
                ("m", 14.0, 1),
                ("b", 18.0, 1),
            ],
        )
        m_in_time_order = [ids[5], ids[8], ids[2]]  # t 13, 14, 15
        for max_events, chosen in ((5, "mc"), (6, "mc"), (7, "mc"), (8, "mcb"), (100, "mcb")):
            async with store.claim_round(time.time(), 10, max_events) as work:
                assert [row.id for row in work.rows] == list(chosen), max_events
                assert set(work.pending) == set(chosen)  # (their own events only)
                assert [p.id for p in work.pending["m"]] == m_in_time_order
                assert [p.t for p in work.pending["c"]] == [11.0, 16.0]
                assert work.cut == {}
        for max_events in (1, 2):
            async with store.claim_round(time.time(), 10, max_events) as work:
                assert [row.id for row in work.rows] == ["m"]
                assert work.cut == {"m": True}
                assert {name: [p.id for p in found] for name, found in work.pending.items()} == {
                    "m": m_in_time_order[:max_events]
                }

    on_store(store_url, body)


def test_a_waiting_contact_s_timer_position_and_clock_are_written_each_round(
    tmp_path: Path, store_url: str
) -> None:
    """A round writes each contact's next timer, where it stands in each flow (the
    `positions` table, docs/serve.md, with until when it waits) and the instant it was run
    to: a timer that fired is gone, a contact that left a flow no longer stands in it, and
    an event older than that instant runs late, at that instant (not back in the past)."""
    ir = slow_program(tmp_path)
    t0 = float(int(time.time()) - 1000)
    clock = Clock(t0 + 1)

    async def body(store: SqlStore) -> None:
        processor = Processor(store, Engine(ir), ir, clock)
        await ingest(store, [started("u0", t0, "a"), started("u1", t0, "b")])
        assert await processor.run_once() == 2
        assert await contacts(store) == {"u0": (t0 + 5, t0), "u1": (t0 + 5, t0)}
        assert await positions(store) == {u: ("slow", "s1", t0 + 5) for u in ("u0", "u1")}
        assert (await store.flow_stats("slow"))["slow"]["steps"] == {"s1": 2}
        clock.now = t0 + 6  # the waits are due: sent, and out of the flow
        assert await processor.run_once() == 2
        assert await contacts(store) == {"u0": (None, t0 + 5), "u1": (None, t0 + 5)}
        assert await positions(store) == {}
        assert (await store.flow_stats("slow"))["slow"]["steps"] == {}
        assert await processor.run_once() == 0  # (no timer left)
        clock.now = t0 + 7
        await ingest(store, [started("u0", t0 + 3, "c")])  # older than where u0 stands
        assert await processor.run_once() == 1
        assert effects_of(await store.effects_in_order("u0")) == [
            (iso(t0), "enter"),
            (iso(t0 + 5), "send"),
            (iso(t0 + 5), "exit"),
            (iso(t0 + 5), "enter"),  # late: at the instant u0 had been run to
        ]
        assert (await contacts(store))["u0"] == (t0 + 10, t0 + 5)
        assert (await positions(store))["u0"] == ("slow", "s1", t0 + 10)

    on_store(store_url, body)


def test_a_contact_the_engine_fails_on_has_its_events_set_aside_and_its_timer_stopped(
    tmp_path: Path, store_url: str
) -> None:
    """A contact the engine cannot run (a bug, an input it cannot take) must not come back
    at every round: its events are set aside as failed (`leadlang diff` counts them, they
    are no longer pending), its timer stops, its state stays as it was; the other contacts
    of the round run."""
    ir = slow_program(tmp_path)
    t0 = float(int(time.time()) - 1000)
    clock = Clock(t0 + 1)

    async def body(store: SqlStore) -> None:
        processor = Processor(store, Engine(ir), ir, clock)
        await ingest(store, [started("bad", t0, "a"), started("good", t0, "b")])
        assert await processor.run_once() == 2
        state_before = await store.contact("bad")
        runner = processor.runner
        run_contact = runner._contact

        def failing(row: Any, *args: Any) -> None:
            if row.id == "bad":
                raise RuntimeError("the engine failed")
            run_contact(row, *args)

        runner._contact = failing  # type: ignore[method-assign, assignment]
        await ingest(store, [started("bad", t0 + 2, "c")])
        clock.now = t0 + 6
        assert await processor.run_once() == 2
        assert await pending_events(store) == 0
        histories = {name: events async for name, events, _ in store.histories()}
        assert [e[3] for e in histories["bad"]] == [0, 2]  # processed, failed
        assert [e[3] for e in histories["good"]] == [0]
        wakes = {name: wake for name, (wake, _) in (await contacts(store)).items()}
        assert wakes == {"bad": None, "good": None}
        assert await store.contact("bad") == state_before
        assert [a for _, a in effects_of(await store.effects_in_order("good"))] == [
            "enter",
            "send",
            "exit",
        ]
        clock.now = t0 + 60
        assert await processor.run_once() == 0  # not run again

    on_store(store_url, body)


def test_a_round_computed_from_a_state_written_since_is_refused(
    tmp_path: Path, store_url: str
) -> None:
    """The net under the claims: a round run twice from the same read (a lost claim, a
    write retried) writes once; the second write finds the contacts written since it read
    them and writes nothing (RoundConflict), so the sends are not enqueued twice."""
    ir = slow_program(tmp_path)
    t0 = float(int(time.time()) - 1000)

    async def body(store: SqlStore) -> None:
        processor = Processor(store, Engine(ir), ir, Clock(t0 + 1))
        await ingest(store, [started("u0", t0, "a"), started("u1", t0, "b")])
        assert await processor.run_once() == 2
        runner = Runner(Engine(ir), ir)
        async with store.claim_round(t0 + 6, 10, 20_000) as work:  # the timers
            assert [row.id for row in work.rows] == ["u0", "u1"]
            first = runner(work.rows, work.pending, work.cut, t0 + 6)
            again = runner(work.rows, work.pending, work.cut, t0 + 6)
            assert len(again.outbox) == 2
            await work.save(first)
        ledger = await store.effects_in_order()
        with pytest.raises(RoundConflict):
            await store.save_round(again)
        assert await store.effects_in_order() == ledger
        assert len(await store.outbox_rows(None, 100)) == 2

    on_store(store_url, body)


def test_a_round_whose_events_were_processed_meanwhile_is_refused(
    tmp_path: Path, store_url: str
) -> None:
    """The net under the claims for events: a round that read events another writer marked
    processed (or failed) since writes nothing, so no event runs twice."""
    _, ir = program(tmp_path)
    t0 = float(int(time.time()) - 1000)

    async def body(store: SqlStore) -> None:
        await ingest(store, [started(f"u{i}", t0 + i, f"m{i}", "Signed Up") for i in range(4)])
        async with store.claim_round(time.time(), 10, 20_000) as work:
            result = Runner(Engine(ir), ir)(work.rows, work.pending, work.cut, time.time())
            assert len(result.processed) == 4 and len(result.outbox) == 4
            async with store.write() as conn:  # a write that ignores the claim
                events = s.events
                await conn.execute(
                    update(events).where(events.c.id == result.processed[-1]).values(pending=0)
                )
            with pytest.raises(RoundConflict):
                await work.save(result)
        assert await store.effects_in_order() == []
        assert await pending_events(store) == 3
        assert await contacts(store) == {}

    on_store(store_url, body)


def test_a_send_already_in_the_outbox_is_not_queued_again(tmp_path: Path, store_url: str) -> None:
    """docs/serve.md, "Effects once": the outbox row is keyed by the send's idempotency
    key, so a round that enqueues a send already there (sent, here) leaves it as it is, and
    its own other writes land."""
    ir = slow_program(tmp_path)
    t0 = float(int(time.time()) - 1000)

    async def body(store: SqlStore) -> None:
        runner = Runner(Engine(ir), ir)
        await ingest(store, [started("u0", t0, "a")])
        await Processor(store, Engine(ir), ir, Clock(t0 + 1)).run_once()
        async with store.claim_round(t0 + 6, 10, 20_000) as work:
            result = runner(work.rows, work.pending, work.cut, t0 + 6)
            [sent] = result.outbox
            await work.save(result)
        await store.outbox_sent(sent["key"], t0 + 7)
        await ingest(store, [started("u1", t0 + 8, "b")])
        async with store.claim_round(t0 + 8, 10, 20_000) as work:
            result = runner(work.rows, work.pending, work.cut, t0 + 8)
            result.outbox.append(sent)  # (as the round that first enqueued it wrote it)
            await work.save(result)
        [row] = await store.outbox_rows(None, 10)
        assert (row["key"], row["status"], row["delivered"]) == (sent["key"], "sent", t0 + 7)
        assert effects_of(await store.effects_in_order("u1")) == [(iso(t0 + 8), "enter")]
        assert await pending_events(store) == 0

    on_store(store_url, body)


def test_a_round_of_more_than_500_contacts_runs_every_event_once(
    tmp_path: Path, store_url: str
) -> None:
    """A round's reads and writes go 500 contacts (or event ids) a statement: a round of
    more (`batch`) still runs each of its contacts, and each event once, as simulate does."""
    script, ir = program(tmp_path)
    start = time.time() - 3600
    events = [
        {
            "type": "track",
            "userId": f"u{i % 600}",
            "event": "Signed Up",
            "timestamp": iso(start + i),
            "messageId": f"m{i}",
            "properties": {"email": f"u{i}@example.com"},
        }
        for i in range(1200)
    ]

    async def body(store: SqlStore) -> None:
        await ingest(store, events)
        processor = Processor(store, Engine(ir), ir, time.time, batch=700)
        assert await processor.run_once() == 600
        assert await pending_events(store) == 0

    on_store(store_url, body)
    assert ledger_text(store_url, tmp_path) == simulate(script, events, time.time(), tmp_path)


def test_a_processor_follows_the_program_published_also_with_a_pool_of_one_connection(
    tmp_path: Path, store_url: str
) -> None:
    """A reload published in the store (`publish_program`, here or by another daemon) is
    run from the next round on: the round's work says which program was published when it
    was read, and the processor reads that program on the round's own connection, so a
    store URL with `?pool_size=1` does (docs/serve.md) without waiting for a second one."""
    ir = slow_program(tmp_path)
    t0 = float(int(time.time()) - 1000)

    async def body(store: SqlStore) -> None:
        await ingest(store, [started("u0", t0, "a")])
        async with store.claim_round(t0 + 1, 10, 20_000) as work:
            assert work.generation == 0
        published = await store.publish_program(orjson.dumps(ir).decode(), [], t0)
        assert published == 1
        async with store.claim_round(t0 + 1, 10, 20_000) as work:
            assert work.generation == 1
        followed: list[dict[str, Any]] = []
        processor = Processor(store, Engine(ir), ir, Clock(t0 + 1), on_program=followed.append)
        assert await processor.run_once() == 1
        assert processor.generation == 1
        assert followed == [orjson.loads(orjson.dumps(ir))]

    on_store(f"{store_url}?pool_size=1&pool_timeout=3", body)


def test_a_round_cut_short_while_reading_releases_its_claims_and_its_connection(
    postgres_db: str,
) -> None:
    """A round interrupted after its claim (the daemon stopping, a lost connection) ends
    its transaction there and then: its contacts are at once free for any processor, and
    its connection is back in the pool (a pool of one goes on)."""
    everyone = {f"u{i}" for i in range(4)}

    async def body() -> None:
        store = await open_store(f"{postgres_db}?pool_size=1&pool_timeout=3")
        other = await open_store(postgres_db)
        try:
            await ingest(store, [started(u, time.time() - 10, u) for u in sorted(everyone)])
            load_round = store.load_round

            async def interrupted(*args: Any) -> Any:
                await load_round(*args)  # (claimed and read)
                raise asyncio.CancelledError

            store.load_round = interrupted  # type: ignore[method-assign, assignment]
            with pytest.raises(asyncio.CancelledError):
                async with store.claim_round(time.time(), 10, 20_000):
                    pass
            store.load_round = load_round  # type: ignore[method-assign]
            async with other.claim_round(time.time(), 10, 20_000) as work:
                assert {row.id for row in work.rows} == everyone
            async with store.claim_round(time.time(), 10, 20_000) as work:
                assert {row.id for row in work.rows} == everyone
        finally:
            await store.close()
            await other.close()

    asyncio.run(body())


def test_a_processor_stalled_before_its_commit_holds_up_no_other_and_no_reader_passes_it(
    tmp_path: Path, postgres_db: str
) -> None:
    """Scale-out (docs/scaling.md): processors sharing a database write their rounds side by
    side. One that has written its round but not committed it (frozen, or slow to reach the
    database; up to its 60 s lease) does not stop another's rounds, effects included, from
    being written and committed meanwhile. A reader of the ledger by effect id
    (`GET /v1/effects?after=`, `leadlang effects --follow`) waits for the stalled round
    rather than be handed the later round's effects alone: its cursor would pass the
    stalled round's (lower) ids, and never see them."""
    _, ir = program(tmp_path)
    t0 = time.time() - 100

    async def body() -> None:
        first, second = await open_store(postgres_db), await open_store(postgres_db)
        try:
            await ingest(first, [started(f"u{i}", t0 + i, f"m{i}", "Signed Up") for i in range(4)])
            written, release = asyncio.Event(), asyncio.Event()
            write_round = first._write_round

            async def stalled(conn: Any, result: RoundResult) -> None:
                await write_round(conn, result)
                written.set()
                await release.wait()  # (its commit comes after this)

            first._write_round = stalled  # type: ignore[method-assign, assignment]
            stuck = asyncio.create_task(
                Processor(first, Engine(ir), ir, time.time, batch=2).run_once()
            )
            await asyncio.wait_for(written.wait(), 30)
            other = Processor(second, Engine(ir), ir, time.time, batch=2)
            assert await asyncio.wait_for(other.run_once(), 30) == 2
            async with second.engine.connect() as conn:  # committed, its effects with it
                found = await conn.execute(select(s.effects.c.contact).distinct())
                assert {r[0] for r in found} == {"u2", "u3"}
            reader = asyncio.create_task(second.effects_after(0, 1000))
            await asyncio.sleep(0.5)
            release.set()
            assert await asyncio.wait_for(stuck, 30) == 2
            page = await asyncio.wait_for(reader, 30)
            assert [effect_id for effect_id, _ in page] == [
                effect_id for effect_id, _ in await second.effects_after(0, 1000)
            ]
            assert {orjson.loads(body)["contact"] for _, body in page} == {"u0", "u1", "u2", "u3"}
            assert await pending_events(first) == 0
        finally:
            await first.close()
            await second.close()

    asyncio.run(body())


def test_a_round_written_by_save_round_whose_new_contact_was_created_meanwhile_is_refused(
    tmp_path: Path, store_url: str
) -> None:
    """`save_round`, the write of a round outside its claim, has the same net as a claimed
    round's `save`: a round that found a contact new, which another writer created since,
    writes nothing and says so (RoundConflict, which the processor reads again), rather
    than failing with the database's duplicate-key error."""
    _, ir = program(tmp_path)
    t0 = time.time() - 100

    async def body(store: SqlStore) -> None:
        await ingest(store, [started("u0", t0, "m0", "Signed Up")])
        async with store.claim_round(time.time(), 10, 20_000) as work:
            assert [row.state for row in work.rows] == [None]
            result = Runner(Engine(ir), ir)(work.rows, work.pending, work.cut, time.time())
        async with store.write() as conn:
            await conn.execute(
                insert(s.contacts).values(
                    id="u0",
                    state="{}",
                    wake=None,
                    clock=0.0,
                    rank_t=0.0,
                    rank_id=0,
                    updated=1.0,
                )
            )
        with pytest.raises(RoundConflict):
            await store.save_round(result)
        assert await store.effects_in_order() == []
        assert await pending_events(store) == 1

    on_store(store_url, body)
