"""Store migrations: a database made by an older leadlang keeps its rows when a newer one opens
it (`open_store` upgrades to the head revision), and a migrated database has the same tables
and indexes as the schema a fresh one is created from; on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from leadlang.runtime.store import schema as s
from leadlang.runtime.store.sql import MIGRATIONS, database_url, open_store

pytestmark = pytest.mark.timeout(120)

NOW = 1_800_000_000.0
HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


def _outbox_row(key: str, channel: str, status: str) -> dict[str, Any]:
    return {
        "key": key,
        "contact": "ada",
        "flow": "welcome",
        "message": "hello",
        "channel": channel,
        "at": "2027-01-15T08:00:00Z",
        "recipient": "ada@example.com",
        "content": '{"subject": "hi"}',
        "status": status,
        "attempts": 0,
        "next_attempt": NOW,
        "created": NOW,
    }


ROWS = [
    _outbox_row("k1", "email", "pending"),
    _outbox_row("k2", "email", "dead"),
    _outbox_row("k3", "sms", "sent"),
]


async def _make_at_0001(url: str) -> None:
    """A database as leadlang made it at revision 0001, with events and sends in it."""

    def upgrade(connection: Any) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")

    engine = create_async_engine(database_url(url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade)
            await conn.execute(insert(s.outbox), ROWS)
            await conn.execute(
                insert(s.events),
                [{"contact": "ada", "t": NOW, "received": NOW, "body": "{}", "pending": 1}],
            )
    finally:
        await engine.dispose()


def _index_names(connection: Any) -> set[str]:
    return {i["name"] for i in inspect(connection).get_indexes("outbox")}


def test_an_old_database_keeps_its_rows_and_gains_the_index(store_url: str) -> None:
    async def run() -> tuple[set[str], set[str], list[Any], dict[str, int], list[Any]]:
        await _make_at_0001(store_url)
        engine = create_async_engine(database_url(store_url))
        async with engine.connect() as conn:
            before = await conn.run_sync(_index_names)
        await engine.dispose()
        store = await open_store(store_url)
        try:
            async with store.engine.connect() as conn:
                after = await conn.run_sync(_index_names)
                rows = (
                    await conn.execute(
                        select(s.outbox.c.key, s.outbox.c.channel, s.outbox.c.status).order_by(
                            s.outbox.c.key
                        )
                    )
                ).all()
                version = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).all()
            counts = await store.counts()
            figures = await store.metric_figures(NOW, [], 60.0)
        finally:
            await store.close()
        return before, after, [tuple(r) for r in rows], counts, [version, figures["sends"]]

    before, after, rows, counts, (version, sends) = asyncio.run(run())
    assert "outbox_channel_due" not in before
    assert "outbox_channel_due" in after and "outbox_status_channel" not in after
    assert rows == [("k1", "email", "pending"), ("k2", "email", "dead"), ("k3", "sms", "sent")]
    assert counts["events"] == 1 and counts["pending_events"] == 1
    assert (counts["outbox_pending"], counts["outbox_sent"], counts["outbox_dead"]) == (1, 1, 1)
    assert sends == {("email", "pending"): 1, ("email", "dead"): 1}
    assert [tuple(v) for v in version] == [(HEAD,)]


def test_a_migrated_database_equals_the_schema(store_url: str) -> None:
    """`schema.py` and the migrations describe the same tables, columns and indexes: what
    Alembic's autogenerate would add or drop to make one into the other is nothing."""

    def differences(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection)
        return list(compare_metadata(context, s.metadata))

    async def run() -> list[Any]:
        store = await open_store(store_url)
        try:
            async with store.engine.connect() as conn:
                return await conn.run_sync(differences)
        finally:
            await store.close()

    assert asyncio.run(run()) == []


def test_the_metrics_query_reads_the_index(store_url: str) -> None:
    """The per-channel send counts of `/metrics` are answered from outbox(status, channel, ...)
    (on PostgreSQL with sequential scans off, since a tiny table is cheaper to scan)."""

    async def run() -> str:
        store = await open_store(store_url)
        try:
            async with store.write() as conn:
                await conn.execute(insert(s.outbox), ROWS)
            async with store.engine.connect() as conn:
                query = (
                    "SELECT channel, count(*) FROM outbox WHERE status = 'dead' GROUP BY channel"
                )
                if store.sqlite:
                    plan = await conn.execute(text("EXPLAIN QUERY PLAN " + query))
                    return "\n".join(str(row[-1]) for row in plan)
                await conn.execute(text("ANALYZE outbox"))
                await conn.execute(text("SET enable_seqscan = off"))
                plan = await conn.execute(text("EXPLAIN " + query))
                return "\n".join(str(row[0]) for row in plan)
        finally:
            await store.close()

    plan = asyncio.run(run())
    assert "outbox_channel_due" in plan, plan
