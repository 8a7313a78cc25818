"""outbox(status, channel, next_attempt) in place of outbox(status, channel): a channel's due
sends are claimed from it in order, and `/metrics` still counts sends per channel from it.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("outbox_channel_due", "outbox", ["status", "channel", "next_attempt"])
    op.drop_index("outbox_status_channel", table_name="outbox")


def downgrade() -> None:
    op.create_index("outbox_status_channel", "outbox", ["status", "channel"])
    op.drop_index("outbox_channel_due", table_name="outbox")
