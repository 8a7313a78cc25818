"""Serve's store on SQLAlchemy (async Core): every query serve makes, and nowhere else.

SQLite (through aiosqlite, WAL) by default, PostgreSQL (through asyncpg) with the same code.
The schema is brought up to date by Alembic at start-up (`open_store`). On SQLite writers
take turns on an asyncio lock, on one connection (or, for what a crash may lose, a second
one that does not fsync: `SqlStore.write`); readers use their own connections (WAL lets them
read while a write is in progress).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import math
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

import attrs
import orjson
from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Text,
    and_,
    any_,
    bindparam,
    delete,
    event,
    func,
    insert,
    inspect,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from leadlang.runtime.delivery.outbox import OTHER_CHANNELS, Delivery
from leadlang.runtime.group_commit import settle
from leadlang.runtime.store import schema as s
from leadlang.runtime.store.inbox import RECORD, Inbox, admitted_through, inbox_path

T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"
DEDUP_SECONDS = 24 * 3600.0
ADMIT_EVENTS = 20_000  # events moved from the inbox into `events` per transaction, about
INSERT_EVENTS = "INSERT INTO events (contact, t, received, body) VALUES (?, ?, ?, ?)"
# the `meta` rows of the program every daemon runs (`publish_program`)
PROGRAM = "program"
PROGRAM_GENERATION = "program_generation"
WRITE_LOCK_PATIENCE = 60.0  # seconds a writer waits for another process's SQLite write lock
# PostgreSQL: a round's claims (see `SqlStore._claim`) end with its transaction; one left idle
# this long (a processor frozen, its host unreachable) is ended by the database, claims and all.
CLAIM_LEASE = 60.0
CLAIM_WINDOWS = 4  # windows read at most, per source (due timers, pending events)
# (written out, not a parameter: a prepared statement's generic plan can then still use the
# partial indexes on pending events)
_PENDING: Any = s.events.c.pending == literal_column("1")
_ONE_MORE_ATTEMPT: Any = s.outbox.c.attempts + 1  # (built once: it is set for every send)
_DB_NOW: Any = literal_column("extract(epoch from clock_timestamp())::float8")  # PostgreSQL's clock
_PG = postgresql.dialect()


def _any_of(keys: Sequence[str]) -> Any:
    """`= ANY($1::text[])` on PostgreSQL: one parameter, so one prepared statement and plan
    whatever the number of keys (an `IN` list of 500 parameters was planned again and again)."""
    return any_(literal(list(keys), ARRAY(Text)))


EFFECT_COLUMNS = (
    "contact",
    "at",
    "kind",
    "k1",
    "k2",
    "sub",
    "flow",
    "action",
    "step",
    "arm",
    "body",
)
CONTACT_COLUMNS = ("id", "state", "wake", "clock", "rank_t", "rank_id", "updated")
POSITION_COLUMNS = ("contact", "flow", "version", "step", "waiting_until")
OUTBOX_COLUMNS = (
    "key",
    "contact",
    "flow",
    "message",
    "channel",
    "at",
    "recipient",
    "content",
    "status",
    "attempts",
    "next_attempt",
    "lease_until",
    "last_error",
    "created",
    "delivered",
)


class StoreError(Exception):
    """The store cannot be opened or used (a bad URL, an unreachable server)."""


def database_url(url: str) -> str:
    """`sqlite:///x.db` and `postgresql://...` with the async drivers serve uses."""
    if url.startswith("sqlite:"):
        url = "sqlite+aiosqlite:" + url.removeprefix("sqlite:")
    elif url.startswith(("postgresql:", "postgres:")):
        url = "postgresql+asyncpg:" + url.split(":", 1)[1]
    return url


def describe_url(url: str) -> str:
    """The store's URL as printed: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


class Incoming(NamedTuple):
    """An accepted event about to be stored (a tuple: the inbox keeps it as a JSON array)."""

    message_id: str | None
    contact: str
    t: float
    received: float
    body: str


class Pending(NamedTuple):
    """A stored event not yet run through the engine (a tuple: made for every event read)."""

    id: int
    contact: str
    t: float
    body: str


@attrs.frozen
class ContactRow:
    id: str
    state: str | None  # None: a contact seen for the first time
    clock: float
    rank_t: float
    rank_id: int
    updated: float | None = None  # as read: the write checks nobody wrote it meanwhile


class RoundConflict(Exception):
    """Another processor wrote some of the round's contacts or events since they were read:
    the round is rolled back, and run again from a fresh read."""


@attrs.define
class RoundResult:
    """What one processing round writes, all in the round's transaction."""

    contacts: list[dict[str, Any]] = attrs.field(factory=list)  # id, state, wake, clock, rank_*
    processed: list[int] = attrs.field(factory=list)  # event ids
    failed: list[int] = attrs.field(factory=list)  # event ids the engine could not process
    parked: list[str] = attrs.field(factory=list)  # contacts whose timers stop (see processor)
    effects: list[dict[str, Any]] = attrs.field(factory=list)
    outbox: list[dict[str, Any]] = attrs.field(factory=list)
    positions: list[dict[str, Any]] = attrs.field(factory=list)
    # (flow, version) some contacts are on that the engine has not loaded: not run this round
    unknown: set[tuple[str, str]] = attrs.field(factory=set)


class SqlStore:
    def __init__(
        self,
        engine: AsyncEngine,
        writer: AsyncEngine | None = None,
    ) -> None:
        self.engine = engine  # reads
        self.writer = writer or engine  # write transactions (on SQLite: BEGIN IMMEDIATE)
        self.sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock()
        self._marks: list[tuple[str, dict[str, Any], asyncio.Future[None]]] = []
        self._marking = False
        # SQLite's one daemon keeps the leases of its outbox claims here (key -> until), not
        # in the file: a claim is then a read, which never waits for SQLite's one write lock
        # (see `claim_outbox`). PostgreSQL's daemons share theirs in `outbox.lease_until`.
        self._leases: dict[str, float] = {}
        self._alone = -1  # (the file descriptor holding `use_alone`'s lock)
        # a SQLite file's inbox (`open_store`), where ingest appends (see `accept`, `admit`)
        self.inbox: Inbox | None = None
        self._inbox_forgotten = 0  # inbox rows up to this one are deleted

    # ------------------------------------------------------------------ set-up

    def use_alone(self) -> None:
        """On SQLite, which one daemon uses, make sure no other daemon uses this file: an
        exclusive `flock` of the database file, held until `close` (or the process's end,
        `kill -9` included). Raises StoreError when another daemon holds it. (SQLite's own
        locks are POSIX record locks, which a `flock` does not touch.)"""
        database = self.engine.url.database
        if not self.sqlite or not database:
            return
        fd = os.open(database, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"another `leadlang serve` is using {database}: a SQLite store is for one "
                "daemon (several daemons share a PostgreSQL database)"
            ) from None
        self._alone = fd

    async def close(self) -> None:
        if self.inbox is not None:
            self.inbox.close()
        if self._alone >= 0:
            os.close(self._alone)
            self._alone = -1
        await self.engine.dispose()
        if self.writer is not self.engine:
            await self.writer.dispose()

    def write(self) -> _Write:
        """`async with store.write() as conn:` one write transaction (on SQLite, one at a time)."""
        return _Write(self)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(select(1))
            return True
        except Exception:
            return False

    async def credential(self, key: str, given: str | None) -> tuple[str, bool]:
        """The credential `key` (write key, admin token, secret): `given` (from the config)
        when set, else the stored one, else a new random one, stored; and whether it was
        generated now (so it is printed once)."""
        if given:
            return given, False
        async with self.write() as conn:
            row = (await conn.execute(select(s.meta.c.value).where(s.meta.c.key == key))).first()
            if row is not None:
                return row[0], False
            value = secrets.token_urlsafe(24)
            await conn.execute(insert(s.meta).values(key=key, value=value))
            return value, True

    # ------------------------------------------------------------------ ingest

    async def accept(self, batches: Sequence[Sequence[Incoming]], now: float) -> None:
        """Store the events of several requests in one transaction (group commit). An event
        whose `messageId` was seen in the last 24 hours (or earlier in these requests) is
        not stored again.

        On SQLite (always a file, with its inbox: `open_store`) the events are appended to
        the inbox (`inbox.py`) as one row, and the back end admits them into `events`
        (`admit`), the `messageId` check included. On PostgreSQL this is the hot path of
        ingest, so it speaks the driver's SQL directly: one upsert per 5,000 `messageId`s
        says which are new (or last seen over 24 hours ago), and one `executemany` stores the
        events."""
        if self.inbox is not None:
            events = [event for batch in batches for event in batch]
            await asyncio.to_thread(self.inbox.append, events, now)
            return
        upserts = self._seen_upserts(batches, now)
        async with self.write() as conn:
            new: set[str] = set()
            for sql, params in upserts:
                new.update(row[0] for row in await conn.exec_driver_sql(sql, params))
            rows = _new_events(batches, new)
            if rows:
                await conn.exec_driver_sql(self._sql(INSERT_EVENTS), rows)

    def _seen_upserts(
        self, batches: Sequence[Sequence[Sequence[Any]]], now: float
    ) -> list[tuple[str, tuple[Any, ...]]]:
        """The statements that record the events' `messageId`s as seen at `now` and return
        those that are new (not seen in the 24 hours before)."""
        fresh: dict[str, float] = {}
        for batch in batches:
            for message_id, _, _, received, _ in batch:
                if message_id and message_id not in fresh:
                    fresh[message_id] = received
        upserts: list[tuple[str, tuple[Any, ...]]] = []
        for chunk in _chunks(list(fresh.items()), 5000):
            sql = self._sql(
                "INSERT INTO seen_messages (message_id, received) VALUES "
                + ",".join(["(?, ?)"] * len(chunk))
                + " ON CONFLICT (message_id) DO UPDATE SET received = excluded.received"
                " WHERE seen_messages.received < ? RETURNING message_id"
            )
            upserts.append(
                (sql, (*(value for pair in chunk for value in pair), now - DEDUP_SECONDS))
            )
        return upserts

    async def admit(self, max_events: int = ADMIT_EVENTS) -> int:
        """Move the inbox's next rows (about `max_events` events, at least one row) into
        `events`, in one transaction that also records how far the inbox has been read, then
        delete them from the inbox. Each row's `messageId`s are checked as `accept` checks
        them, at the instant ingest committed the row. Returns the number of events read
        from the inbox (0: nothing new; always 0 without an inbox)."""
        inbox = self.inbox
        if inbox is None:
            return 0
        if await asyncio.to_thread(inbox.identity) is None:  # (ingest has not made it yet)
            return 0
        async with self.write() as conn:
            read, through = await in_sqlite_thread(
                conn, _admit_sqlite, inbox, max_events, self._seen_upserts
            )
        if through > self._inbox_forgotten:
            await asyncio.to_thread(inbox.forget, through)
            self._inbox_forgotten = through
        return read

    async def admit_all(self) -> int:
        """`admit` until the inbox has nothing new; the number of events read."""
        total = 0
        while moved := await self.admit():
            total += moved
        return total

    async def inbox_waiting(self) -> tuple[int, float | None]:
        """(events in the inbox not yet admitted, the earliest time one was received)."""
        inbox = self.inbox
        if inbox is None:
            return 0, None
        identity = await asyncio.to_thread(inbox.identity)
        if identity is None:
            return 0, None
        async with self.engine.connect() as conn:
            record = (
                await conn.execute(select(s.meta.c.value).where(s.meta.c.key == RECORD))
            ).scalar()
        return await asyncio.to_thread(inbox.waiting, admitted_through(record, identity))

    async def backlog(self) -> int:
        """About how many accepted events wait to be processed, in a few index lookups
        whatever their number: those in the inbox, and the ids from the oldest pending event
        to the newest accepted (an upper bound: events already processed between them count)."""
        waiting, _ = await self.inbox_waiting()  # (the inbox first, as in `counts`)
        ev = s.events
        async with self.engine.connect() as conn:
            first = (
                await conn.execute(select(func.min(ev.c.id)).where(ev.c.pending == 1))
            ).scalar()
            if first is None:
                return waiting
            last = (await conn.execute(select(func.max(ev.c.id)))).scalar()
        return waiting + int(last) - int(first) + 1

    def _sql(self, text: str) -> str:
        """Driver SQL written with `?` placeholders, in the driver's own style."""
        if self.sqlite:
            return text
        parts = text.split("?")
        return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], start=1)) + parts[-1]

    async def forget_seen(self, before: float) -> int:
        """Drop `messageId`s older than the deduplication window."""
        async with self.write() as conn:
            result = await conn.execute(
                delete(s.seen_messages).where(s.seen_messages.c.received < before)
            )
            return int(result.rowcount or 0)

    # ------------------------------------------------------------------ processing

    async def load_round(
        self,
        conn: AsyncConnection,
        now: float,
        limit: int,
        max_events: int,
        busy: Collection[str] = (),
    ) -> tuple[list[ContactRow], dict[str, list[Pending]], dict[str, bool]]:
        """The work of one processing round, read on `conn`: up to `limit` contacts that have
        pending events or a timer due by `now` (earliest timers, then oldest events first),
        their state, and their pending events in time order (at most `max_events` in all: a
        contact with more than that alone gets its first `max_events`, and is marked in the
        third result, cut). Contacts in `busy` (the processor's round still being written) are
        left for a later round.

        On PostgreSQL the contacts are claimed first (`_claim`), in `conn`'s transaction, so
        concurrent processors read disjoint contacts, and everything about them is read after
        the claim. On SQLite one processor runs: what it reads stays true until it writes
        (ingest only adds events; one that arrives meanwhile waits for the next round)."""
        names = await (
            self._unclaimed(conn, now, limit, busy)
            if self.sqlite
            else self._claim(conn, now, limit, busy)
        )
        if not names:
            return [], {}, {}
        counts: dict[str, int] = {}
        rows: dict[str, ContactRow] = {}
        due: set[str] = set()
        # (driver SQL, rows as plain tuples: these read every contact and event processed)
        for chunk in _chunks(names, 500):
            among, params = self._among("contact", chunk)
            counted: Any = await conn.exec_driver_sql(
                self._sql(
                    f"SELECT contact, count(*) FROM events WHERE pending = 1 AND {among}"
                    " GROUP BY contact"
                ),
                params,
            )
            counts.update((r[0], int(r[1])) for r in counted)
            among, params = self._among("id", chunk)
            found: Any = await conn.exec_driver_sql(
                self._sql(
                    "SELECT id, state, clock, rank_t, rank_id, updated, wake FROM contacts"
                    f" WHERE {among}"
                ),
                params,
            )
            for r in found:
                rows[r[0]] = ContactRow(r[0], r[1], r[2], r[3], r[4], r[5])
                if r[6] is not None and r[6] <= now:
                    due.add(r[0])
        chosen: list[str] = []
        cut: dict[str, bool] = {}
        budget = max_events
        for name in names:
            n = counts.get(name, 0)
            if not n and name not in due:
                continue  # another processor ran it between our reading and our claim
            if n > budget:
                if not chosen:  # alone over the budget: its first events
                    chosen.append(name)
                    cut[name] = True
                break
            chosen.append(name)
            budget -= n
        pending: dict[str, list[Pending]] = {}
        with_events = [name for name in chosen if counts.get(name)]
        for chunk in _chunks(with_events, 500):
            among, params = self._among("contact", chunk)
            sql = (
                f"SELECT id, contact, t, body FROM events WHERE pending = 1 AND {among}"
                " ORDER BY contact, t, id" + (f" LIMIT {int(max_events)}" if cut else "")
            )
            found_events: Any = await conn.exec_driver_sql(self._sql(sql), params)
            for r in found_events:
                pending.setdefault(r[1], []).append(Pending(r[0], r[1], r[2], r[3]))
        contacts = [rows.get(name) or ContactRow(name, None, -math.inf, 0.0, 0) for name in chosen]
        return contacts, pending, cut

    def _among(self, column: str, names: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
        """`column` is one of `names`: SQL with `?` and its parameters (on PostgreSQL one
        array: one parameter, one plan, whatever the number of names)."""
        if self.sqlite:
            return f"{column} IN ({', '.join(['?'] * len(names))})", tuple(names)
        return f"{column} = ANY(?::text[])", (list(names),)

    async def _unclaimed(
        self, conn: AsyncConnection, now: float, limit: int, busy: Collection[str]
    ) -> list[str]:
        """Up to `limit` contacts with work, not in `busy`, earliest timers first, then oldest
        events (the one processor's pick: nothing to claim from)."""
        due_query = select(s.contacts.c.id).where(s.contacts.c.wake <= now)
        queued_query = select(s.events.c.contact).where(_PENDING)
        if busy:
            due_query = due_query.where(s.contacts.c.id.not_in(list(busy)))
            queued_query = queued_query.where(s.events.c.contact.not_in(list(busy)))
        due = await conn.execute(due_query.order_by(s.contacts.c.wake).limit(limit))
        ids: dict[str, None] = dict.fromkeys(row[0] for row in due)
        if len(ids) < limit:
            queued = await conn.execute(queued_query.order_by(s.events.c.id).limit(limit * 4))
            for row in queued:
                ids.setdefault(row[0], None)
                if len(ids) >= limit:
                    break
        return list(ids)

    async def _claim(
        self, conn: AsyncConnection, now: float, limit: int, busy: Collection[str]
    ) -> list[str]:
        """Claim up to `limit` contacts with work for `conn`'s transaction (PostgreSQL): in the
        order `_unclaimed` reads them, each one whose transaction-level advisory lock (keyed
        by a 64-bit hash of its id) no other transaction holds. A lock needs no row, so a
        contact seen for the first time (only pending events) is claimed like any other; the
        database drops the locks when the transaction ends, commit, rollback or a lost
        connection (a killed daemon's claims are free at once), and a processor that stops
        answering loses them after `CLAIM_LEASE` idle seconds (see `ClaimedRound`).
        Candidates are read a window at a time, past those other processors hold, for at
        most `CLAIM_WINDOWS` windows a source. Those in `busy` are not tried (their round,
        still being written, holds their locks anyway)."""
        claimed: list[str] = []
        tried: set[str] = set(busy)
        c, ev = s.contacts.c, s.events.c
        # (a due contact is one row, a contact with pending events has several: their windows
        # are twice and four times the round's size)
        sources = (
            (select(c.id).where(c.wake <= now).order_by(c.wake), None, limit * 2),
            (select(ev.contact, ev.id).where(_PENDING).order_by(ev.id), ev.id, limit * 4),
        )
        for source, key, window in sources:
            last: Any = None
            for step in range(CLAIM_WINDOWS):
                if len(claimed) >= limit:
                    return claimed
                # pending events: each window starts after the last id read (an offset would
                # read again every row before it: another processor's contacts, mostly); due
                # timers: at an offset, in wake order only (ordered by wake and id, the many
                # timers due at one instant would all be sorted for each window)
                if key is None:
                    query = source.offset(step * window)
                else:
                    query = source.where(key > last) if last is not None else source
                rows = (await conn.execute(query.limit(window))).all()
                if rows and key is not None:
                    last = rows[-1][1]
                fresh = [name for name in dict.fromkeys(r[0] for r in rows) if name not in tried]
                tried.update(fresh)
                if fresh:
                    # (the scan stops at the LIMIT: no lock is taken past the last one needed)
                    locked = await conn.exec_driver_sql(
                        "SELECT c FROM unnest($1::text[]) AS c"
                        " WHERE pg_try_advisory_xact_lock(hashtextextended(c, 0)) LIMIT $2",
                        (fresh, limit - len(claimed)),
                    )
                    claimed += [r[0] for r in locked]
                if len(rows) < window:
                    break
        return claimed

    def claim_round(
        self, now: float, limit: int, max_events: int, busy: Collection[str] = ()
    ) -> ClaimedRound:
        """`async with store.claim_round(...) as work:` the work of one round (`load_round`),
        held until `await work.save(result)` writes it, or the block ends without it."""
        return ClaimedRound(self, now, limit, max_events, busy)

    async def save_round(self, result: RoundResult) -> None:
        """Write what a round decided, in one transaction (SQLite's: see `ClaimedRound`)."""
        try:
            async with self.write() as conn:
                await self._write_round(conn, result)
        except IntegrityError as exc:  # another processor created one of its contacts first
            raise RoundConflict(str(exc)) from exc

    async def _write_round(self, conn: AsyncConnection, r: RoundResult) -> None:
        """Write a round, first checking that what it read still stands (its events still
        pending, its contacts not written since): two processors that read the same work
        cannot both write it (RoundConflict rolls the second back). Under PostgreSQL's claims
        no two rounds read the same contact; the check is the net should a claim be lost."""
        if not self.sqlite:
            await self._write_round_arrays(conn, r)
            return
        await in_sqlite_thread(conn, _write_round_sqlite, r)

    async def _write_round_arrays(self, conn: AsyncConnection, r: RoundResult) -> None:
        """`_write_round` on PostgreSQL: the same checks and rows, each table's rows in one
        statement over arrays (`unnest`), so a round of 500 contacts costs its database a few
        statements, not one per row."""

        async def run(sql: str, *params: Any) -> Any:
            return await conn.exec_driver_sql(sql, params)

        for ids, state in ((r.processed, 0), (r.failed, 2)):
            if ids:
                done = await run(
                    "UPDATE events SET pending = $1 WHERE id = ANY($2::bigint[]) AND pending = 1",
                    state,
                    ids,
                )
                if done.rowcount != len(ids):
                    raise RoundConflict("events already processed")
        if r.contacts:
            names = [row["id"] for row in r.contacts]
            fresh = [row for row in r.contacts if row["expected"] is None]
            known = [row for row in r.contacts if row["expected"] is not None]
            if fresh:  # (one written meanwhile: a duplicate key, a RoundConflict)
                await run(
                    "INSERT INTO contacts (id, state, wake, clock, rank_t, rank_id, updated)"
                    " SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[],"
                    " $5::float8[], $6::bigint[], $7::float8[])",
                    *_columns(fresh, CONTACT_COLUMNS),
                )
            if known:
                # compare and set: a row written since it was read is not matched (the
                # update reads each row's latest version under its row lock)
                done = await run(
                    "UPDATE contacts AS c SET state = u.state, wake = u.wake, clock = u.clock,"
                    " updated = u.updated FROM unnest($1::text[], $2::text[], $3::float8[],"
                    " $4::float8[], $5::float8[], $6::float8[])"
                    " AS u(id, state, wake, clock, updated, expected)"
                    " WHERE c.id = u.id AND c.updated = u.expected",
                    *_columns(known, ("id", "state", "wake", "clock", "updated", "expected")),
                )
                if done.rowcount != len(known):
                    raise RoundConflict("contacts written meanwhile")
            await run("DELETE FROM positions WHERE contact = ANY($1::text[])", names)
        if r.parked:
            await run("UPDATE contacts SET wake = NULL WHERE id = ANY($1::text[])", r.parked)
        if r.positions:
            await run(
                "INSERT INTO positions (contact, flow, version, step, waiting_until)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
                " $5::float8[])",
                *_columns(r.positions, ("contact", "flow", "version", "step", "waiting_until")),
            )
        if r.outbox:
            await run(
                f"INSERT INTO outbox ({', '.join(OUTBOX_COLUMNS)}) SELECT * FROM unnest("
                "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
                " $7::text[], $8::text[], $9::text[], $10::int4[], $11::float8[],"
                " $12::float8[], $13::text[], $14::float8[], $15::float8[])"
                " ON CONFLICT (key) DO NOTHING",
                *_columns(r.outbox, OUTBOX_COLUMNS),
            )
        if r.effects:
            # The ledger is paged by effect id (`effects_after`: a cursor). Rounds of several
            # processors write side by side, so ids taken in one order could be committed in
            # another, and a reader's cursor pass a round still committing. Each round takes
            # its ids under this lock in shared mode, held until its commit (the insert is its
            # last statement): rounds never wait for each other, and a reader, who takes it
            # exclusively, reads once every id taken before it is committed (or rolled back).
            await run(f"SELECT pg_advisory_xact_lock_shared({LEDGER_LOCK}, 0)")
            await run(
                f"INSERT INTO effects ({', '.join(EFFECT_COLUMNS)}) SELECT * FROM unnest("
                "$1::text[], $2::float8[], $3::int2[], $4::float8[], $5::bigint[], $6::int4[],"
                " $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])",
                *_columns(r.effects, EFFECT_COLUMNS),
            )

    async def next_wake(self) -> float | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.min(s.contacts.c.wake)))).scalar()

    # ------------------------------------------------------------------ programs

    async def publish_program(
        self, program: str, flows: Iterable[tuple[str, str, str]], now: float
    ) -> int:
        """Make `program` (the IR as JSON) the one every daemon of this store runs, keeping
        the IR of each of its flow versions `(flow, version, ir)`, in one transaction;
        returns its generation (1, 2, ...: one more than the program it replaces)."""
        for attempt in range(3):
            try:
                return await self._publish(program, list(flows), now)
            except IntegrityError:  # two daemons stored the same new row at once: again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _publish(self, program: str, flows: list[tuple[str, str, str]], now: float) -> int:
        m, v = s.meta.c, s.flow_versions.c
        async with self.write() as conn:
            query = select(m.value).where(m.key == PROGRAM_GENERATION)
            if not self.sqlite:
                query = query.with_for_update()  # two daemons publishing take turns
            generation = int((await conn.execute(query)).scalar() or 0) + 1
            for flow, version, ir in flows:
                where = and_(v.flow == flow, v.version == version)
                if (await conn.execute(select(v.version).where(where))).first() is None:
                    await conn.execute(
                        insert(s.flow_versions).values(
                            flow=flow, version=version, ir=ir, loaded=now
                        )
                    )
            for key, value in ((PROGRAM, program), (PROGRAM_GENERATION, str(generation))):
                done = await conn.execute(update(s.meta).where(m.key == key).values(value=value))
                if not done.rowcount:
                    await conn.execute(insert(s.meta).values(key=key, value=value))
            return generation

    async def program_generation(self) -> int:
        """The generation of the program last published (0: none yet)."""
        async with self.engine.connect() as conn:
            return await _generation(conn)

    async def current_program(self) -> tuple[int, str | None]:
        """The program last published, as JSON, with its generation (0, None: none yet)."""
        async with self.engine.connect() as conn:
            return await _program(conn)

    async def flow_version_irs(
        self, wanted: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """The stored IR (JSON) of each wanted `(flow, version)` that is kept."""
        v = s.flow_versions.c
        found: dict[tuple[str, str], str] = {}
        async with self.engine.connect() as conn:
            for flow, version in set(wanted):
                ir = (
                    await conn.execute(
                        select(v.ir).where(and_(v.flow == flow, v.version == version))
                    )
                ).scalar()
                if ir is not None:
                    found[(flow, version)] = ir
        return found

    # ------------------------------------------------------------------ outbox

    async def claim_outbox(
        self, now: float, limit: int, lease: float, rooms: Mapping[str, int] | None = None
    ) -> list[Delivery]:
        """Claim due deliveries, up to `limit` of each channel when `rooms` is given (and at
        most `rooms[channel]` of it: a busy channel never holds another back), else up to
        `limit` in all, under a
        lease of `lease` seconds. On PostgreSQL, where several daemons claim, the rows are
        taken `FOR UPDATE SKIP LOCKED` and the database's clock sets and reads the leases (a
        daemon's clock that runs behind cannot take a row whose lease still runs). On
        SQLite, which one daemon uses, its leases are kept in memory against its own clock:
        the claim only reads, so it never waits behind the processing rounds' and ingest's
        writes for SQLite's one write lock (a claim that wrote its leases waited there
        100-700 ms under load, one delivery cycle after another: docs/performance.md)."""
        o = s.outbox
        clock: Any = now if self.sqlite else _DB_NOW
        due = and_(
            o.c.status == "pending",
            o.c.next_attempt <= now,
            or_(o.c.lease_until.is_(None), o.c.lease_until <= clock),
        )
        if self.sqlite:
            self._leases = {key: until for key, until in self._leases.items() if until > now}
            if self._leases:
                due = and_(due, o.c.key.not_in(list(self._leases)))
            async with self.engine.connect() as conn:
                rows = await _due_rows(conn, due, limit, rooms, lock=False)
            for row in rows:
                self._leases[row["key"]] = now + lease
        else:
            async with self.write() as conn:
                rows = await _due_rows(conn, due, limit, rooms, lock=True)
                if rows:
                    await conn.execute(
                        update(o)
                        .where(o.c.key == _any_of([r["key"] for r in rows]))
                        .values(lease_until=clock + lease)
                    )
        return [
            Delivery(
                key=r["key"],
                contact=r["contact"],
                flow=r["flow"],
                message=r["message"],
                channel=r["channel"],
                at=r["at"],
                to=r["recipient"],
                content=orjson.loads(r["content"]),
                attempts=r["attempts"],
            )
            for r in rows
        ]

    async def outbox_sent(self, key: str, now: float) -> None:
        await self._outbox_set(
            key, status="sent", delivered=now, lease_until=None, attempts=_ONE_MORE_ATTEMPT
        )

    async def outbox_retry(self, key: str, attempts: int, next_attempt: float, error: str) -> None:
        await self._outbox_set(
            key, attempts=attempts, next_attempt=next_attempt, last_error=error, lease_until=None
        )

    async def outbox_dead(self, key: str, attempts: int, error: str) -> None:
        await self._outbox_set(
            key, status="dead", attempts=attempts, last_error=error, lease_until=None
        )

    async def renew_outbox_leases(self, keys: Sequence[str], now: float, lease: float) -> None:
        """Extend the leases of deliveries still being attempted (or waiting for a slot)
        here, so that a short lease can cover a long wait: a killed daemon's rows come back
        to the others as soon as its last renewal runs out (on the clock the claims use: the
        database's on PostgreSQL)."""
        if self.sqlite:
            for key in keys:
                if key in self._leases:
                    self._leases[key] = now + lease
            return
        o = s.outbox
        async with self.write() as conn:
            for chunk in _chunks(keys, 500):
                await conn.execute(
                    update(o)
                    .where(and_(o.c.key == _any_of(chunk), o.c.status == "pending"))
                    .values(lease_until=_DB_NOW + lease)
                )

    async def _outbox_set(self, key: str, **values: Any) -> None:
        """Record a delivery's outcome. Outcomes that arrive together are written in one
        transaction (each commit costs an fsync: one per delivery would cap delivery at a
        few hundred a second and keep ingest waiting for the write lock)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._marks.append((key, values, future))
        if not self._marking:
            self._marking = True
            try:
                while self._marks:
                    await asyncio.sleep(0)  # let the outcomes arriving now join this commit
                    batch, self._marks = self._marks, []
                    await settle(self._write_marks(batch), [f for _, _, f in batch])
            finally:
                self._marking = False
        await future

    async def _write_marks(
        self, batch: list[tuple[str, dict[str, Any], asyncio.Future[None]]]
    ) -> None:
        # one statement per kind of outcome: on PostgreSQL over arrays, on SQLite its rows as
        # one executemany (a statement per row was a round trip to the driver's thread each:
        # 2 ms a row under load)
        kinds: dict[tuple[tuple[str, bool], ...], list[tuple[str, dict[str, Any]]]] = {}
        for key, values, _ in batch:
            kind = tuple(sorted((n, isinstance(v, ColumnElement)) for n, v in values.items()))
            kinds.setdefault(kind, []).append((key, values))
        async with self.write() as conn:
            for kind, marks in kinds.items():
                if not self.sqlite:
                    await conn.exec_driver_sql(*_marks_by_arrays(kind, marks))
                    continue
                names = [n for n, _ in kind]
                plain = [n for n, expression in kind if not expression]
                statement = (
                    update(s.outbox)
                    .where(s.outbox.c.key == bindparam("mark_key"))
                    .values(
                        {n: bindparam(f"mark_{n}") if n in plain else marks[0][1][n] for n in names}
                    )
                )
                rows = [
                    {"mark_key": key, **{f"mark_{n}": values[n] for n in plain}}
                    for key, values in marks
                ]
                await conn.execute(statement, rows)
        for key, _, _ in batch:  # (every outcome ends its row's lease)
            self._leases.pop(key, None)

    async def release_leases(self) -> int:
        """Free every claimed delivery (at start-up on SQLite, which one daemon uses: the
        daemon that claimed them is gone). On PostgreSQL other daemons may hold live claims:
        a dead daemon's claims come back when their leases run out."""
        if not self.sqlite:
            return 0
        self._leases.clear()
        o = s.outbox
        async with self.write() as conn:  # (the leases of versions that kept them here)
            done = await conn.execute(
                update(o)
                .where(and_(o.c.status == "pending", o.c.lease_until.is_not(None)))
                .values(lease_until=None)
            )
            return int(done.rowcount or 0)

    async def outbox_requeue(self, keys: Sequence[str] | None, now: float) -> list[str]:
        """Put dead rows (those of `keys`, or all when None) back to pending, due now, with
        their attempts counted afresh; returns their keys."""
        o = s.outbox
        # (a message that could not be rendered has nothing to deliver: not queued again)
        query = update(o).where(
            and_(o.c.status == "dead", ~o.c.last_error.startswith("render failed"))
        )
        if keys is not None:
            query = query.where(o.c.key.in_(list(keys)))
        async with self.write() as conn:
            done = await conn.execute(
                query.values(
                    status="pending", attempts=0, next_attempt=now, lease_until=None
                ).returning(o.c.key)
            )
            return [r[0] for r in done]

    async def outbox_rows(
        self, status: str | None, limit: int, after: tuple[float, str] | None = None
    ) -> list[dict[str, Any]]:
        """Outbox rows oldest first (by `created`, then `key`), those after `after` (the
        `created` and `key` of the last row of the page before) when given."""
        o = s.outbox
        query = select(
            o.c.key,
            o.c.contact,
            o.c.flow,
            o.c.message,
            o.c.channel,
            o.c.at,
            o.c.status,
            o.c.attempts,
            o.c.last_error,
            o.c.next_attempt,
            o.c.delivered,
            o.c.created,
        ).order_by(o.c.created, o.c.key)
        if status:
            query = query.where(o.c.status == status)
        if after is not None:
            query = query.where(tuple_(o.c.created, o.c.key) > tuple_(*after))
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query.limit(limit))).mappings()]

    # ------------------------------------------------------------------ reading

    async def effects_after(
        self, after: int, limit: int, contact: str | None = None
    ) -> list[tuple[int, str]]:
        """(id, JSON line) of ledger entries after `after`, in commit order."""
        e = s.effects
        query = select(e.c.id, e.c.body).where(e.c.id > after)
        if contact is not None:
            query = query.where(e.c.contact == contact)
        async with self.engine.begin() as conn:
            if not self.sqlite:  # (see `_write_round_arrays`: no round still committing)
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LEDGER_LOCK}, 0)")
            rows = await conn.execute(query.order_by(e.c.id).limit(limit))
            return [(r[0], r[1]) for r in rows]

    async def effects_in_order(self, contact: str | None = None) -> list[str]:
        """The whole ledger in simulate's order (instant; time-driven before events; ...)."""
        async with self.engine.connect() as conn:
            return [r[0] for r in await conn.execute(_in_order(contact))]

    async def ledger_and_cursor(self, contact: str | None = None) -> tuple[list[str], int]:
        """`effects_in_order` and the cursor to follow it with (`effects_after`), read
        together: every entry is either in the list or after the cursor, none in both. On
        PostgreSQL under the ledger lock (as `effects_after`), so no round still committing
        holds an id below the cursor."""
        e = s.effects
        async with self.engine.begin() as conn:
            if not self.sqlite:
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LEDGER_LOCK}, 0)")
            last = int((await conn.execute(select(func.max(e.c.id)))).scalar() or 0)
            rows = await conn.execute(_in_order(contact).where(e.c.id <= last))
            return [r[0] for r in rows], last

    async def contact(self, contact_id: str) -> tuple[str, list[str]] | None:
        """(state JSON, its 20 most recent effects) of a contact, None when never seen."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(s.contacts.c.state).where(s.contacts.c.id == contact_id))
            ).first()
            if row is None:
                return None
            recent = await conn.execute(
                select(s.effects.c.body)
                .where(s.effects.c.contact == contact_id)
                .order_by(s.effects.c.id.desc())
                .limit(20)
            )
            return row[0], [r[0] for r in recent][::-1]

    async def contact_known(self, contact_id: str) -> bool:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(s.events.c.id).where(s.events.c.contact == contact_id).limit(1)
                )
            ).first()
            return row is not None

    async def flow_stats(self, flow: str | None = None) -> dict[str, dict[str, Any]]:
        """Per flow: effects counted by action, split arms, and enrollments per step."""
        e, p = s.effects, s.positions
        stats: dict[str, dict[str, Any]] = {}

        def entry(name: str) -> dict[str, Any]:
            return stats.setdefault(name, {"actions": {}, "arms": {}, "steps": {}, "versions": {}})

        async with self.engine.connect() as conn:
            q1 = select(e.c.flow, e.c.action, func.count()).group_by(e.c.flow, e.c.action)
            q2 = (
                select(e.c.flow, e.c.step, e.c.arm, func.count())
                .where(e.c.action == "split")
                .group_by(e.c.flow, e.c.step, e.c.arm)
            )
            q3 = select(p.c.flow, p.c.step, func.count()).group_by(p.c.flow, p.c.step)
            q4 = select(p.c.flow, p.c.version, func.count()).group_by(p.c.flow, p.c.version)
            if flow is not None:
                q1, q2, q3, q4 = (
                    q1.where(e.c.flow == flow),
                    q2.where(e.c.flow == flow),
                    q3.where(p.c.flow == flow),
                    q4.where(p.c.flow == flow),
                )
            for name, action, n in await conn.execute(q1):
                if name is not None:
                    entry(name)["actions"][action] = n
            for name, step, arm, n in await conn.execute(q2):
                entry(name)["arms"].setdefault(step, {})[arm] = n
            for name, step, n in await conn.execute(q3):
                entry(name)["steps"][step or "(entering)"] = n
            for name, version, n in await conn.execute(q4):
                entry(name)["versions"][version] = n
        return stats

    async def histories(
        self, page: int = 200
    ) -> AsyncIterator[tuple[str, list[tuple[int, float, str, int]], list[str]]]:
        """Every contact's stored history, contact by contact (in contact id order), for
        `leadlang diff`'s replay: (contact, its events as (id, t, body, pending) in (t, id)
        order, its ledger bodies in simulate's order). Read `page` contacts at a time, so
        memory holds one page, each page from one snapshot of the database (its events and
        its effects agree even while a daemon writes). Reads only."""
        ev, ef = s.events, s.effects
        after: str | None = None
        while True:
            async with self.engine.connect() as conn:
                if self.sqlite:
                    await conn.exec_driver_sql("BEGIN")  # (a read transaction: one snapshot)
                else:
                    conn = await conn.execution_options(isolation_level="REPEATABLE READ")
                query = select(ev.c.contact).distinct().order_by(ev.c.contact).limit(page)
                if after is not None:
                    query = query.where(ev.c.contact > after)
                names = [r[0] for r in await conn.execute(query)]
                if not names:
                    return
                events: dict[str, list[tuple[int, float, str, int]]] = {}
                rows = await conn.execute(
                    select(ev.c.contact, ev.c.id, ev.c.t, ev.c.body, ev.c.pending)
                    .where(ev.c.contact.in_(names))
                    .order_by(ev.c.contact, ev.c.t, ev.c.id)
                )
                for r in rows:
                    events.setdefault(r[0], []).append((r[1], r[2], r[3], r[4]))
                ledger: dict[str, list[str]] = {}
                rows = await conn.execute(
                    select(ef.c.contact, ef.c.body)
                    .where(ef.c.contact.in_(names))
                    .order_by(ef.c.contact, ef.c.at, ef.c.kind, ef.c.k1, ef.c.k2, ef.c.sub, ef.c.id)
                )
                for r in rows:
                    ledger.setdefault(r[0], []).append(r[1])
            for name in names:
                yield name, events.get(name, []), ledger.get(name, [])
            after = names[-1]

    async def counts(self) -> dict[str, int]:
        """Rows per table, for the start-up summary and metrics (`pending_events`: those
        not yet run through the engine, in `events` and in the inbox)."""
        # (the inbox first: an event admitted after this read is in `events` by the next)
        waiting, _ = await self.inbox_waiting()
        async with self.engine.connect() as conn:
            out = {}
            out["contacts"] = int(
                (await conn.execute(select(func.count()).select_from(s.contacts))).scalar() or 0
            )
            # events are never deleted: the last id is their number, without a scan of history
            out["events"] = int((await conn.execute(select(func.max(s.events.c.id)))).scalar() or 0)
            out["pending_events"] = int(
                (
                    await conn.execute(
                        select(func.count()).select_from(s.events).where(s.events.c.pending == 1)
                    )
                ).scalar()
                or 0
            )
            out["pending_events"] += waiting
            for status in ("pending", "sent", "dead"):
                out[f"outbox_{status}"] = int(
                    (
                        await conn.execute(
                            select(func.count())
                            .select_from(s.outbox)
                            .where(s.outbox.c.status == status)
                        )
                    ).scalar()
                    or 0
                )
            return out

    async def metric_figures(
        self, now: float, flows: Sequence[str], late_after: float
    ) -> dict[str, Any]:
        """What `/metrics` reads from the store beyond `counts`, each from an index: when the
        oldest pending event was received, timers due (contacts whose wake is past) and late
        (past by more than `late_after` seconds) and the oldest wake, pending and dead sends
        per channel, and each flow's enter/exit/goal effects (one index range per flow)."""
        ev, c, o, e = s.events, s.contacts, s.outbox, s.effects
        out: dict[str, Any] = {}
        _, waiting_since = await self.inbox_waiting()  # (the inbox first, as in `counts`)
        async with self.engine.connect() as conn:
            oldest = (
                await conn.execute(
                    select(ev.c.received).where(ev.c.pending == 1).order_by(ev.c.id).limit(1)
                )
            ).scalar()
            if waiting_since is not None and (oldest is None or oldest > waiting_since):
                oldest = waiting_since
            out["oldest_pending_received"] = oldest
            out["oldest_wake"] = (await conn.execute(select(func.min(c.c.wake)))).scalar()
            for name, cutoff in (("timers_due", now), ("timers_late", now - late_after)):
                due = select(func.count()).select_from(c).where(c.c.wake <= cutoff)
                out[name] = int((await conn.execute(due)).scalar() or 0)
            sends: dict[tuple[str, str], int] = {}
            for status in ("pending", "dead"):
                query = (
                    select(o.c.channel, func.count())
                    .where(o.c.status == status)
                    .group_by(o.c.channel)
                )
                for channel, n in await conn.execute(query):
                    sends[(channel, status)] = int(n)
            out["sends"] = sends
            per_flow: dict[str, dict[str, int]] = {}
            for flow in flows:
                counted = (
                    select(e.c.action, func.count())
                    .where(e.c.flow == flow, e.c.action.in_(("enter", "exit", "goal")))
                    .group_by(e.c.action)
                )
                per_flow[flow] = {action: int(n) for action, n in await conn.execute(counted)}
            out["flows"] = per_flow
        return out


async def _due_rows(
    conn: AsyncConnection,
    due: Any,
    limit: int,
    rooms: Mapping[str, int] | None,
    lock: bool,
) -> list[Any]:
    """Outbox rows matching `due`: up to `limit` in all, or with `rooms`, up to `limit` and
    at most `rooms[channel]` of each channel, each channel in due order (`lock`: `FOR UPDATE
    SKIP LOCKED`, for PostgreSQL's claims)."""
    o = s.outbox
    if rooms is None:
        wanted: list[tuple[Any, int]] = [(due, limit)]
    else:
        # each channel read from outbox(status, channel, next_attempt) in due order; the
        # channels without a driver are found first (`_PENDING_CHANNELS`: a "channel NOT IN
        # (...)" read every pending row to find, mostly, none)
        others: list[str] = []
        if rooms.get(OTHER_CHANNELS, 0) > 0:
            found = await conn.exec_driver_sql(_PENDING_CHANNELS)
            others = [r[0] for r in found if r[0] not in rooms]
        wanted = [
            (
                and_(due, o.c.channel.in_(others))
                if channel == OTHER_CHANNELS
                else and_(due, o.c.channel == channel),
                min(room, limit),
            )
            for channel, room in rooms.items()
            if room > 0 and (channel != OTHER_CHANNELS or others)
        ]
    rows: list[Any] = []
    for where, count in wanted:
        query = select(o).where(where).order_by(o.c.next_attempt).limit(count)
        if lock:
            query = query.with_for_update(skip_locked=True)
        rows += (await conn.execute(query)).mappings().all()
    return rows


def _in_order(contact: str | None) -> Any:
    """The ledger's bodies (of one contact, if given) in simulate's order."""
    e = s.effects
    query = select(e.c.body).order_by(e.c.at, e.c.kind, e.c.k1, e.c.k2, e.c.sub, e.c.id)
    return query if contact is None else query.where(e.c.contact == contact)


# The channels of pending sends, one index seek each (a loose scan of
# outbox(status, channel, next_attempt)), in both SQLite's and PostgreSQL's SQL.
_PENDING_CHANNELS = """
WITH RECURSIVE channels(channel) AS (
    SELECT min(channel) FROM outbox WHERE status = 'pending'
    UNION ALL
    SELECT (SELECT min(o.channel) FROM outbox o WHERE o.status = 'pending' AND o.channel > c.channel)
    FROM channels c WHERE c.channel IS NOT NULL
)
SELECT channel FROM channels WHERE channel IS NOT NULL
"""


class ClaimedRound:
    """The work of one processing round and its claim: `rows`, `pending` and `cut` as
    `SqlStore.load_round` returns them, held until `save` writes what the round decided.

    On PostgreSQL the round is one transaction on a connection of its own: the claim (advisory
    locks), the reads, and after the engine has run, the write and the commit. The claims last
    as long as the transaction and no longer: a killed processor's connection closes and the
    database ends its transaction; one idle in it for `CLAIM_LEASE` seconds (the engine still
    running, or the process frozen) is ended by the database too
    (`idle_in_transaction_session_timeout`), so its write fails and cannot land after another
    processor took the contacts over. The write's own check (`_write_round`) stays as the net
    under both. On SQLite the one processor reads without a claim and writes in the store's
    write transaction."""

    def __init__(
        self,
        store: SqlStore,
        now: float,
        limit: int,
        max_events: int,
        busy: Collection[str] = (),
    ) -> None:
        self.store = store
        self.now, self.limit, self.max_events, self.busy = now, limit, max_events, busy
        self.rows: list[ContactRow] = []
        self.pending: dict[str, list[Pending]] = {}
        self.cut: dict[str, bool] = {}
        # the generation of the program published when the work was read (`publish_program`):
        # an event stored after a reload is run on the program of that reload or a later one
        self.generation = 0
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> ClaimedRound:
        store = self.store
        if store.sqlite:
            async with store.engine.connect() as conn:
                self.rows, self.pending, self.cut = await store.load_round(
                    conn, self.now, self.limit, self.max_events, self.busy
                )
                self.generation = await _generation(conn)  # (in the reads' snapshot)
            return self
        self._conn = conn = await store.writer.connect()
        try:
            await conn.begin()
            await conn.exec_driver_sql(
                f"SET LOCAL idle_in_transaction_session_timeout = {int(CLAIM_LEASE * 1000)}"
            )
            self.rows, self.pending, self.cut = await store.load_round(
                conn, self.now, self.limit, self.max_events, self.busy
            )
            # read after the round's work: a program published before an event it read was
            # committed is seen (a statement sees what was committed before it began)
            self.generation = await _generation(conn)
        except BaseException:
            await self._close()
            raise
        return self

    async def program(self) -> tuple[int, str | None]:
        """The program last published, with its generation (`SqlStore.current_program`), read
        on the round's own connection when it has one (so a pool of one connection will do)."""
        if self._conn is None:
            return await self.store.current_program()
        return await _program(self._conn)

    async def save(self, result: RoundResult) -> None:
        """Write the round (its contacts, events, effects, outbox rows) and end the claim."""
        conn = self._conn
        if conn is None:
            await self.store.save_round(result)
            return
        try:
            await self.store._write_round(conn, result)
            await conn.commit()
        except IntegrityError as exc:  # (cannot happen under a claim; kept as the net)
            raise RoundConflict(str(exc)) from exc
        finally:
            await self._close()

    async def __aexit__(self, *exc: Any) -> None:
        await self._close()  # without `save`: rolled back, the claims released

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()  # (rolls back what was not committed)
            except Exception:  # a connection the database ended: the pool drops it
                with contextlib.suppress(Exception):
                    await conn.invalidate()


class _Write:
    """A write transaction: on SQLite writers take turns (one writer is what SQLite allows;
    taking turns in-process avoids its busy waits), on PostgreSQL they run side by side."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._conn: Any = None

    async def __aenter__(self) -> AsyncConnection:
        if not self.store.sqlite:
            self._cm = self.store.writer.begin()
            return await self._cm.__aenter__()
        await self.store._write_lock.acquire()
        try:
            # Another process (serve's back end) may hold SQLite's write lock. The writer's
            # connection does not wait inside SQLite (its busy handler sleeps in steps of up to
            # 100 ms, so two processes would hand the lock over a few times a second): BEGIN
            # IMMEDIATE fails at once and is tried again here, soon, without blocking the loop.
            delay, waited = 0.0005, 0.0
            while True:
                self._cm = self.store.writer.begin()
                try:
                    conn = await self._cm.__aenter__()
                except OperationalError as exc:
                    if not _locked(exc) or waited > WRITE_LOCK_PATIENCE:
                        raise
                else:
                    break
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 0.005)
            return conn
        except BaseException:
            self.store._write_lock.release()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._cm.__aexit__(*exc)
        finally:
            if self.store.sqlite:
                self.store._write_lock.release()


def _columns(rows: list[dict[str, Any]], names: Sequence[str]) -> list[list[Any]]:
    """The rows as one list per column (the arrays of an `unnest`)."""
    return [[row[name] for row in rows] for name in names]


async def _generation(conn: AsyncConnection) -> int:
    m = s.meta.c
    found = (await conn.execute(select(m.value).where(m.key == PROGRAM_GENERATION))).scalar()
    return int(found or 0)


async def _program(conn: AsyncConnection) -> tuple[int, str | None]:
    m = s.meta.c
    query = select(m.key, m.value).where(m.key.in_([PROGRAM, PROGRAM_GENERATION]))
    rows = dict((await conn.execute(query)).all())
    return int(rows.get(PROGRAM_GENERATION) or 0), rows.get(PROGRAM)


def _marks_by_arrays(
    kind: tuple[tuple[str, bool], ...], marks: list[tuple[str, dict[str, Any]]]
) -> tuple[str, tuple[Any, ...]]:
    """One `UPDATE ... FROM unnest(...)` (SQL and parameters) writing every outcome of one
    kind: one statement and one execution whatever their number (an executemany executes
    the statement once a row)."""
    plain = [n for n, expression in kind if not expression]
    sets = [
        f"{n} = {marks[0][1][n].compile(dialect=_PG, compile_kwargs={'literal_binds': True})}"
        if expression
        else f"{n} = u.{n}"
        for n, expression in kind
    ]
    arrays = "".join(f", ${i + 2}::{_pg_type(n)}[]" for i, n in enumerate(plain))
    names = "".join(f", {n}" for n in plain)
    sql = (
        f"UPDATE outbox SET {', '.join(sets)} FROM unnest($1::text[]{arrays})"
        f" AS u(mark_key{names}) WHERE outbox.key = u.mark_key"
    )
    keys = [key for key, _ in marks]
    return sql, (keys, *([values[n] for _, values in marks] for n in plain))


def _pg_type(column: str) -> str:
    kind = s.outbox.c[column].type
    return "int4" if isinstance(kind, Integer) else "float8" if isinstance(kind, Float) else "text"


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def in_sqlite_thread(conn: AsyncConnection, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(db, *args)` with `conn`'s `sqlite3` connection, in the thread aiosqlite runs it
    on: a transaction's many statements in one hand-over to that thread, not one each (under
    load each hand-over waits for the event loop and the interpreter lock, and the
    transaction holds SQLite's one write lock meanwhile). aiosqlite has no public way to do
    this: `_conn` and `_execute` are its own (0.20 and later, as pyproject.toml asks; the tests
    run through here on every SQLite write of a round and every ingest commit)."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection  # (aiosqlite's Connection, which owns the thread)
    assert driver is not None
    db: sqlite3.Connection = driver._conn
    return cast(T, await driver._execute(fn, db, *args))


def _new_events(batches: Sequence[Sequence[Sequence[Any]]], new: set[str]) -> list[tuple[Any, ...]]:
    """The rows of the events to store: those without a `messageId`, and the first of each
    `messageId` in `new` (the others were seen within 24 hours, or earlier in `batches`).
    An event is an `Incoming` or the inbox's array of the same fields."""
    rows: list[tuple[Any, ...]] = []
    for batch in batches:
        for message_id, contact, t, received, body in batch:
            if message_id:
                if message_id not in new:
                    continue
                new.discard(message_id)
            rows.append((contact, t, received, body))
    return rows


def _accept_sqlite(
    db: sqlite3.Connection,
    upserts: list[tuple[str, tuple[Any, ...]]],
    batches: Sequence[Sequence[Sequence[Any]]],
) -> None:
    """The statements of `SqlStore.accept` on SQLite, for one admitted inbox row, in the
    writer's thread."""
    new: set[str] = set()
    for sql, params in upserts:
        new.update(row[0] for row in db.execute(sql, params))
    rows = _new_events(batches, new)
    if rows:
        db.executemany(INSERT_EVENTS, rows)


def _admit_sqlite(
    db: sqlite3.Connection,
    inbox: Inbox,
    max_events: int,
    seen_upserts: Callable[[Sequence[Sequence[Sequence[Any]]], float], Any],
) -> tuple[int, int]:
    """`SqlStore.admit`'s transaction, in the writer's thread: how far the inbox is admitted
    (read here, under the write lock, so no row is admitted twice), the rows after that,
    each stored as `accept` stores a commit, and the new record. Returns (events read from
    the inbox, the last row now admitted)."""
    identity = inbox.identity()
    assert identity is not None
    found = db.execute("SELECT value FROM meta WHERE key = ?", (RECORD,)).fetchone()
    through = admitted_through(found[0] if found else None, identity)
    rows = inbox.read_after(through, max_events)
    for row_id, committed, events in rows:
        _accept_sqlite(db, seen_upserts([events], committed), [events])
        through = row_id
    if rows:
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (RECORD, orjson.dumps({"inbox": identity, "admitted": through}).decode()),
        )
    return sum(len(events) for _, _, events in rows), through


def _write_round_sqlite(db: sqlite3.Connection, r: RoundResult) -> None:
    """`_write_round` on SQLite, in its connection's thread (`in_sqlite_thread`)."""

    def among(names: Sequence[Any]) -> str:
        return ", ".join(["?"] * len(names))

    for ids, state in ((r.processed, 0), (r.failed, 2)):
        for chunk in _chunks(ids, 500):
            done = db.execute(
                f"UPDATE events SET pending = ? WHERE id IN ({among(chunk)}) AND pending = 1",
                (state, *chunk),
            )
            if done.rowcount != len(chunk):
                raise RoundConflict("events already processed")
    if r.contacts:
        names = [row["id"] for row in r.contacts]
        current: dict[str, float] = {}
        for chunk in _chunks(names, 500):
            sql = f"SELECT id, updated FROM contacts WHERE id IN ({among(chunk)})"
            current.update(db.execute(sql, chunk).fetchall())
        if any(current.get(row["id"]) != row["expected"] for row in r.contacts):
            raise RoundConflict("contacts written meanwhile")
        db.executemany(
            f"INSERT INTO contacts ({', '.join(CONTACT_COLUMNS)}) VALUES ({among(CONTACT_COLUMNS)})",
            [
                tuple(row[k] for k in CONTACT_COLUMNS)
                for row in r.contacts
                if row["expected"] is None
            ],
        )
        db.executemany(
            "UPDATE contacts SET state = ?, wake = ?, clock = ?, updated = ? WHERE id = ?",
            [
                (row["state"], row["wake"], row["clock"], row["updated"], row["id"])
                for row in r.contacts
                if row["expected"] is not None
            ],
        )
        for chunk in _chunks(names, 500):
            db.execute(f"DELETE FROM positions WHERE contact IN ({among(chunk)})", chunk)
    for chunk in _chunks(r.parked, 500):
        db.execute(f"UPDATE contacts SET wake = NULL WHERE id IN ({among(chunk)})", chunk)
    tables: tuple[tuple[str, tuple[str, ...], list[dict[str, Any]], str], ...] = (
        ("positions", POSITION_COLUMNS, r.positions, ""),
        ("effects", EFFECT_COLUMNS, r.effects, ""),
        ("outbox", OUTBOX_COLUMNS, r.outbox, " ON CONFLICT (key) DO NOTHING"),
    )
    for table, columns, rows, tail in tables:
        if rows:
            db.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({among(columns)}){tail}",
                [tuple(row[k] for k in columns) for row in rows],
            )


def _locked(exc: OperationalError) -> bool:
    text = str(exc.orig if exc.orig is not None else exc).lower()
    return "locked" in text or "busy" in text


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit survives power loss too, not only a killed process; group commit makes
    # its fsync cheap per event.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


async def open_store(url: str, create: bool = True) -> SqlStore:
    """Connect, and bring the schema up to date (Alembic migrations, in one transaction).

    The URL may carry the connection pool's size and patience as parameters, which are taken
    off it here (as pgx's `pool_max_conns`): `?pool_size=N` (at most N connections per
    process; default 4 kept open and 4 more under load) and `?pool_timeout=SECONDS` (how long
    a transaction waits for a connection before `sqlalchemy.exc.TimeoutError`; default 10).
    `create=False` (the commands that read a daemon's store) refuses a SQLite file that is
    not there rather than making an empty one."""
    full = database_url(url)
    try:
        parsed = make_url(full)
    except Exception as exc:
        raise StoreError(f"not a database URL: `{url}`") from exc
    parsed, size, timeout = _pool_options(parsed, url)
    pool: dict[str, Any] = {
        "pool_size": size or 4,
        "max_overflow": 0 if size else 4,
        "pool_timeout": timeout,
    }
    writer = None
    inbox = None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            raise StoreError(
                f"`{url}`: a SQLite store is a file (`sqlite:///leadlang.db`, "
                "`sqlite:////var/lib/leadlang/leadlang.db`)"
            )
        try:
            if not create and not Path(database).expanduser().exists():
                raise StoreError(f"there is no store at `{database}` (`leadlang serve` makes it)")
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where its folder goes, no permission, a name too long
            where = f" (`{exc.filename}`)" if exc.filename else ""
            raise StoreError(
                f"cannot open the store {describe_url(full)}: {exc.strerror or exc}{where}"
            ) from None
        inbox = Inbox(inbox_path(database))
        engine = create_async_engine(parsed, **pool)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        # One connection writes, and takes SQLite's write lock when its transaction begins
        # (BEGIN IMMEDIATE): a transaction that read first and then found another process had
        # written meanwhile would fail instead of waiting its turn.
        writer = create_async_engine(parsed, pool_size=1, max_overflow=0, pool_timeout=timeout)
        event.listen(writer.sync_engine, "connect", _sqlite_writer)
        event.listen(writer.sync_engine, "begin", _begin_immediate)
    elif parsed.get_backend_name() == "postgresql":
        # A pooled connection is checked before use (`pool_pre_ping`), so connections a
        # restarted server or `pg_terminate_backend` cut are replaced, not failed on; a
        # server that does not answer at all fails a connection attempt after `timeout`.
        engine = create_async_engine(
            parsed, pool_pre_ping=True, connect_args={"timeout": timeout}, **pool
        )
    else:
        raise StoreError(
            f"unsupported database `{parsed.get_backend_name()}`: use sqlite or postgresql"
        )
    store = SqlStore(engine, writer)
    store.inbox = inbox
    try:
        async with store.write() as conn:
            if not store.sqlite:
                # daemons starting together on a new database make its schema one at a time
                # (the lock is the transaction's; the next one finds the schema made)
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK}, 0)")
            if not create and not await conn.run_sync(_has_schema):
                raise StoreError(
                    f"{describe_url(full)} is not a leadlang store (it has no leadlang tables): "
                    "point at the database `leadlang serve` uses"
                )
            await conn.run_sync(_upgrade)
    except StoreError:
        await store.close()
        raise
    except Exception as exc:
        await store.close()
        raise StoreError(f"cannot open the store {describe_url(full)}: {exc}") from exc
    return store


def _has_schema(connection: Any) -> bool:
    """Whether the database holds a leadlang schema (Alembic's version table)."""
    return bool(inspect(connection).has_table("alembic_version"))


DEFAULT_POOL_TIMEOUT = 10.0  # seconds
# PostgreSQL advisory lock of schema upgrades, in the two-key space (claims use one key)
SCHEMA_LOCK = 0x6C6C_5343
# PostgreSQL advisory lock a round takes its effects' ids under (`_write_round_arrays`)
LEDGER_LOCK = 0x6C6C_4C47


def _pool_options(parsed: URL, url: str) -> tuple[URL, int | None, float]:
    """The URL without `pool_size` and `pool_timeout`, and their values."""
    query = dict(parsed.query)
    size_text, timeout_text = query.pop("pool_size", None), query.pop("pool_timeout", None)
    size = timeout = None
    try:
        if size_text is not None:
            size = int(str(size_text))
        if timeout_text is not None:
            timeout = float(str(timeout_text))
    except ValueError:
        size = timeout = -1
    if (size is not None and size < 1) or (timeout is not None and not 0 < timeout < math.inf):
        raise StoreError(
            f"`{describe_url(url)}`: pool_size must be a whole number of at least 1 and "
            "pool_timeout a positive number of seconds"
        )
    return parsed.set(query=query), size, timeout or DEFAULT_POOL_TIMEOUT


def _sqlite_writer(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    # (its transactions start with BEGIN IMMEDIATE, retried by `_Write` when another process
    # writes: the only statement that can find the database locked in WAL mode)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.close()
    dbapi_connection.isolation_level = None  # transactions begin as `_begin_immediate` says


def _begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _upgrade(connection: Any) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


__all__ = [
    "ClaimedRound",
    "ContactRow",
    "Incoming",
    "Pending",
    "RoundConflict",
    "RoundResult",
    "SqlStore",
    "StoreError",
    "database_url",
    "open_store",
]
