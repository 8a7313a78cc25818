"""One processor's rounds overlap: while a round's write goes on, the next round reads and
runs other contacts. No contact is read while its own round is still being written (that
round would be rolled back as a conflict and run again), and the ledger is simulate's."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from leadlang.runtime.engine import Engine
from leadlang.runtime.processor import Processor
from leadlang.runtime.store.sql import open_store
from tests.test_serve_crash import ledger_text, simulate
from tests.test_store_claims import ingest, pending_events, program, signups

pytestmark = pytest.mark.timeout(120)


def test_a_round_in_writing_keeps_its_contacts_out_of_the_next_one(store_url: str) -> None:
    async def body() -> None:
        store = await open_store(store_url)
        try:
            await ingest(store, signups(40, 4))
            everyone = {f"u{i}" for i in range(4)}
            async with store.claim_round(time.time(), 10, 20_000) as work:
                assert {row.id for row in work.rows} == everyone
            async with store.claim_round(time.time(), 10, 20_000, {"u0", "u2"}) as work:
                assert {row.id for row in work.rows} == {"u1", "u3"}
                assert set(work.pending) == {"u1", "u3"}
            async with store.claim_round(time.time(), 10, 20_000, everyone) as work:
                assert work.rows == []
        finally:
            await store.close()

    asyncio.run(body())


def test_overlapped_rounds_run_every_event_once_as_simulate_does(
    tmp_path: Path, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    script, ir = program(tmp_path)
    events = signups(3000, 400)
    # each round's write is slowed down, so that the next round is read and run meanwhile
    writes: list[tuple[float, float]] = []
    runs: list[float] = []

    async def body() -> None:
        store = await open_store(store_url)
        write_round = store._write_round

        async def slow_write(conn: Any, result: Any) -> None:
            started = time.monotonic()
            await asyncio.sleep(0.02)
            await write_round(conn, result)
            writes.append((started, time.monotonic()))

        store._write_round = slow_write  # type: ignore[method-assign, assignment]
        try:
            await ingest(store, events)
            processor = Processor(store, Engine(ir), ir, time.time, batch=40)
            runner = processor.runner

            def timed(*args: Any) -> Any:
                runs.append(time.monotonic())
                return runner(*args)

            processor.runner = timed  # type: ignore[assignment]
            stop = asyncio.Event()
            task = asyncio.create_task(processor.run(stop))
            deadline = time.monotonic() + 60
            while await pending_events(store):
                assert time.monotonic() < deadline, "the events were not all processed"
                await asyncio.sleep(0.05)
            stop.set()
            processor.wakeup.set()
            await asyncio.wait_for(task, 30)
        finally:
            await store.close()

    with caplog.at_level(logging.INFO, logger="leadlang.serve"):
        asyncio.run(body())
    assert len(writes) >= 10
    overlapped = [t for t in runs if any(a < t < b for a, b in writes)]
    assert len(overlapped) >= 5  # rounds ran while another round was being written
    # no round read a contact whose write was under way (it would have been rolled back)
    assert "another processor took" not in caplog.text
    assert ledger_text(store_url, tmp_path) == simulate(script, events, time.time(), tmp_path)
