"""The store's small writes: the daemon's credentials generated once and kept, `messageId`s
forgotten after the deduplication window, and SQLite writers of two processes taking turns
(one waits for the other's write lock, up to its patience, and writes afterwards)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError

from leadlang.runtime.store import schema as s
from leadlang.runtime.store import sql
from leadlang.runtime.store.sql import DEDUP_SECONDS, SqlStore, open_store
from tests.test_store_inbox import signed_up

pytestmark = pytest.mark.timeout(120)


def test_a_generated_credential_is_kept_and_a_configured_one_wins(store_url: str) -> None:
    """`leadlang serve` prints a write key (or admin token) it generates once, and the same one
    works after a restart; a token set in the config is used as given and not stored."""

    async def run() -> list[tuple[str, bool]]:
        store = await open_store(store_url)
        try:
            found = [
                await store.credential("write_key", None),
                await store.credential("write_key", None),
                await store.credential("admin_token", "configured"),
                await store.credential("admin_token", None),
            ]
        finally:
            await store.close()
        store = await open_store(store_url)  # (a restart)
        try:
            found.append(await store.credential("write_key", None))
        finally:
            await store.close()
        return found

    (key, new), again, configured, (admin, admin_new), restarted = asyncio.run(run())
    assert new and len(key) >= 32
    assert again == (key, False)  # printed once only
    assert configured == ("configured", False)
    assert admin_new and admin not in (key, "configured")
    assert restarted == (key, False)


def test_message_ids_are_forgotten_after_the_window_and_not_before(store_url: str) -> None:
    """The processor drops the `messageId`s received before the deduplication window now and
    then (the table would grow without end); one received since, or at its very start, is
    kept, so a client's retry of that message is still not stored twice."""
    now = time.time()
    start = now - DEDUP_SECONDS

    async def run() -> tuple[int, list[str], list[str]]:
        store = await open_store(store_url)
        try:
            for contact, message_id, at in (
                ("a", "m-old", start - 60),
                ("b", "m-start", start),
                ("c", "m-new", now - 60),
            ):
                await store.accept([[signed_up(contact, message_id, at)]], at)
            await store.admit_all()
            forgotten = await store.forget_seen(start)
            async with store.engine.connect() as conn:
                seen = await conn.execute(select(s.seen_messages.c.message_id))
                kept = sorted(r[0] for r in seen)
            await store.accept(
                [[signed_up("d", "m-new", now), signed_up("e", "m-start", now)]], now
            )
            await store.admit_all()
            async with store.engine.connect() as conn:
                stored = await conn.execute(select(s.events.c.contact).order_by(s.events.c.id))
                return forgotten, kept, [r[0] for r in stored]
        finally:
            await store.close()

    forgotten, kept, stored = asyncio.run(run())
    assert (forgotten, kept) == (1, ["m-new", "m-start"])
    assert stored == ["a", "b", "c"]  # the retries of m-new and m-start were not stored


async def _write(store: SqlStore, key: str) -> None:
    async with store.write() as conn:
        await conn.execute(insert(s.meta).values(key=key, value="x"))


def test_sqlite_writers_of_two_processes_take_turns_up_to_their_patience(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Serve's front end and back end (and `leadlang outbox retry`) write one SQLite file: a
    write finding the other's write lock held waits its turn and then writes; one held past
    `WRITE_LOCK_PATIENCE` is an error, not a hang, and the store writes again afterwards."""
    url = f"sqlite:///{tmp_path / 'store.db'}"

    async def run() -> tuple[float, list[str]]:
        first, second = await open_store(url), await open_store(url)
        try:
            entered, release = asyncio.Event(), asyncio.Event()

            async def hold(key: str) -> None:
                async with first.write() as conn:
                    await conn.execute(insert(s.meta).values(key=key, value="x"))
                    entered.set()
                    await release.wait()

            # held for 1.5 s: the other writer waits (counting its sleeps towards a patience
            # of 3 s) and writes after it
            monkeypatch.setattr(sql, "WRITE_LOCK_PATIENCE", 3.0)
            holder = asyncio.create_task(hold("held"))
            await entered.wait()
            asyncio.get_running_loop().call_later(1.5, release.set)
            started = time.monotonic()
            await asyncio.wait_for(_write(second, "second"), 30)
            waited = time.monotonic() - started
            await holder
            # held until the other writer gives up: it does, at its patience
            monkeypatch.setattr(sql, "WRITE_LOCK_PATIENCE", 0.5)
            entered.clear()
            release.clear()
            holder = asyncio.create_task(hold("held again"))
            await entered.wait()
            with pytest.raises(OperationalError, match="locked"):
                await asyncio.wait_for(_write(second, "third"), 30)
            release.set()
            await holder
            await asyncio.wait_for(_write(second, "fourth"), 30)  # (its turn is free again)
            async with second.engine.connect() as conn:
                keys = await conn.execute(select(s.meta.c.key).where(s.meta.c.value == "x"))
                return waited, sorted(r[0] for r in keys)
        finally:
            await first.close()
            await second.close()

    waited, keys = asyncio.run(run())
    assert waited >= 1.4
    assert keys == ["fourth", "held", "held again", "second"]


def test_a_write_failing_for_another_reason_than_the_lock_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the other process's write lock is waited for: a write that cannot start for
    another reason (here the store's folder is gone when the writer connects again, as it
    does after its connection was dropped) fails with that error at once, not after the
    patience a lock is given."""
    folder = tmp_path / "gone"
    folder.mkdir()
    monkeypatch.setattr(sql, "WRITE_LOCK_PATIENCE", 30.0)

    async def run() -> float:
        store = await open_store(f"sqlite:///{folder / 'store.db'}")
        try:
            await store.writer.dispose()  # (its one connection dropped)
            shutil.rmtree(folder)
            started = time.monotonic()
            with pytest.raises(OperationalError, match="unable to open"):
                await _write(store, "lost")
            return time.monotonic() - started
        finally:
            await store.close()
            await asyncio.sleep(1.0)  # (the failed connection's thread ends)

    assert asyncio.run(run()) < 10.0


def test_a_sqlite_writer_that_waited_seconds_writes_soon_after_the_lock_is_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer waiting for another process's SQLite write lock tries again every few
    milliseconds however long it has waited: held for 6 s, the lock is taken well within a
    second of its release (pauses that kept doubling would have been 4 s long by then, and the
    writer would have noticed the release only about 2 s later)."""
    path = tmp_path / "store.db"
    monkeypatch.setattr(sql, "WRITE_LOCK_PATIENCE", 30.0)
    held, released = threading.Event(), []

    def hold() -> None:  # (another process's writer: a connection of its own)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO meta (key, value) VALUES ('other', 'x')")
            held.set()
            time.sleep(6.0)
            other.execute("COMMIT")
            released.append(time.monotonic())
        finally:
            other.close()

    async def run() -> float:
        store = await open_store(f"sqlite:///{path}")
        holder = threading.Thread(target=hold)
        try:
            holder.start()
            assert await asyncio.to_thread(held.wait, 30)
            await asyncio.wait_for(_write(store, "waited"), 60)
            return time.monotonic()
        finally:
            await asyncio.to_thread(holder.join)
            await store.close()

    wrote = asyncio.run(run())
    assert 0 <= wrote - released[0] < 1.5
