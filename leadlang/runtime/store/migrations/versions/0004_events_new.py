"""Events stored by ingest as NEW (`pending` = 3), indexed only by `events_new`, and admitted
by the processors into the contact-keyed indexes (`events_contact` no longer holds NEW rows).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "events_new",
        "events",
        ["id"],
        sqlite_where=sa.text("pending = 3"),
        postgresql_where=sa.text("pending = 3"),
    )
    op.drop_index("events_contact", table_name="events")
    op.create_index(
        "events_contact",
        "events",
        ["contact", "id"],
        sqlite_where=sa.text("pending != 3"),
        postgresql_where=sa.text("pending != 3"),
    )


def downgrade() -> None:
    op.execute("UPDATE events SET pending = 1 WHERE pending = 3")
    op.drop_index("events_contact", table_name="events")
    op.create_index("events_contact", "events", ["contact", "id"])
    op.drop_index("events_new", table_name="events")
