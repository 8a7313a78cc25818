"""The store's outbox queries on SQLite and PostgreSQL: claims by channel (those without a
driver included), leases, and outcomes recorded together."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from leadlang.cli import main
from leadlang.runtime.delivery.outbox import OTHER_CHANNELS
from leadlang.runtime.store import schema as s
from leadlang.runtime.store.sql import SqlStore, database_url, open_store
from tests.test_store_migrations import NOW, _outbox_row

pytestmark = pytest.mark.timeout(60)


def _row(key: str, channel: str, next_attempt: float = NOW) -> dict[str, Any]:
    return {**_outbox_row(key, channel, "pending"), "next_attempt": next_attempt}


async def _with_rows(url: str, rows: list[dict[str, Any]]) -> SqlStore:
    store = await open_store(url)
    async with store.write() as conn:
        await conn.execute(insert(s.outbox), rows)
    return store


async def _statuses(store: SqlStore) -> dict[str, tuple[Any, ...]]:
    o = s.outbox
    async with store.engine.connect() as conn:
        found = await conn.execute(
            select(o.c.key, o.c.status, o.c.attempts, o.c.last_error, o.c.lease_until)
        )
        return {r[0]: tuple(r[1:]) for r in found}


def test_each_channel_is_claimed_in_due_order_and_only_up_to_its_room(store_url: str) -> None:
    rows = [_row(f"e{n}", "email", NOW - n) for n in range(5)]
    rows += [_row("s1", "sms"), _row("fax1", "fax"), _row("late", "email", NOW + 60)]

    async def run() -> tuple[list[str], list[str], list[str]]:
        store = await _with_rows(store_url, rows)
        try:
            rooms = {"email": 3, "sms": 0, OTHER_CHANNELS: 10}
            first = await store.claim_outbox(NOW, 100, 30.0, rooms)
            # leased: not claimed again until the lease runs out
            again = await store.claim_outbox(NOW + 1, 100, 30.0, rooms)
            later = await store.claim_outbox(NOW + 1, 100, 30.0, {"email": 10, "sms": 10})
            return [d.key for d in first], [d.key for d in again], [d.key for d in later]
        finally:
            await store.close()

    first, again, later = asyncio.run(run())
    # the three earliest emails, no sms (no room), the fax (no driver) for the worker to bury
    assert sorted(first) == ["e2", "e3", "e4", "fax1"]
    assert [k for k in first if k.startswith("e")] == ["e4", "e3", "e2"]
    assert sorted(again) == ["e0", "e1"]
    assert sorted(later) == ["s1"]


def test_outcomes_of_every_kind_arriving_together_are_each_recorded(store_url: str) -> None:
    rows = [_row(f"k{n}", "email", 1.0) for n in range(6)]  # (due long ago)

    async def run() -> tuple[dict[str, tuple[Any, ...]], list[tuple[str, int]], list[str]]:
        store = await _with_rows(store_url, rows)
        try:
            # (real time: PostgreSQL's leases run on the database's clock)
            start = time.time()
            claimed = await store.claim_outbox(start, 100, 1.5)
            assert len(claimed) == 6
            await asyncio.gather(
                store.outbox_sent("k0", NOW + 1),
                store.outbox_retry("k1", 1, start, "421 try later"),
                store.outbox_dead("k2", 8, "550 no such user"),
                store.outbox_sent("k3", NOW + 1),
                store.outbox_retry("k4", 3, start + 900, "timed out"),
            )
            found = await _statuses(store)
            listed = {r["key"]: r["delivered"] for r in await store.outbox_rows(None, 100)}
            assert listed == {"k0": NOW + 1, "k3": NOW + 1} | {
                k: None for k in ("k1", "k2", "k4", "k5")
            }  # (`leadlang outbox list`: when each was sent)
            # an outcome ends its row's lease (k1, due again, is claimed at once); k5, without
            # one, stays claimed until its lease runs out
            retried = await store.claim_outbox(time.time(), 100, 30.0)
            await asyncio.sleep(start + 1.7 - time.time())
            expired = await store.claim_outbox(time.time(), 100, 30.0)
            return found, [(d.key, d.attempts) for d in retried], [d.key for d in expired]
        finally:
            await store.close()

    found, retried, expired = asyncio.run(run())
    assert found["k0"] == ("sent", 1, None, None)
    assert found["k3"] == ("sent", 1, None, None)
    assert found["k1"] == ("pending", 1, "421 try later", None)
    assert found["k4"] == ("pending", 3, "timed out", None)
    assert found["k2"] == ("dead", 8, "550 no such user", None)
    assert found["k5"][0] == "pending"
    assert retried == [("k1", 1)]  # (its attempts so far, counted on by the worker)
    assert expired == ["k5"]


def test_dead_sends_are_listed_and_queued_again_but_not_those_that_could_not_render(
    store_url: str,
) -> None:
    """`leadlang outbox` (serve.md): the rows listed oldest first, of one status or all; `retry`
    puts dead rows back (those named, or every one) as pending, due now, attempts counted
    afresh, except a message that could not be rendered, which has nothing to deliver."""
    rows = [
        {**_outbox_row(key, "email", status), "created": NOW + n, "last_error": error}
        for n, (key, status, error) in enumerate(
            [
                ("z-dead", "dead", "550 no such user"),
                ("y-render", "dead", "render failed: no such variable"),
                ("x-sent", "sent", None),
                ("w-dead", "dead", "timed out"),
                ("v-pending", "pending", None),
            ]
        )
    ]
    rows[0]["attempts"] = rows[3]["attempts"] = 8

    async def run() -> None:
        store = await _with_rows(store_url, rows)
        try:
            listed = await store.outbox_rows(None, 100)
            assert [r["key"] for r in listed] == [r["key"] for r in rows]
            listed = await store.outbox_rows(None, 2)
            assert [r["key"] for r in listed] == ["z-dead", "y-render"]
            listed = await store.outbox_rows("dead", 100)
            assert [r["key"] for r in listed] == ["z-dead", "y-render", "w-dead"]
            assert await store.outbox_requeue([], NOW + 9) == []
            assert await store.outbox_requeue(["z-dead", "x-sent", "nope"], NOW + 9) == ["z-dead"]
            found = await _statuses(store)
            assert found["z-dead"] == ("pending", 0, "550 no such user", None)
            assert found["w-dead"][:2] == ("dead", 8)
            assert await store.outbox_requeue(None, NOW + 10) == ["w-dead"]
            found = await _statuses(store)
            assert found["w-dead"] == ("pending", 0, "timed out", None)
            assert found["y-render"][0] == "dead"
            assert found["x-sent"][0] == "sent"
            due = await store.claim_outbox(NOW + 9, 100, 30.0)
            assert sorted(d.key for d in due) == ["v-pending", "z-dead"]
        finally:
            await store.close()

    asyncio.run(run())


def test_leases_are_renewed_and_released_at_start_up_on_sqlite_only(store_url: str) -> None:
    """A delivery still being attempted keeps its row by renewing the lease (on the claims'
    clock); a row another daemon is not attempting is not leased by a renewal naming it.
    At start-up a SQLite store frees every lease (its one daemon is gone); a PostgreSQL
    store frees none (other daemons may hold them)."""
    sqlite = store_url.startswith("sqlite")
    rows = [
        _row("held", "email", 1.0),
        _row("other", "email", 1.0),
        _row("old-claim", "email", 1.0),
    ]
    rows.append({**_outbox_row("gone", "email", "sent"), "next_attempt": 1.0})
    for row in rows:  # (a claim by the daemon before this one: leased until the year 2096)
        row["lease_until"] = 4e9 if row["key"] == "old-claim" else None

    async def run() -> None:
        store = await _with_rows(store_url, rows)
        try:
            start = time.time()
            assert [d.key for d in await store.claim_outbox(start, 1, 0.5)] == ["held"]
            await store.renew_outbox_leases(["held", "gone"], start, 30.0)
            if sqlite:
                await store.renew_outbox_leases(["other"], start, 30.0)
            await asyncio.sleep(start + 1.0 - time.time())
            claimed = await store.claim_outbox(time.time(), 100, 30.0)
            assert [d.key for d in claimed] == ["other"]
            assert (await _statuses(store))["gone"][-1] is None
            assert await store.release_leases() == (1 if sqlite else 0)  # (old-claim: in the file)
            claimed = await store.claim_outbox(time.time(), 100, 30.0)
            assert sorted(d.key for d in claimed) == (
                ["held", "old-claim", "other"] if sqlite else []
            )
        finally:
            await store.close()

    asyncio.run(run())


def test_a_claim_takes_no_more_than_its_limit_nor_a_channels_room(store_url: str) -> None:
    """The worker claims a batch (`limit`) and, per channel, only what the channel's backlog
    has room for: the oldest due rows first, never more than the batch even when a channel
    has more room, and one row for a room of one."""
    rows = [_row(f"e{n}", "email", NOW - n) for n in range(6)] + [_row("s0", "sms", NOW - 9)]

    async def run() -> list[list[str]]:
        store = await _with_rows(store_url, rows)
        try:
            claims = [
                await store.claim_outbox(NOW, 2, 30.0),
                await store.claim_outbox(NOW, 2, 30.0, {"email": 10}),
                await store.claim_outbox(NOW, 10, 30.0, {"email": 1, "sms": 1}),
            ]
            return [[d.key for d in claim] for claim in claims]
        finally:
            await store.close()

    assert asyncio.run(run()) == [["s0", "e5"], ["e4", "e3"], ["e2"]]


@pytest.mark.timeout(60)
def test_a_claim_on_postgresql_skips_the_rows_another_daemon_is_claiming(
    postgres_db: str,
) -> None:
    """Daemons sharing a PostgreSQL store claim side by side: rows another daemon's claim has
    locked (not yet leased) are skipped, neither waited for nor claimed twice."""
    rows = [_row(f"k{n}", "email", 1.0 + n) for n in range(4)]

    async def run() -> list[str]:
        store = await _with_rows(postgres_db, rows)
        other = create_async_engine(database_url(postgres_db))
        try:
            async with other.connect() as conn:
                await conn.begin()
                await conn.exec_driver_sql(
                    "SELECT key FROM outbox WHERE key IN ('k0', 'k1') FOR UPDATE"
                )
                claimed = await asyncio.wait_for(
                    store.claim_outbox(time.time(), 10, 30.0, {"email": 10}), 20
                )
                await conn.rollback()
            return [d.key for d in claimed]
        finally:
            await other.dispose()
            await store.close()

    assert asyncio.run(run()) == ["k2", "k3"]


def test_a_lease_ends_at_its_instant_on_sqlite(tmp_path: Path) -> None:
    """A lease runs until its instant, not past it: a row leased until now (as a store from
    before leases were kept in memory left it) is claimed now, and one claimed with a lease
    of 30 s is claimed again 30 s later if no outcome came (its daemon's attempt is
    presumed lost)."""
    rows = [
        {**_row("left", "email", 1.0), "lease_until": NOW},
        {**_row("fresh", "email", 2.0), "lease_until": None},
    ]

    async def run() -> list[list[str]]:
        store = await _with_rows(f"sqlite:///{tmp_path / 'store.db'}", rows)
        try:
            return [
                [d.key for d in await store.claim_outbox(at, 10, 30.0)]
                for at in (NOW, NOW + 29.5, NOW + 30.0)
            ]
        finally:
            await store.close()

    assert asyncio.run(run()) == [["left", "fresh"], [], ["left", "fresh"]]


def test_outbox_list_prints_json_rows(store_url: str) -> None:
    # (the rows' keys are SQLAlchemy's `quoted_name`, a str subclass orjson refused: a
    # TypeError traceback for any outbox that had a row)
    async def fill() -> None:
        await (await _with_rows(store_url, [_row("k1", "email")])).close()

    asyncio.run(fill())
    result = CliRunner().invoke(main, ["outbox", "list", "--db", store_url, "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in result.output.splitlines()]
    assert row["key"] == "k1" and row["status"] == "pending" and row["contact"] == "ada"


def test_outbox_list_prints_every_row_and_escapes_what_a_terminal_would_obey(
    tmp_path: Path,
) -> None:
    # (one query read at most 100,000 rows and the rest went unsaid; an id or an error that a
    # remote server wrote was printed raw, ESC and line ends too)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    rows = [_row(f"k{n:06}", "email") | {"last_error": None} for n in range(100_001)]
    rows[-1] |= {"contact": "ada\x1b[2J\nx", "last_error": "550 \x1b]0;owned\x07"}

    async def fill() -> None:
        await (await _with_rows(url, rows)).close()

    asyncio.run(fill())
    result = CliRunner().invoke(main, ["outbox", "list", "--db", url])
    assert result.exit_code == 0, result.output[-2000:]
    lines = result.output.splitlines()
    assert len(lines) == 100_001 and lines[0].startswith("k000000  pending")
    assert lines[-1].split() == [
        "k100000", "pending", "email", "ada\\x1b[2J\\nx", "welcome/hello", "attempts=0",
        "550", "\\x1b]0;owned\\x07",
    ]  # fmt: skip
