"""An index on outbox(status, channel): `/metrics` counts sends per channel and status.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("outbox_status_channel", "outbox", ["status", "channel"])


def downgrade() -> None:
    op.drop_index("outbox_status_channel", table_name="outbox")
