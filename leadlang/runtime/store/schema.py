"""The tables of serve's store (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Times are float seconds since the Unix epoch (UTC), as in the engine; JSON is stored as text
so both databases read it the same way. Every change to these tables comes with an Alembic
migration in `migrations/versions/` (a test compares the two).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    text,
)

metadata = MetaData()

# SQLite only makes INTEGER PRIMARY KEY an auto-incrementing rowid.
Id = BigInteger().with_variant(Integer(), "sqlite")

# Generated credentials (write key, admin token, signing secret) and store facts.
meta = Table(
    "meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

# Every accepted event, in the order it was accepted (`id`); `pending` is 1 until the
# processor has run it through the engine, then 0 (kept as the history of what was received),
# or 2 when the engine failed on it (logged; see the processor).
events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact", Text, nullable=False),
    Column("t", Float, nullable=False),  # event time (its timestamp, clamped to receipt)
    Column("received", Float, nullable=False),
    Column("body", Text, nullable=False),  # {"name", "props", "traits"} as JSON
    Column("pending", SmallInteger, nullable=False, server_default=text("1")),
)
Index(
    "events_pending",
    events.c.contact,
    events.c.t,
    events.c.id,
    sqlite_where=events.c.pending == 1,
    postgresql_where=events.c.pending == 1,
)
Index(
    "events_queue",
    events.c.id,
    sqlite_where=events.c.pending == 1,
    postgresql_where=events.c.pending == 1,
)
Index("events_contact", events.c.contact, events.c.id)

# `messageId`s seen in the last 24 hours: a repeat is acknowledged and not stored again.
seen_messages = Table(
    "seen_messages",
    metadata,
    Column("message_id", Text, primary_key=True),
    Column("received", Float, nullable=False),
)
Index("seen_messages_received", seen_messages.c.received)

# One row per contact: the engine's state as JSON, its next wake-up, and the instant it has
# been processed to. (rank_t, rank_id) is the contact's first event (time, then id), which
# orders different contacts' time-driven effects at one instant as simulate does.
contacts = Table(
    "contacts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("state", Text, nullable=False),
    Column("wake", Float, nullable=True),
    Column("clock", Float, nullable=False),
    Column("rank_t", Float, nullable=False),
    Column("rank_id", BigInteger, nullable=False),
    Column("updated", Float, nullable=False),
)
Index("contacts_wake", contacts.c.wake)

# The effect ledger: what the engine decided, as simulate prints it (`body`), in commit order
# (`id`, the API's cursor), with simulate's sort key (`at`, `kind`, `k1`, `k2`, `sub`).
effects = Table(
    "effects",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact", Text, nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", SmallInteger, nullable=False),  # 0 time-driven, 1 an event
    Column("k1", Float, nullable=False),
    Column("k2", BigInteger, nullable=False),
    Column("sub", Integer, nullable=False),
    Column("flow", Text, nullable=True),
    Column("action", Text, nullable=False),
    Column("step", Text, nullable=True),
    Column("arm", Text, nullable=True),
    Column("body", Text, nullable=False),
)
Index("effects_flow", effects.c.flow, effects.c.action)
Index("effects_contact", effects.c.contact, effects.c.id)
Index("effects_order", effects.c.at, effects.c.kind, effects.c.k1, effects.c.k2, effects.c.sub)

# Sends waiting for (or done with) delivery, keyed by their idempotency key.
outbox = Table(
    "outbox",
    metadata,
    Column("key", Text, primary_key=True),
    Column("contact", Text, nullable=False),
    Column("flow", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("at", Text, nullable=False),  # the logical instant of the send
    Column("recipient", Text, nullable=True),
    Column("content", Text, nullable=False),  # the rendered message, JSON
    Column("status", Text, nullable=False),  # pending | sent | dead
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt", Float, nullable=False),
    Column("lease_until", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created", Float, nullable=False),
    Column("delivered", Float, nullable=True),
)
Index("outbox_due", outbox.c.status, outbox.c.next_attempt)
# A channel's due sends are claimed from this index in order, and `/metrics` counts sends
# per (status, channel) from it alone (migration 0003; 0002 had (status, channel)).
Index("outbox_channel_due", outbox.c.status, outbox.c.channel, outbox.c.next_attempt)

# Where each contact's active enrollments stand (for the flows API's counts per step):
# replaced with the contact's state at every commit.
positions = Table(
    "positions",
    metadata,
    Column("contact", Text, primary_key=True),
    Column("flow", Text, primary_key=True),
    Column("version", Text, nullable=False),
    Column("step", Text, nullable=True),
    Column("waiting_until", Float, nullable=True),
)
Index("positions_flow", positions.c.flow, positions.c.step)

# The compiled IR of every flow version serve has run, by content hash.
flow_versions = Table(
    "flow_versions",
    metadata,
    Column("flow", Text, primary_key=True),
    Column("version", Text, primary_key=True),
    Column("ir", Text, nullable=False),
    Column("loaded", Float, nullable=False),
)
