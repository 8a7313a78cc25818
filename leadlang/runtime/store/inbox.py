"""The SQLite store's inbox: ingest's commits appended to a file of their own.

SQLite lets one connection at a time write a database file. When ingest committed straight
into the store's `events` table, each group commit waited for the back end's rounds to end
and paid for the event's indexes (by contact, by time, the `messageId` check) while clients
waited. Now a group commit is one row appended to a second file beside the store
(`leadlang.db` -> `leadlang.inbox.db`): every event of the commit in one JSON array, durable
(WAL, `synchronous=FULL`) before any of its requests is answered 200. The back end then
*admits* the rows into the store in its own transactions (`SqlStore.admit`: the `messageId`
check, the `events` rows), recording in the store's `meta` table how far it has read; rows
it has admitted are then deleted from the inbox. A row is admitted whole or not at all, so a
request is too, and a crash between the two files' commits only leaves rows that the record
says were admitted already (deleted at the next admission).

The file carries an id of its own (made with it): a store that finds a different inbox beside
it (an inbox deleted or restored from elsewhere) starts reading that one from its beginning.

Only serve's SQLite stores on a file have an inbox; PostgreSQL, where writers do not take
turns, stores events in one statement as before.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

# (message_id, contact, t, received, body): an event as the inbox keeps it
InboxEvent = tuple[str | None, str, float, float, str]

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS inbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"  # never reused, even once every row is deleted
    " committed REAL NOT NULL,"  # when ingest committed it (the `messageId` window's now)
    " count INTEGER NOT NULL,"
    " oldest REAL NOT NULL,"  # the earliest `received` among its events
    " events BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
BUSY_TIMEOUT_MS = 30_000
# the store's `meta` key of how far it has admitted the inbox: {"inbox": id, "admitted": n}
RECORD = "inbox"


def inbox_path(database: str) -> Path:
    """The inbox beside the store's file: `x.db` -> `x.inbox.db` (`x` -> `x.inbox`)."""
    path = Path(database).expanduser()
    if path.suffix:
        return path.with_name(f"{path.stem}.inbox{path.suffix}")
    return path.with_name(f"{path.name}.inbox")


class Inbox:
    """One process's connections to the inbox file: one that writes (ingest's appends, the
    back end's deletes) and one that reads, so a read never waits for a write (WAL). Opened
    when first needed; a reader finds nothing until ingest has made the file. Its methods
    block: call them in a thread. They are safe to call from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._id: str | None = None
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    # ------------------------------------------------------------ ingest's side

    def append(self, events: Sequence[InboxEvent], committed: float) -> None:
        """Commit one row holding `events` (durably: it returns after the fsync)."""
        if not events:
            return
        blob = orjson.dumps(events, default=tuple)  # (events may be named tuples)
        oldest = min(event[3] for event in events)
        with self._write_lock:
            db = self._open_writer()
            with _transaction(db):
                db.execute(
                    "INSERT INTO inbox (committed, count, oldest, events) VALUES (?, ?, ?, ?)",
                    (committed, len(events), oldest, blob),
                )

    # ------------------------------------------------------------ the back end's side

    def identity(self) -> str | None:
        """The file's id; None while there is no inbox file (or it is being made)."""
        with self._read_lock:
            self._open_reader()
            return self._id

    def read_after(self, cursor: int, max_events: int) -> list[tuple[int, float, list[InboxEvent]]]:
        """The rows after `cursor` in order, `(id, committed, events)`, as many as hold about
        `max_events` events (at least one row when there is one)."""
        with self._read_lock:
            db = self._open_reader()
            if db is None:
                return []
            rows: list[tuple[int, float, list[InboxEvent]]] = []
            total = 0
            query = "SELECT id, committed, count, events FROM inbox WHERE id > ? ORDER BY id"
            for row_id, committed, count, blob in db.execute(query, (cursor,)):
                if rows and total + count > max_events:
                    break
                rows.append((row_id, committed, orjson.loads(blob)))
                total += count
            return rows

    def waiting(self, cursor: int) -> tuple[int, float | None]:
        """(events in rows after `cursor`, the earliest `received` among them)."""
        with self._read_lock:
            db = self._open_reader()
            if db is None:
                return 0, None
            count, oldest = db.execute(
                "SELECT sum(count), min(oldest) FROM inbox WHERE id > ?", (cursor,)
            ).fetchone()
            return int(count or 0), oldest

    def holds_contact(self, contact_id: str) -> bool:
        """Whether a row still in the inbox holds an event of `contact_id` (accepted, answered
        200, and not yet admitted into the store's `events`)."""
        needle = orjson.dumps(contact_id)  # (as `append` wrote it, inside each event's array)
        with self._read_lock:
            db = self._open_reader()
            if db is None:
                return False
            query = "SELECT events FROM inbox WHERE instr(events, ?) > 0"
            for (blob,) in db.execute(query, (needle,)):
                # (the text may also be a property's value: the event's own contact decides)
                if any(event[1] == contact_id for event in orjson.loads(blob)):
                    return True
            return False

    def forget(self, through: int) -> None:
        """Delete the rows up to `through` (admitted)."""
        with self._write_lock:
            db = self._open_writer()
            with _transaction(db):
                db.execute("DELETE FROM inbox WHERE id <= ?", (through,))

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            for db in (self._writer, self._reader):
                if db is not None:
                    db.close()
            self._writer = self._reader = None

    # ------------------------------------------------------------ the file

    def _open_writer(self) -> sqlite3.Connection:
        """The writing connection; the file and its tables are made when missing."""
        if self._writer is not None:
            return self._writer
        made = not self.path.exists()
        db = _connect(self.path)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with _transaction(db):
                for statement in SCHEMA:
                    db.execute(statement)
                db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('id', ?)", (uuid.uuid4().hex,)
                )
        except BaseException:
            db.close()
            raise
        if made:
            _sync_folder(self.path.parent)
        self._writer = db
        return db

    def _open_reader(self) -> sqlite3.Connection | None:
        """The reading connection; None while the file or its id is not there yet."""
        if self._reader is not None:
            return self._reader
        if not self.path.exists():
            return None
        db = _connect(self.path)
        try:
            found = db.execute("SELECT value FROM meta WHERE key = 'id'").fetchone()
        except sqlite3.OperationalError:  # (no table yet: the file is being made)
            found = None
        if found is None:
            db.close()
            return None
        self._id = found[0]
        self._reader = db
        return db


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA synchronous=FULL")  # as the store: a commit survives power loss
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return db


class _transaction:
    """`with _transaction(db):` BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: Any, *rest: Any) -> None:
        if kind is None:
            try:
                self.db.execute("COMMIT")
                return
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so a file just made in it survives a power loss."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def admitted_through(record: str | None, identity: str) -> int:
    """The last inbox row admitted, from the store's record; 0 for an inbox it has not read
    (none yet, or another file than the one it read)."""
    if not record:
        return 0
    found = orjson.loads(record)
    if found.get("inbox") != identity:
        return 0
    return int(found["admitted"])


def waiting_in(database: str) -> int:
    """Events in the inbox beside the SQLite store `database` that the store has not
    admitted yet (0 without an inbox), read without writing: for programs that watch a
    running daemon's files (tests, benchmarks)."""
    inbox = Inbox(inbox_path(database))
    try:
        identity = inbox.identity()
        if identity is None:
            return 0
        store = sqlite3.connect(f"file:{Path(database).expanduser()}?mode=ro", uri=True, timeout=30)
        try:
            record = store.execute("SELECT value FROM meta WHERE key = ?", (RECORD,)).fetchone()
        finally:
            store.close()
        return inbox.waiting(admitted_through(record[0] if record else None, identity))[0]
    finally:
        inbox.close()
