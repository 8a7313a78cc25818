"""The SQLite store's inbox: ingest's commits land in a file of their own and the back end
admits them into `events` once each (the `messageId` check included), whatever was cut
short between the two files' commits; ingest acknowledges durably even while the store's
own write lock is held, and what it took is processed after a SIGKILL."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from leadlang.runtime.server.ingest import parse_message
from leadlang.runtime.store.inbox import inbox_path, waiting_in
from leadlang.runtime.store.sql import DEDUP_SECONDS, Incoming, SqlStore, open_store
from tests.serve_daemon import GREET, Daemon

pytestmark = pytest.mark.timeout(120)


def signed_up(contact: str, message_id: str | None, now: float) -> Incoming:
    item = {"type": "track", "userId": contact, "event": "Signed Up", "messageId": message_id}
    event = parse_message(item, None, now, None)
    assert event is not None
    return event


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return [tuple(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def events(db: Path) -> list[str]:
    return [str(row[0]) for row in rows(db, "SELECT contact FROM events ORDER BY id")]


def run(db: Path, body: object) -> None:
    async def main() -> None:
        store = await open_store(f"sqlite:///{db}")
        try:
            await body(store)  # type: ignore[operator]
        finally:
            await store.close()

    asyncio.run(main())


def test_accepted_events_wait_in_the_inbox_until_admitted_once(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    now = time.time()

    async def body(store: SqlStore) -> None:
        await store.accept([[signed_up("a", "m1", now)], [signed_up("b", None, now)]], now)
        await store.accept([[signed_up("c", "m1", now), signed_up("d", "m2", now)]], now)
        assert events(db) == []  # ingest's commits are in the inbox only
        assert waiting_in(str(db)) == 4
        assert (await store.counts())["pending_events"] == 4
        assert await store.admit_all() == 4
        # in order; `m1` again (another request) is acknowledged and not stored again
        assert events(db) == ["a", "b", "d"]
        assert waiting_in(str(db)) == 0
        assert await store.admit_all() == 0
        assert events(db) == ["a", "b", "d"]

    run(db, body)
    assert rows(inbox_path(str(db)), "SELECT count(*) FROM inbox") == [(0,)]  # admitted: gone


def test_the_message_id_window_is_taken_at_the_instant_ingest_committed(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    now = time.time()
    later = now + DEDUP_SECONDS + 1

    async def body(store: SqlStore) -> None:
        await store.accept([[signed_up("a", "m1", now)]], now)
        await store.accept([[signed_up("b", "m1", now + 60)]], now + 60)
        await store.accept([[signed_up("c", "m1", later)]], later)
        await store.admit_all()  # all three admitted together, well after they came

    run(db, body)
    # a repeat within 24 hours of the first is not stored, one past them is
    assert events(db) == ["a", "c"]


def test_rows_admitted_before_a_crash_are_not_admitted_again(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    inbox = inbox_path(str(db))
    now = time.time()

    async def accept(store: SqlStore) -> None:
        await store.accept([[signed_up("a", None, now), signed_up("b", None, now)]], now)
        await store.accept([[signed_up("c", None, now)]], now)

    run(db, accept)
    saved = tmp_path / "saved.db"
    shutil.copy(inbox, saved)  # (the inbox as it was before admission deleted its rows)

    async def admit(store: SqlStore) -> None:
        assert await store.admit_all() == 3

    run(db, admit)
    # a crash after the store's commit and before the inbox's delete leaves the rows there
    shutil.copy(saved, inbox)
    assert waiting_in(str(db)) == 0

    async def again(store: SqlStore) -> None:
        assert await store.admit_all() == 0
        await store.accept([[signed_up("d", None, now)]], now)
        assert await store.admit_all() == 1

    run(db, again)
    assert events(db) == ["a", "b", "c", "d"]


def test_another_inbox_file_is_read_from_its_beginning(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    now = time.time()

    async def first(store: SqlStore) -> None:
        for contact in "abc":
            await store.accept([[signed_up(contact, None, now)]], now)
        assert await store.admit_all() == 3

    run(db, first)
    inbox_path(str(db)).unlink()  # (and a new one is made by the next accept: ids from 1)

    async def second(store: SqlStore) -> None:
        await store.accept([[signed_up("d", None, now)]], now)
        assert await store.admit_all() == 1

    run(db, second)
    assert events(db) == ["a", "b", "c", "d"]


@pytest.mark.timeout(90)
def test_ingest_acknowledges_while_the_store_is_locked_and_a_kill_loses_nothing(
    tmp_path: Path,
) -> None:
    script = tmp_path / "greet.lead"
    script.write_text(GREET, encoding="utf-8")
    daemon = Daemon(tmp_path, [str(script)]).start()
    store = tmp_path / "leadlang.db"
    lock = sqlite3.connect(store, timeout=30, isolation_level=None)
    try:
        # another writer holds the store: the back end can neither admit nor process
        lock.execute("BEGIN IMMEDIATE")
        batch = [
            {"type": "track", "userId": f"k{i}", "event": "Signed Up", "messageId": f"k{i}"}
            | {"properties": {"email": f"k{i}@example.com"}}
            for i in range(50)
        ]
        started = time.monotonic()
        assert daemon.post("/v1/batch", {"batch": batch}).status_code == 200
        assert time.monotonic() - started < 5  # not held up by the store's lock
        assert waiting_in(str(store)) == 50
        daemon.kill()  # SIGKILL, with everything acknowledged still in the inbox
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    daemon.start()
    try:
        daemon.wait_idle()
        sends = daemon.query("SELECT contact FROM effects WHERE action = 'send' ORDER BY contact")
        assert sorted(row[0] for row in sends) == sorted(f"k{i}" for i in range(50))
    finally:
        assert daemon.stop() == 0
