"""Ingest stores events as NEW (an append, no index keyed by contact); processors admit them,
whole requests at a time, before a round reads its work. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from leadlang.runtime.store import schema as s
from leadlang.runtime.store.sql import Incoming, SqlStore, open_store

pytestmark = pytest.mark.timeout(60)
NOW = 1_800_000_000.0


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'admit.db'}"
    return str(request.getfixturevalue("postgres_db"))


def request_of(n: int, size: int, contact: str = "ada") -> list[Incoming]:
    """One request's events: `size` of them, received together at NOW + n."""
    return [
        Incoming(f"m{n}-{i}", contact, NOW - i, NOW + n, '{"name": "ping"}') for i in range(size)
    ]


async def stages(store: SqlStore) -> list[tuple[int, int]]:
    ev = s.events
    async with store.engine.connect() as conn:
        return [
            tuple(r) for r in await conn.execute(select(ev.c.id, ev.c.pending).order_by(ev.c.id))
        ]


def test_accepted_events_are_new_known_and_counted_until_admitted(store_url: str) -> None:
    async def run() -> dict[str, Any]:
        store = await open_store(store_url)
        try:
            await store.accept([request_of(0, 3, "ada"), request_of(1, 2, "bob")], NOW)
            out: dict[str, Any] = {"before": await stages(store)}
            out["known"] = [await store.contact_known(c) for c in ("ada", "bob", "cy")]
            out["counted"] = (await store.counts())["pending_events"]
            async with store.claim_round(NOW + 5, 10, 100) as work:
                out["work_before"] = [row.id for row in work.rows]
            out["admitted"] = await store.admit_events()
            out["after"] = await stages(store)
            out["again"] = await store.admit_events()
            async with store.claim_round(NOW + 5, 10, 100) as work:
                out["work_after"] = sorted(row.id for row in work.rows)
                out["events"] = {name: len(p) for name, p in work.pending.items()}
            out["counted_after"] = (await store.counts())["pending_events"]
            return out
        finally:
            await store.close()

    out = asyncio.run(run())
    assert [stage for _, stage in out["before"]] == [s.NEW] * 5
    assert out["known"] == [True, True, False]
    assert out["counted"] == 5
    assert out["work_before"] == []  # a round sees only admitted events
    assert out["admitted"] == 5 and out["again"] == 0
    assert [stage for _, stage in out["after"]] == [s.PENDING] * 5
    assert out["work_after"] == ["ada", "bob"] and out["events"] == {"ada": 3, "bob": 2}
    assert out["counted_after"] == 5


def test_admission_takes_whole_requests_about_the_limit_at_a_time(store_url: str) -> None:
    async def run() -> list[int]:
        store = await open_store(store_url)
        try:
            # three requests of 5 events, committed together (one group commit)
            await store.accept([request_of(n, 5) for n in range(3)], NOW)
            return [await store.admit_events(limit=7) for _ in range(3)]
        finally:
            await store.close()

    # the 7th event is in the second request: all of it comes along, then the third
    assert asyncio.run(run()) == [10, 5, 0]


def test_daemons_admitting_at_once_admit_each_event_once(store_url: str) -> None:
    if store_url.startswith("sqlite"):
        pytest.skip("one daemon per SQLite database")

    async def run() -> tuple[list[int], list[int]]:
        stores = [await open_store(store_url) for _ in range(3)]
        try:
            await stores[0].accept([request_of(n, 50) for n in range(40)], NOW)
            counts = list(await asyncio.gather(*(st.admit_events(limit=100) for st in stores)))
            while sum(counts) < 2000:
                counts.append(await stores[0].admit_events(limit=100))
            return counts, [stage for _, stage in await stages(stores[0])]
        finally:
            for st in stores:
                await st.close()

    counts, states = asyncio.run(run())
    assert sum(counts) == 2000 and states == [s.PENDING] * 2000


def test_on_sqlite_other_writes_give_way_to_ingest_for_a_while(tmp_path: Path) -> None:
    """Ingest's commits go first: while ingest holds its turn (it waits for or makes a
    commit), another process's write waits until ingest is done, but never longer than
    GIVE_WAY (processing must still move when ingest never pauses)."""
    from leadlang.runtime.store import sql

    url = f"sqlite:///{tmp_path / 'turns.db'}"

    async def timed_write(store: SqlStore) -> float:
        started = time.monotonic()
        async with store.write():
            return time.monotonic() - started

    async def run() -> tuple[float, float, float]:
        ingest, backend = await open_store(url), await open_store(url)
        try:
            assert ingest.turns is not None
            free = await timed_write(backend)
            await ingest.turns.claim()
            asyncio.get_running_loop().call_later(0.02, ingest.turns.release)
            released = await timed_write(backend)  # waits for the release
            await ingest.turns.claim()
            held = await timed_write(backend)  # never released: waits GIVE_WAY, then goes
            ingest.turns.release()
            return free, released, held
        finally:
            await ingest.close()
            await backend.close()

    free, released, held = asyncio.run(run())
    assert free < 0.02
    assert 0.02 <= released < sql.GIVE_WAY
    assert sql.GIVE_WAY <= held < sql.GIVE_WAY + 0.5
