"""Alembic's environment for serve's store: migrations run on the connection serve hands in
(`config.attributes["connection"]`), inside the start-up transaction."""

from __future__ import annotations

from alembic import context

from leadlang.runtime.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
