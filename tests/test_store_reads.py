"""The store's reads behind the admin API and the CLI, on SQLite and on PostgreSQL: a
contact's profile and its latest effects, the ledger by cursor and in simulate's order, the
flows' counts, every contact's history for `leadlang diff`, and the next wake-up."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from leadlang.runtime.store import schema as s
from leadlang.runtime.store.sql import LEDGER_LOCK, SqlStore, database_url, open_store

pytestmark = pytest.mark.timeout(120)

NOW = 1_800_000_000.0


def _effect(
    contact: str,
    n: int,
    at: float = NOW,
    kind: int = 1,
    sub: int = 0,
    flow: str | None = "welcome",
    action: str = "send",
    step: str | None = None,
    arm: str | None = None,
) -> dict[str, Any]:
    """A ledger row; its body names the contact and `n`, which the assertions read."""
    return {
        "contact": contact,
        "at": at,
        "kind": kind,
        "k1": at,
        "k2": 0,
        "sub": sub,
        "flow": flow,
        "action": action,
        "step": step,
        "arm": arm,
        "body": orjson.dumps({"contact": contact, "n": n, "action": action}).decode(),
    }


def _n(bodies: list[str]) -> list[int]:
    return [orjson.loads(body)["n"] for body in bodies]


def _contact(contact: str, wake: float | None = None) -> dict[str, Any]:
    state = orjson.dumps({"id": contact, "traits": {"plan": "pro"}}).decode()
    return {
        "id": contact,
        "state": state,
        "wake": wake,
        "clock": NOW,
        "rank_t": NOW,
        "rank_id": 1,
        "updated": NOW,
    }


def _event(contact: str, t: float, n: int) -> dict[str, Any]:
    body = orjson.dumps({"name": "Clicked", "props": {"n": n}, "traits": {}}).decode()
    return {"contact": contact, "t": t, "received": t, "body": body, "pending": 0}


async def _store(url: str, **tables: list[dict[str, Any]]) -> SqlStore:
    """A store holding `tables`' rows, inserted in the order given (effects get ids so)."""
    store = await open_store(url)
    async with store.write() as conn:
        for name, rows in tables.items():
            for row in rows:  # (one at a time: ids in this order)
                await conn.execute(insert(getattr(s, name)), row)
    return store


def test_a_contact_is_shown_with_its_twenty_latest_effects_oldest_first(store_url: str) -> None:
    """`GET /v1/contacts/{id}` and `leadlang render --contact`: the contact's stored state
    and its 20 most recent effects in the order they happened, none of another contact's
    (here one whose id sorts after it, with effects in between); a contact never stored is
    none, and one whose events wait for processing is known."""
    effects = []
    for n in range(25):
        effects.append(_effect("ada", n))
        effects.append(_effect("adam", 100 + n))

    async def run() -> tuple[Any, ...]:
        store = await _store(
            store_url,
            contacts=[_contact("ada"), _contact("adam")],
            effects=effects,
            events=[_event("ada", NOW, 1), _event("pat", NOW, 2)],
        )
        try:
            return (
                await store.contact("ada"),
                await store.contact("ad"),
                await store.contact("pat"),
                [await store.contact_known(c) for c in ("ada", "pat", "ad", "nobody")],
            )
        finally:
            await store.close()

    ada, ad, pat, known = asyncio.run(run())
    assert ada is not None
    state, recent = ada
    assert orjson.loads(state) == {"id": "ada", "traits": {"plan": "pro"}}
    assert _n(recent) == list(range(5, 25))
    assert ad is None and pat is None
    # pat has events but no state yet (the profile says "pending"); "ad" is nobody
    assert known == [True, True, False, False]


def test_the_ledger_is_read_after_a_cursor_and_in_simulates_order(store_url: str) -> None:
    """`GET /v1/effects?after=&limit=&contact=` and `leadlang effects [--follow]`: the entries
    after the cursor in id order (here stored out of it, as rounds committing side by side
    may store them), at most `limit`, of one contact when asked; the last id to follow from
    (0 for an empty ledger, so the first entry is not skipped); and the whole ledger in
    simulate's order (instant, time-driven before events, then the order within an
    instant), not the order rounds committed in."""
    rows = [
        _effect("bo", 0, at=NOW + 10, kind=1),
        _effect("ann", 1, at=NOW + 10, kind=0),  # time-driven: before bo's event, same instant
        _effect("ann", 2, at=NOW + 5, kind=1, sub=1),
        _effect("ann", 3, at=NOW + 5, kind=1, sub=0),  # same event, earlier within it
        _effect("bo", 4, at=NOW + 1),
    ]
    for row, effect_id in zip(rows, (10, 50, 20, 40, 30), strict=True):
        row["id"] = effect_id

    async def run() -> tuple[Any, ...]:
        store = await open_store(store_url)
        try:
            empty = ((await store.ledger_and_cursor())[1], await store.effects_after(0, 10))
            async with store.write() as conn:
                for row in rows:
                    await conn.execute(insert(s.effects), row)
            return (
                empty,
                await store.effects_after(0, 100),
                (await store.ledger_and_cursor())[1],
                await store.effects_after(20, 2),
                await store.effects_after(10, 100, "bo"),
                await store.effects_after(50, 100),
                await store.effects_in_order(),
                await store.effects_in_order("ann"),
            )
        finally:
            await store.close()

    empty, whole, last, page, bo, past, ordered, ann = asyncio.run(run())

    def entries(found: list[tuple[int, str]]) -> list[tuple[int, int]]:
        return [(i, orjson.loads(body)["n"]) for i, body in found]

    assert empty == (0, [])
    assert entries(whole) == [(10, 0), (20, 2), (30, 4), (40, 3), (50, 1)]
    assert last == 50
    assert entries(page) == [(30, 4), (40, 3)]
    assert entries(bo) == [(30, 4)]
    assert past == []
    assert _n(ordered) == [4, 3, 2, 1, 0]
    assert _n(ann) == [3, 2, 1]


@pytest.mark.timeout(60)
def test_a_ledger_reader_waits_for_a_round_still_committing_on_postgresql(
    postgres_db: str,
) -> None:
    """A processor's round takes its effect ids before it commits, and another's may commit
    a later id first: a reader following the cursor must not pass the earlier id, or that
    entry is never shown (`leadlang effects --follow`, `GET /v1/effects?after=`). The
    reader waits for the round still committing and gets both entries."""

    async def read(store: SqlStore) -> list[tuple[int, str]]:
        return await store.effects_after(0, 100)

    read_back = asyncio.run(_while_a_round_commits(postgres_db, read))
    numbers, ids = [orjson.loads(body)["n"] for _, body in read_back], [i for i, _ in read_back]
    assert numbers == [1, 2] and ids == sorted(ids)


def test_the_ledger_and_its_cursor_leave_out_no_entry_and_repeat_none(store_url: str) -> None:
    """`leadlang effects --follow`: the history in simulate's order, then every entry after
    the cursor read with it. An entry committed after that read is after the cursor and
    not in the history; of one contact, the cursor still follows every contact's ids."""

    async def run() -> tuple[Any, ...]:
        store = await open_store(store_url)
        try:
            none = await store.ledger_and_cursor()
            async with store.write() as conn:
                for row in (_effect("ann", 1), _effect("bo", 2)):
                    await conn.execute(insert(s.effects), row)
            history, cursor = await store.ledger_and_cursor()
            ann, ann_cursor = await store.ledger_and_cursor("ann")
            async with store.write() as conn:
                await conn.execute(insert(s.effects), _effect("ann", 3))
            after = await store.effects_after(cursor, 100)
            return none, history, cursor, ann, ann_cursor, after
        finally:
            await store.close()

    none, history, cursor, ann, ann_cursor, after = asyncio.run(run())
    assert none == ([], 0)
    assert _n(history) == [1, 2] and _n(ann) == [1]
    assert cursor == ann_cursor > 0
    assert _n([body for _, body in after]) == [3]


@pytest.mark.timeout(60)
def test_the_ledger_and_its_cursor_wait_for_a_round_still_committing_on_postgresql(
    postgres_db: str,
) -> None:
    """A round that took an earlier id commits after a later one: read without the ledger
    lock, the history had only the later entry and the cursor was past the earlier, which
    `effects --follow` then never printed. The read waits for the round: both entries."""

    async def read(store: SqlStore) -> tuple[list[int], int, list[int]]:
        history, cursor = await store.ledger_and_cursor()
        after = await store.effects_after(cursor, 100)  # (the slow round has committed)
        return _n(history), cursor, [i for i, _ in after]

    history, cursor, after = asyncio.run(_while_a_round_commits(postgres_db, read))
    assert sorted(history) == [1, 2] and cursor > 0 and after == []


async def _while_a_round_commits(url: str, read: Any) -> Any:
    """`read(store)`'s answer, started while a slow round holds an effect id it has not
    committed (`ann` 1, under the ledger lock in shared mode, as rounds take it) and a faster
    round has committed a later one (`bo` 2); the slow round commits 1 s later."""
    store = await open_store(url)
    other = create_async_engine(database_url(url))
    try:
        async with other.connect() as slow:
            await slow.begin()
            await slow.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({LEDGER_LOCK}, 0)")
            await slow.execute(insert(s.effects), _effect("ann", 1))
            async with store.write() as fast:
                await fast.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({LEDGER_LOCK}, 0)")
                await fast.execute(insert(s.effects), _effect("bo", 2))
            reader = asyncio.create_task(read(store))
            await asyncio.sleep(1.0)
            await slow.commit()
            return await asyncio.wait_for(reader, 30)
    finally:
        await other.dispose()
        await store.close()


def test_flow_counts_are_per_flow_action_arm_step_and_version(store_url: str) -> None:
    """`GET /v1/flows` and `/v1/flows/{name}`: per flow, effects counted by action, a split's
    arms per step, the contacts inside per step (a contact entering has no step yet) and per
    version; an effect of no flow counts for none, and one flow's counts hold only its own."""
    effects = [
        _effect("a", 0, action="enter"),
        _effect("b", 1, action="enter"),
        _effect("a", 2, action="split", step="pick", arm="x"),
        _effect("b", 3, action="split", step="pick", arm="y"),
        _effect("c", 4, action="split", step="pick", arm="y"),
        _effect("a", 5, action="send", step="hello"),
        _effect("a", 6, flow=None, action="tag"),
        _effect("d", 7, flow="other", action="enter"),
    ]

    def position(contact: str, flow: str, version: str, step: str | None) -> dict[str, Any]:
        return {"contact": contact, "flow": flow, "version": version, "step": step}

    positions = [
        position("a", "welcome", "v1", "hello"),
        position("b", "welcome", "v1", "wait"),
        position("c", "welcome", "v2", "wait"),
        position("e", "welcome", "v2", None),
        position("d", "other", "v1", "first"),
    ]

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        store = await _store(store_url, effects=effects, positions=positions)
        try:
            return await store.flow_stats(), await store.flow_stats("welcome")
        finally:
            await store.close()

    every, welcome = asyncio.run(run())
    expected = {
        "actions": {"enter": 2, "split": 3, "send": 1},
        "arms": {"pick": {"x": 1, "y": 2}},
        "steps": {"hello": 1, "wait": 2, "(entering)": 1},
        "versions": {"v1": 2, "v2": 2},
    }
    assert every == {
        "welcome": expected,
        "other": {
            "actions": {"enter": 1},
            "arms": {},
            "steps": {"first": 1},
            "versions": {"v1": 1},
        },
    }
    assert welcome == {"welcome": expected}


def test_every_contacts_history_is_read_page_by_page_for_diff(store_url: str) -> None:
    """`leadlang diff` replays every contact's history: each contact once, in id order, over
    pages of a few contacts; its events in time order (not the order they arrived in) and
    its ledger in simulate's order; a contact with events and no effect has an empty one."""
    events = [
        _event("c3", NOW + 5, 0),
        _event("c1", NOW + 9, 1),
        _event("c1", NOW + 2, 2),  # arrived later, happened earlier
        _event("c2", NOW, 3),
        _event("c5", NOW, 4),
        _event("c4", NOW, 5),
        _event("c1", NOW + 9, 6),
    ]
    effects = [
        _effect("c1", 10, at=NOW + 9),
        _effect("c1", 11, at=NOW + 2),
        _effect("c1", 12, at=NOW + 2, kind=0),
        _effect("c4", 13),
    ]

    async def run() -> list[tuple[str, list[int], list[float], list[int]]]:
        store = await _store(store_url, events=events, effects=effects)
        try:
            found = []
            async for contact, history, ledger in store.histories(page=2):
                props = [orjson.loads(body)["props"]["n"] for _, _, body, _ in history]
                found.append((contact, props, [t for _, t, _, _ in history], _n(ledger)))
            return found
        finally:
            await store.close()

    assert asyncio.run(run()) == [
        ("c1", [2, 1, 6], [NOW + 2, NOW + 9, NOW + 9], [12, 11, 10]),
        ("c2", [3], [NOW], []),
        ("c3", [0], [NOW + 5], []),
        ("c4", [5], [NOW], [13]),
        ("c5", [4], [NOW], []),
    ]


def test_the_next_wake_up_is_the_earliest_of_the_contacts(store_url: str) -> None:
    """The processor sleeps until the earliest contact's wake-up (none when no contact
    waits): a later one would run its timers late."""

    async def run() -> tuple[float | None, float | None]:
        store = await open_store(store_url)
        try:
            before = await store.next_wake()
            async with store.write() as conn:
                for contact, wake in (("a", NOW + 300), ("b", NOW + 100), ("c", None)):
                    await conn.execute(insert(s.contacts), _contact(contact, wake))
            return before, await store.next_wake()
        finally:
            await store.close()

    assert asyncio.run(run()) == (None, NOW + 100)


def test_a_history_is_read_from_one_snapshot_while_the_daemon_writes(store_url: str) -> None:
    """`leadlang diff` may run against a live daemon's store: a contact's events and ledger
    are read from one snapshot, so a round committed between the two reads (an event and
    the effects it caused) does not show as effects without their event."""

    async def run() -> tuple[int, int]:
        store = await open_store(store_url)
        done = asyncio.Event()
        commits = 0

        async def daemon() -> None:
            nonlocal commits
            n = 0
            while not done.is_set():
                async with store.write() as conn:
                    contact = f"c{n % 7}"
                    await conn.execute(insert(s.events), _event(contact, NOW + n, n))
                    await conn.execute(insert(s.effects), _effect(contact, n, at=NOW + n))
                n += 1
                commits += 1
                await asyncio.sleep(0)

        writer = asyncio.create_task(daemon())
        passes = 0
        try:
            while passes < 20 or commits < 200:
                async for contact, events, ledger in store.histories(page=3):
                    assert len(events) == len(ledger), (contact, passes)
                passes += 1
                await asyncio.sleep(0)
        finally:
            done.set()
            await writer
            await store.close()
        return passes, commits

    passes, commits = asyncio.run(run())
    assert passes >= 20 and commits >= 200
