"""The SQLite store's inbox: ingest's commits land in a file of their own and the back end
admits them into `events` once each (the `messageId` check included), whatever was cut
short between the two files' commits; ingest acknowledges durably even while the store's
own write lock is held, and what it took is processed after a SIGKILL."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from leadlang.runtime.server.ingest import parse_message
from leadlang.runtime.store.inbox import inbox_path, waiting_in
from leadlang.runtime.store.sql import (
    ADMIT_EVENTS,
    DEDUP_SECONDS,
    Incoming,
    SqlStore,
    open_store,
)
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


def three_accepted(tmp_path: Path) -> tuple[Path, Path, Path, float]:
    """A store whose inbox holds a, b (one commit) and c (another), and a copy of the inbox
    as it is then (before admission deletes its rows): (store, inbox, copy, now)."""
    db = tmp_path / "x.db"
    now = time.time()

    async def accept(store: SqlStore) -> None:
        await store.accept([[signed_up("a", None, now), signed_up("b", None, now)]], now)
        await store.accept([[signed_up("c", None, now)]], now)

    run(db, accept)
    saved = tmp_path / "saved.db"
    shutil.copy(inbox_path(str(db)), saved)
    return db, inbox_path(str(db)), saved, now


def test_rows_admitted_before_a_crash_are_not_admitted_again(tmp_path: Path) -> None:
    db, inbox, saved, now = three_accepted(tmp_path)

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


def timed(contact: str, message_id: str | None, received: float, t: float) -> Incoming:
    """A track event that happened at `t` and was received at `received`."""
    item = {"type": "track", "userId": contact, "event": "Signed Up", "messageId": message_id}
    when = datetime.fromtimestamp(t, UTC).isoformat()
    event = parse_message({**item, "timestamp": when}, None, received, None)
    assert event is not None
    return event


def test_the_inbox_is_named_as_documented_also_for_a_store_without_suffix(
    tmp_path: Path,
) -> None:
    # serve.md: `leadlang.inbox.db` for `leadlang.db`, `NAME.inbox.EXT` in general
    assert inbox_path(str(tmp_path / "leadlang.db")) == tmp_path / "leadlang.inbox.db"
    assert inbox_path(str(tmp_path / "store")) == tmp_path / "store.inbox"
    assert inbox_path("~/leadlang.db") == Path.home() / "leadlang.inbox.db"
    db = tmp_path / "store"  # (no suffix: the inbox must still be a file of its own)
    now = time.time()

    async def body(store: SqlStore) -> None:
        await store.accept([[signed_up("a", "m1", now)]], now)
        assert (tmp_path / "store.inbox").exists()
        assert waiting_in(str(db)) == 1
        assert await store.admit_all() == 1

    run(db, body)
    assert events(db) == ["a"]
    assert rows(tmp_path / "store.inbox", "SELECT count(*) FROM inbox") == [(0,)]


def test_admission_takes_whole_commits_in_order_up_to_its_size(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    now = time.time()

    async def body(store: SqlStore) -> None:
        for commit in ("a", "bcd", "e", "f", "g"):
            await store.accept([[signed_up(c, None, now) for c in commit]], now)
        # at most 2 events per admission: `a`, not `a` and part of the next commit
        assert await store.admit(max_events=2) == 1
        assert events(db) == ["a"]
        # a commit of more events than that is admitted whole, alone
        assert await store.admit(max_events=2) == 3
        assert events(db) == ["a", "b", "c", "d"]
        assert waiting_in(str(db)) == 3
        # then as many commits as hold at most 2 events, in order
        assert await store.admit(max_events=2) == 2
        assert events(db) == ["a", "b", "c", "d", "e", "f"]
        assert await store.admit(max_events=2) == 1
        assert await store.admit(max_events=2) == 0
        assert events(db) == ["a", "b", "c", "d", "e", "f", "g"]

    run(db, body)


def test_pending_figures_count_and_date_the_inbox_with_the_store(tmp_path: Path) -> None:
    """`leadlang_pending_events` and the processing lag (serve.md) count the inbox's events
    with the store's, and date them by when they were received (not by their timestamp)."""
    db = tmp_path / "x.db"
    now = time.time()

    def oldest(figures: dict[str, object]) -> object:
        return figures["oldest_pending_received"]

    async def body(store: SqlStore) -> None:
        await store.accept([[timed("a", None, now - 300, now - 1000)]], now - 300)
        # in the inbox only
        assert (await store.counts())["pending_events"] == 1
        assert await store.inbox_waiting() == (1, now - 300)
        assert oldest(await store.metric_figures(now, [], 60)) == now - 300
        assert await store.admit() == 1
        # in the store, pending (no processor runs here), and in the inbox
        await store.accept([[timed("b", None, now - 200, now - 2000)]], now - 200)
        late = [timed("c", None, now - 70, now - 3000), timed("d", None, now - 50, now - 3000)]
        await store.accept([late], now - 40)
        assert (await store.counts())["pending_events"] == 4
        assert await store.inbox_waiting() == (3, now - 200)
        assert oldest(await store.metric_figures(now, [], 60)) == now - 300
        assert await store.admit(max_events=1) == 1  # (b's commit alone)
        assert await store.inbox_waiting() == (2, now - 70)
        assert await store.admit_all() == 2
        # in the store only
        assert await store.inbox_waiting() == (0, None)
        assert (await store.counts())["pending_events"] == 4
        assert oldest(await store.metric_figures(now, [], 60)) == now - 300

    run(db, body)


def test_after_a_crash_ingest_may_commit_before_the_first_admission(tmp_path: Path) -> None:
    db, inbox, saved, now = three_accepted(tmp_path)

    async def admit(store: SqlStore) -> None:
        assert await store.admit(max_events=1) == 2  # (two admissions, two records)
        assert await store.admit(max_events=1) == 1

    run(db, admit)
    shutil.copy(saved, inbox)  # (the crash: the store committed, the inbox kept its rows)

    async def restarted(store: SqlStore) -> None:
        # a request is taken before the back end first reads the inbox
        await store.accept([[signed_up("d", None, now)]], now)
        # the rows left are admitted already: pending in the store, not in the inbox
        assert await store.inbox_waiting() == (1, now)
        assert (await store.counts())["pending_events"] == 4
        assert await store.admit_all() == 1

    run(db, restarted)
    assert events(db) == ["a", "b", "c", "d"]


def test_an_inbox_file_still_being_made_is_read_as_empty(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    now = time.time()

    async def body(store: SqlStore) -> None:
        # ingest's first commit has made the file and not yet its tables
        inbox_path(str(db)).touch()
        assert await store.admit() == 0
        assert await store.inbox_waiting() == (0, None)
        assert (await store.counts())["pending_events"] == 0
        await store.accept([[signed_up("a", None, now)]], now)
        assert await store.admit_all() == 1

    run(db, body)
    assert events(db) == ["a"]


def test_a_reader_of_the_inbox_does_not_hold_up_ingest(tmp_path: Path) -> None:
    """A program reading the inbox (`waiting_in`, a backup) while ingest commits: the inbox
    is in WAL mode, so the commit neither waits for the read nor fails."""
    db = tmp_path / "x.db"
    now = time.time()

    async def body(store: SqlStore) -> None:
        await store.accept([[signed_up("a", None, now)]], now)
        reader = sqlite3.connect(inbox_path(str(db)), isolation_level=None)
        try:
            reader.execute("BEGIN")
            assert reader.execute("SELECT count(*) FROM inbox").fetchone() == (1,)
            started = time.monotonic()
            await store.accept([[signed_up("b", None, now)]], now)
            assert time.monotonic() - started < 5
            reader.execute("COMMIT")
        finally:
            reader.close()
        assert await store.admit_all() == 2

    run(db, body)
    assert events(db) == ["a", "b"]


def test_a_message_id_is_a_repeat_for_24_hours_from_when_it_was_last_new(
    tmp_path: Path,
) -> None:
    db = tmp_path / "x.db"
    t0 = time.time() - 3 * DEDUP_SECONDS

    async def body(store: SqlStore) -> None:
        # `m1` twice in one commit: the first is stored, and dates the window
        await store.accept([[signed_up("a", "m1", t0), signed_up("b", "m1", t0 + 100)]], t0 + 100)
        # exactly 24 hours after it: still a repeat
        await store.accept([[signed_up("c", "m1", t0 + DEDUP_SECONDS)]], t0 + DEDUP_SECONDS)
        # past them: new, and a repeat again for the next 24 hours
        later = t0 + DEDUP_SECONDS + 50
        await store.accept([[signed_up("d", "m1", later)]], later)
        await store.accept([[signed_up("e", "m1", later + 60)]], later + 60)
        await store.admit_all()

    run(db, body)
    assert events(db) == ["a", "d"]


def test_a_request_that_waited_for_its_commit_is_checked_at_the_commit(tmp_path: Path) -> None:
    """serve.md: the `messageId` check happens "at the instant ingest committed the row", not
    when its requests were received: a request that waited for its commit (behind the write
    lock, up to the patience) is judged at the commit, whatever its events' receive times."""
    db = tmp_path / "x.db"
    t0 = time.time() - 3 * DEDUP_SECONDS

    async def body(store: SqlStore) -> None:
        await store.accept([[signed_up("a", "m1", t0)]], t0)
        # received just within 24 hours of the first `m1`, committed 10 s later: past them
        received = t0 + DEDUP_SECONDS - 5
        await store.accept([[signed_up("b", "m1", received)]], received + 10)
        await store.admit_all()

    run(db, body)
    assert events(db) == ["a", "b"]


def test_a_commit_that_fails_leaves_the_inbox_taking_the_next(tmp_path: Path) -> None:
    """A statement of ingest's commit that fails (here a trigger the test installs in the
    inbox refuses rows of two events) fails that commit only: the requests are answered with
    the error, and the next commit is appended as if nothing had happened."""
    db = tmp_path / "x.db"
    now = time.time()

    async def body(store: SqlStore) -> None:
        await store.accept([[signed_up("a", None, now)]], now)
        conn = sqlite3.connect(inbox_path(str(db)))
        try:
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON inbox WHEN NEW.count = 2"
                " BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
            conn.commit()
        finally:
            conn.close()
        with pytest.raises(sqlite3.IntegrityError, match="refused"):
            await store.accept([[signed_up("b", None, now), signed_up("c", None, now)]], now)
        await store.accept([[signed_up("d", None, now)]], now)
        assert await store.admit_all() == 2

    run(db, body)
    assert events(db) == ["a", "d"]


def test_admitting_everything_takes_several_admissions_and_counts_them_all(
    tmp_path: Path,
) -> None:
    db = tmp_path / "x.db"
    now = time.time()
    commit = [signed_up(f"c{i}", None, now) for i in range(ADMIT_EVENTS // 2 + 1)]

    async def body(store: SqlStore) -> None:
        await store.accept([commit], now)
        await store.accept([commit], now)  # (more than one admission takes)
        assert await store.admit_all() == 2 * len(commit)
        assert waiting_in(str(db)) == 0

    run(db, body)
    assert rows(db, "SELECT count(*) FROM events") == [(2 * len(commit),)]
