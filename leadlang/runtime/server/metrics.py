"""`GET /metrics`: Prometheus text format, from the daemon's counters and the store.

The processor and the outbox worker run in a child process by default, so what they do is
read from the store, never from their in-memory counters: each scrape makes a handful of
queries that each read an index (counts on indexed columns, a minimum, the oldest pending
event by id, one index range of `effects(flow, action)` per flow), never a table's JSON.

  leadlang_events_accepted_total              events committed by ingest (this process)
  leadlang_ingest_rejected_total{reason}      ingest requests refused: invalid (400),
                                              unauthorized (401), too_large (413),
                                              unsupported_encoding (415), overloaded (429),
                                              store_error (the commit failed)
  leadlang_processing_lag_seconds             age of the oldest event not yet processed
  leadlang_timers_due / _late                 contacts whose wake-up is past / past by > 60 s
  leadlang_timer_lag_seconds                  how far past the oldest due wake-up is
  leadlang_outbox_rows{status}                sends pending, sent, dead
  leadlang_outbox_sends{channel,status}       pending and dead sends per channel
  leadlang_dead_letters                       outbox rows that are dead
  leadlang_flow_{entered,exited,goals}_total{flow}   from the effect ledger
  leadlang_http_request_duration_seconds{route,method}   a histogram per route
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from leadlang.runtime.server.app import Daemon
    from leadlang.runtime.server.ingest import Ingest

log = logging.getLogger("leadlang.serve")

LATE_AFTER = 60.0  # a wake-up this many seconds past is late
UNMATCHED = "(unmatched)"  # the route label of a request no route matched (bounded labels)
CHANNELS = ("email", "sms", "push")


def route_label(request: web.Request) -> str:
    """The route's pattern (`/v1/contacts/{id}`), never the raw path: labels stay few."""
    resource = getattr(request.match_info.route, "resource", None)
    canonical = getattr(resource, "canonical", None)
    return canonical if isinstance(canonical, str) else UNMATCHED


class Metrics:
    def __init__(self, daemon: Daemon, ingest: Ingest | None = None) -> None:
        self.daemon = daemon
        self.ingest = ingest
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            "leadlang_http_request_duration_seconds",
            "HTTP request latency, per route and method",
            ["route", "method"],
            registry=self.registry,
        )
        self._counts: dict[str, int] = {}
        self._figures: dict[str, Any] | None = None
        self._now = 0.0
        self._lock = asyncio.Lock()  # one scrape at a time: collect() reads the figures
        self.registry.register(self)

    def observe(self, request: web.Request, seconds: float) -> None:
        self.latency.labels(route_label(request), request.method).observe(seconds)

    def middleware(self) -> Any:
        @web.middleware
        async def timed(request: web.Request, handler: Any) -> web.StreamResponse:
            started = time.perf_counter()
            try:
                return await handler(request)
            finally:
                self.observe(request, time.perf_counter() - started)

        return timed

    def collect(self) -> Iterator[Any]:
        d = self.daemon
        yield CounterMetricFamily(
            "leadlang_events_accepted",
            "Events committed by ingest",
            value=d.committer.committed_events,
        )
        if self.ingest is not None:
            rejected = CounterMetricFamily(
                "leadlang_ingest_rejected",
                "Ingest requests rejected, by reason",
                labels=["reason"],
            )
            for reason, n in sorted(self.ingest.rejected.items()):
                rejected.add_metric([reason], n)
            yield rejected
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
        figures = self._figures
        yield GaugeMetricFamily(
            "leadlang_store_up", "1 when the store answered this scrape", value=figures is not None
        )
        if figures is None:
            return
        outbox = GaugeMetricFamily(
            "leadlang_outbox_rows", "Outbox rows by status", labels=["status"]
        )
        for status in ("pending", "sent", "dead"):
            outbox.add_metric([status], self._counts.get(f"outbox_{status}", 0))
        yield outbox
        yield GaugeMetricFamily(
            "leadlang_dead_letters",
            "Sends given up on (outbox rows `dead`)",
            value=self._counts.get("outbox_dead", 0),
        )
        for name in ("contacts", "events", "pending_events"):
            yield GaugeMetricFamily(
                f"leadlang_{name}", f"Rows: {name}", value=self._counts.get(name, 0)
            )
        now = self._now
        oldest = figures["oldest_pending_received"]
        yield GaugeMetricFamily(
            "leadlang_processing_lag_seconds",
            "Age of the oldest event not yet processed (0 when none waits)",
            value=0.0 if oldest is None else max(0.0, now - oldest),
        )
        yield GaugeMetricFamily(
            "leadlang_timers_due",
            "Contacts whose next wake-up is due (at or before now)",
            value=figures["timers_due"],
        )
        yield GaugeMetricFamily(
            "leadlang_timers_late",
            f"Contacts whose next wake-up is more than {LATE_AFTER:g} s past",
            value=figures["timers_late"],
        )
        wake = figures["oldest_wake"]
        yield GaugeMetricFamily(
            "leadlang_timer_lag_seconds",
            "How far past the earliest due wake-up is (0 when none is due)",
            value=0.0 if wake is None else max(0.0, now - wake),
        )
        sends = GaugeMetricFamily(
            "leadlang_outbox_sends",
            "Pending and dead sends, per channel",
            labels=["channel", "status"],
        )
        found: dict[tuple[str, str], int] = figures["sends"]
        keys = {(ch, st) for ch in CHANNELS for st in ("pending", "dead")} | set(found)
        for channel, status in sorted(keys):
            sends.add_metric([channel, status], found.get((channel, status), 0))
        yield sends
        for action, name, help_text in (
            ("enter", "entered", "Enrollments into each flow"),
            ("exit", "exited", "Exits from each flow"),
            ("goal", "goals", "Goals reached in each flow"),
        ):
            family = CounterMetricFamily(f"leadlang_flow_{name}", help_text, labels=["flow"])
            for flow, actions in figures["flows"].items():
                family.add_metric([flow], actions.get(action, 0))
            yield family

    async def handler(self, request: web.Request) -> web.Response:
        async with self._lock:
            self._now = self.daemon.clock()
            try:
                self._counts = await self.daemon.store.counts()
                self._figures = await self.daemon.store.metric_figures(
                    self._now, list(self.daemon.flows()), LATE_AFTER
                )
            except Exception:
                log.exception("metrics: the store did not answer")
                self._counts, self._figures = {}, None
            body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
