"""`GET /metrics`: Prometheus text format, from the daemon's counters and the store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from leadlang.runtime.server.app import Daemon


class Metrics:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.registry = CollectorRegistry(auto_describe=False)
        self._counts: dict[str, int] = {}
        self.registry.register(self)

    def collect(self) -> Iterator[Any]:
        d = self.daemon
        yield CounterMetricFamily(
            "leadlang_events_accepted",
            "Events committed by ingest",
            value=d.committer.committed_events,
        )
        yield CounterMetricFamily(
            "leadlang_ingest_commits", "Group commits made by ingest", value=d.committer.commits
        )
        processor = getattr(d.backend, "processor", None)  # (in this process only)
        if processor is not None:
            yield CounterMetricFamily(
                "leadlang_processing_rounds", "Processing rounds run", value=processor.rounds
            )
        yield GaugeMetricFamily(
            "leadlang_ingest_queued_events",
            "Events accepted and waiting for their commit",
            value=d.committer.queued_events,
        )
        outbox = GaugeMetricFamily(
            "leadlang_outbox_rows", "Outbox rows by status", labels=["status"]
        )
        for status in ("pending", "sent", "dead"):
            outbox.add_metric([status], self._counts.get(f"outbox_{status}", 0))
        yield outbox
        for name in ("contacts", "events", "pending_events"):
            yield GaugeMetricFamily(
                f"leadlang_{name}", f"Rows: {name}", value=self._counts.get(name, 0)
            )

    async def handler(self, request: web.Request) -> web.Response:
        self._counts = await self.daemon.store.counts()
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
