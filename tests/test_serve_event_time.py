"""Event time in serve: a late event runs at the instant its contact was processed to but
keeps its own timestamp in the contact's history; a future timestamp is the receive time;
declared property types apply to stored events as to simulate's log."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.serve_daemon import Daemon

pytestmark = pytest.mark.timeout(90)

SCRIPT = """
event order_completed(total: number)

segment repeat = count(order_completed within 7d) >= 2

flow big_order:
  on order_completed where total > 100
  reenter always
  tag "big"

flow loyal:
  when repeat
  tag "loyal"
"""


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def effects(daemon: Daemon) -> list[tuple[str, str, str | None]]:
    daemon.wait_idle()
    return [(e["at"], e["action"], e.get("tag")) for e in daemon.ledger() if e["action"] == "tag"]


def test_late_events_and_declared_types(tmp_path: Path) -> None:
    (tmp_path / "shop.lead").write_text(SCRIPT, encoding="utf-8")
    daemon = Daemon(tmp_path, [str(tmp_path / "shop.lead")]).start()
    now = time.time()
    recent, old = now - 3600, now - 10 * 86400
    try:
        order = {"type": "track", "userId": "ann", "event": "Order Completed"}
        # a total sent as text ("120") is the number 120, as declared
        assert (
            daemon.post(
                "/v1/track", {**order, "properties": {"total": "120"}, "timestamp": iso(recent)}
            ).status_code
            == 200
        )
        assert effects(daemon) == [(iso(recent), "tag", "big")]
        # late: ten days older than what Ann was processed to. It runs at `recent` (its
        # effects say so) but counts in the history ten days back: one order in 7 days, not two
        assert (
            daemon.post(
                "/v1/track", {**order, "properties": {"total": 150}, "timestamp": iso(old)}
            ).status_code
            == 200
        )
        assert effects(daemon) == [(iso(recent), "tag", "big"), (iso(recent), "tag", "big")]
        # a timestamp in the future is taken as the receive time: a second order within 7 days
        before = time.time()
        assert (
            daemon.post(
                "/v1/track", {**order, "properties": {"total": 5}, "timestamp": iso(now + 86400)}
            ).status_code
            == 200
        )
        after = time.time()
        tags = effects(daemon)
        assert tags[:2] == [(iso(recent), "tag", "big")] * 2
        assert len(tags) == 3 and tags[2][1:] == ("tag", "loyal")
        assert iso(before - 1) <= tags[2][0] <= iso(after)
    finally:
        assert daemon.stop() == 0


LATE_TIMERS = """
flow drip:
  on go
  wait 5s
  tag "first"
  wait 2s
  tag "second"
"""


def test_waits_due_while_the_daemon_was_down_run_in_due_order(tmp_path: Path) -> None:
    # RUNTIME.md section 3: "waits that came due while the daemon was down run at start-up,
    # in due order", each at its due instant; the ledger's own order (its ids) follows them
    (tmp_path / "drip.lead").write_text(LATE_TIMERS, encoding="utf-8")
    daemon = Daemon(tmp_path, [str(tmp_path / "drip.lead")]).start()
    start = float(int(time.time()) - 1)  # (both in the past: a future time is clamped)
    go = {"type": "track", "event": "go"}
    batch = [
        {**go, "userId": "ann", "timestamp": iso(start)},
        {**go, "userId": "bob", "timestamp": iso(start + 1)},
    ]
    try:
        assert daemon.post("/v1/batch", {"batch": batch}).status_code == 200
        daemon.wait_idle()
    finally:
        assert daemon.stop() == 0
    time.sleep(max(0.0, start + 9 - time.time()))  # every wait is due, the daemon down
    daemon.start()
    try:
        deadline = time.monotonic() + 30
        while len(tags := [e for e in daemon.ledger() if e["action"] == "tag"]) < 4:
            assert time.monotonic() < deadline, tags
            time.sleep(0.05)
    finally:
        assert daemon.stop() == 0
    assert [(e["contact"], e["tag"], e["at"]) for e in sorted(tags, key=lambda e: e["id"])] == [
        ("ann", "first", iso(start + 5)),
        ("bob", "first", iso(start + 6)),
        ("ann", "second", iso(start + 7)),
        ("bob", "second", iso(start + 8)),
    ]
