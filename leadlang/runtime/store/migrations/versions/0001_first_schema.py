"""The first schema: meta, events, seen_messages, contacts, effects, outbox, flow_versions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("contact", sa.Text, nullable=False),
        sa.Column("t", sa.Float, nullable=False),
        sa.Column("received", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("pending", sa.SmallInteger, nullable=False, server_default=sa.text("1")),
    )
    op.create_index(
        "events_pending",
        "events",
        ["contact", "t", "id"],
        sqlite_where=sa.text("pending = 1"),
        postgresql_where=sa.text("pending = 1"),
    )
    op.create_index(
        "events_queue",
        "events",
        ["id"],
        sqlite_where=sa.text("pending = 1"),
        postgresql_where=sa.text("pending = 1"),
    )
    op.create_index("events_contact", "events", ["contact", "id"])
    op.create_table(
        "seen_messages",
        sa.Column("message_id", sa.Text, primary_key=True),
        sa.Column("received", sa.Float, nullable=False),
    )
    op.create_index("seen_messages_received", "seen_messages", ["received"])
    op.create_table(
        "contacts",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("wake", sa.Float, nullable=True),
        sa.Column("clock", sa.Float, nullable=False),
        sa.Column("rank_t", sa.Float, nullable=False),
        sa.Column("rank_id", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )
    op.create_index("contacts_wake", "contacts", ["wake"])
    op.create_table(
        "effects",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("contact", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.SmallInteger, nullable=False),
        sa.Column("k1", sa.Float, nullable=False),
        sa.Column("k2", sa.BigInteger, nullable=False),
        sa.Column("sub", sa.Integer, nullable=False),
        sa.Column("flow", sa.Text, nullable=True),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("step", sa.Text, nullable=True),
        sa.Column("arm", sa.Text, nullable=True),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("effects_flow", "effects", ["flow", "action"])
    op.create_index("effects_contact", "effects", ["contact", "id"])
    op.create_index("effects_order", "effects", ["at", "kind", "k1", "k2", "sub"])
    op.create_table(
        "outbox",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("contact", sa.Text, nullable=False),
        sa.Column("flow", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("at", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text, nullable=True),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt", sa.Float, nullable=False),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("delivered", sa.Float, nullable=True),
    )
    op.create_index("outbox_due", "outbox", ["status", "next_attempt"])
    op.create_table(
        "positions",
        sa.Column("contact", sa.Text, primary_key=True),
        sa.Column("flow", sa.Text, primary_key=True),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("step", sa.Text, nullable=True),
        sa.Column("waiting_until", sa.Float, nullable=True),
    )
    op.create_index("positions_flow", "positions", ["flow", "step"])
    op.create_table(
        "flow_versions",
        sa.Column("flow", sa.Text, primary_key=True),
        sa.Column("version", sa.Text, primary_key=True),
        sa.Column("ir", sa.Text, nullable=False),
        sa.Column("loaded", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "flow_versions",
        "positions",
        "outbox",
        "effects",
        "contacts",
        "seen_messages",
        "events",
    ):
        op.drop_table(table)
    op.drop_table("meta")
