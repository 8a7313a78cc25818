"""`GET /metrics`: what each figure counts, read from the store (the processor runs in a
child process), checked on a store filled by hand at a fixed clock, and end to end on a
real daemon: accepted and rejected events, flow counts, sends and latency per route."""

from __future__ import annotations

import asyncio
import gzip
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from serve_daemon import GREET, Daemon
from sqlalchemy import insert

from leadlang.runtime.server.metrics import Metrics
from leadlang.runtime.store import schema as s
from leadlang.runtime.store.sql import SqlStore, open_store

NOW = 1_800_000_000.0


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


async def _fill(store: SqlStore) -> None:
    async with store.write() as conn:
        await conn.execute(
            insert(s.events),
            [
                # processed, then two pending: the oldest was received 42 s ago
                {"contact": "a", "t": NOW - 100, "received": NOW - 100, "body": "{}", "pending": 0},
                {"contact": "a", "t": NOW - 50, "received": NOW - 42, "body": "{}", "pending": 1},
                {"contact": "b", "t": NOW - 5, "received": NOW - 5, "body": "{}", "pending": 1},
            ],
        )
        contact = {"state": "{}", "clock": NOW, "rank_t": 0.0, "rank_id": 0, "updated": NOW}
        await conn.execute(
            insert(s.contacts),
            [
                {**contact, "id": "late", "wake": NOW - 600},  # 10 minutes past: late
                {**contact, "id": "due", "wake": NOW - 1},  # due, not late
                {**contact, "id": "future", "wake": NOW + 3600},
                {**contact, "id": "idle", "wake": None},
            ],
        )
        row = {"flow": "f", "message": "m", "at": "x", "content": "{}", "created": NOW}
        await conn.execute(
            insert(s.outbox),
            [
                {**row, "key": k, "contact": "a", "channel": ch, "status": st, "next_attempt": NOW}
                for k, ch, st in (
                    ("1", "email", "pending"),
                    ("2", "email", "dead"),
                    ("3", "sms", "dead"),
                    ("4", "sms", "sent"),
                    ("5", "push", "sent"),
                )
            ],
        )
        effect = {"contact": "a", "at": NOW, "kind": 1, "k1": 0.0, "k2": 0, "body": "{}"}
        await conn.execute(
            insert(s.effects),
            [
                {**effect, "sub": i, "flow": flow, "action": action}
                for i, (flow, action) in enumerate(
                    [
                        ("welcome", "enter"),
                        ("welcome", "enter"),
                        ("welcome", "send"),
                        ("welcome", "exit"),
                        ("welcome", "goal"),
                        ("other", "enter"),
                        (None, "score"),
                    ]
                )
            ],
        )


def test_figures_come_from_the_store(store_url: str) -> None:
    async def scrape() -> str:
        store = await open_store(store_url)
        try:
            await _fill(store)
            daemon: Any = SimpleNamespace(
                store=store,
                clock=lambda: NOW,
                backend=None,  # (the processor is in another process)
                committer=SimpleNamespace(committed_events=7, commits=3, queued_events=0),
                flows=lambda: {"welcome": {}, "other": {}, "quiet": {}},
            )
            ingest: Any = SimpleNamespace(rejected={"invalid": 2, "unauthorized": 1})
            metrics = Metrics(daemon, ingest)
            response = await metrics.handler(SimpleNamespace())  # type: ignore[arg-type]
            assert response.body is not None
            return bytes(response.body).decode()  # type: ignore[arg-type]
        finally:
            await store.close()

    text = asyncio.run(scrape())
    assert value(text, "leadlang_store_up") == 1
    assert value(text, "leadlang_events_accepted_total") == 7
    assert value(text, "leadlang_ingest_rejected_total", reason="invalid") == 2
    assert value(text, "leadlang_pending_events") == 2
    assert value(text, "leadlang_processing_lag_seconds") == 42
    assert value(text, "leadlang_timers_due") == 2
    assert value(text, "leadlang_timers_late") == 1
    assert value(text, "leadlang_timer_lag_seconds") == 600
    assert value(text, "leadlang_outbox_rows", status="pending") == 1
    assert value(text, "leadlang_outbox_rows", status="sent") == 2
    assert value(text, "leadlang_outbox_rows", status="dead") == 2
    assert value(text, "leadlang_dead_letters") == 2
    assert value(text, "leadlang_outbox_sends", channel="email", status="pending") == 1
    assert value(text, "leadlang_outbox_sends", channel="email", status="dead") == 1
    assert value(text, "leadlang_outbox_sends", channel="sms", status="dead") == 1
    assert value(text, "leadlang_outbox_sends", channel="push", status="dead") == 0
    assert value(text, "leadlang_flow_entered_total", flow="welcome") == 2
    assert value(text, "leadlang_flow_exited_total", flow="welcome") == 1
    assert value(text, "leadlang_flow_goals_total", flow="welcome") == 1
    assert value(text, "leadlang_flow_entered_total", flow="other") == 1
    assert value(text, "leadlang_flow_entered_total", flow="quiet") == 0


def test_nothing_waiting_is_zero_lag(tmp_path: Path) -> None:
    async def figures() -> dict[str, Any]:
        store = await open_store(f"sqlite:///{tmp_path / 'e.db'}")
        try:
            return await store.metric_figures(NOW, ["f"], 60.0)
        finally:
            await store.close()

    assert asyncio.run(figures()) == {
        "oldest_pending_received": None,
        "oldest_wake": None,
        "timers_due": 0,
        "timers_late": 0,
        "sends": {},
        "flows": {"f": {}},
    }


@pytest.mark.timeout(120)
def test_metrics_of_a_live_daemon(tmp_path: Path) -> None:
    script = tmp_path / "greet.lead"
    script.write_text(GREET, encoding="utf-8")
    daemon = Daemon(tmp_path, [str(script)]).start()
    try:
        for i in range(3):
            body = {"userId": f"u{i}", "event": "Signed Up", "properties": {"email": f"u{i}@x.org"}}
            assert daemon.post("/v1/track", body).status_code == 200
        assert (
            daemon.post("/v1/track", {"userId": "x", "event": "e"}, key="wrong").status_code == 401
        )
        assert daemon.post("/v1/track", b"{not json").status_code == 400
        assert daemon.post("/v1/track", {"userId": "x"}).status_code == 400
        big = {"userId": "x", "event": "e", "properties": {"k": "v" * 40_000}}
        assert daemon.post("/v1/track", big).status_code == 413
        encoded = daemon.post(
            "/v1/track", gzip.compress(b"{}"), headers={"Content-Encoding": "compress"}
        )
        assert encoded.status_code == 415
        assert daemon.admin("/v1/contacts/nobody").status_code == 404
        assert requests.get(daemon.url + "/no/such/route", timeout=10).status_code == 404
        daemon.wait_idle()
        text = ""
        for _ in range(300):  # the outbox worker delivers the three emails
            text = requests.get(daemon.url + "/metrics", timeout=10).text
            if value(text, "leadlang_outbox_rows", status="sent") == 3:
                break
            time.sleep(0.1)
        assert value(text, "leadlang_events_accepted_total") == 3
        for reason, n in (
            ("invalid", 2),
            ("unauthorized", 1),
            ("too_large", 1),
            ("unsupported_encoding", 1),
            ("overloaded", 0),
            ("store_error", 0),
        ):
            assert value(text, "leadlang_ingest_rejected_total", reason=reason) == n, reason
        assert value(text, "leadlang_flow_entered_total", flow="greet") == 3
        assert value(text, "leadlang_flow_exited_total", flow="greet") == 3
        assert value(text, "leadlang_flow_goals_total", flow="greet") == 0
        assert value(text, "leadlang_outbox_rows", status="sent") == 3
        assert value(text, "leadlang_processing_lag_seconds") == 0
        assert value(text, "leadlang_timers_due") == 0
        histogram = "leadlang_http_request_duration_seconds_count"
        assert value(text, histogram, route="/v1/track", method="POST") == 8
        assert value(text, histogram, route="/v1/contacts/{id}", method="GET") == 1
        assert value(text, histogram, route="(unmatched)", method="GET") == 1
        # the raw path never becomes a label
        assert "nobody" not in text and "/no/such/route" not in text
        assert orjson.loads(daemon.admin("/v1/flows").content)["flows"][0]["entered"] == 3
    finally:
        assert daemon.stop() == 0
