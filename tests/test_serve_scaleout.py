"""Two daemons on one PostgreSQL database: ingest on both, each event processed once, each
send delivered once, and the ledger what simulate says (claims are checked at each write:
a round whose work another daemon took first is read again)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.serve_daemon import GREET, Daemon, maildir_files
from tests.test_serve_crash import iso, ledger_text, simulate, wait_for

pytestmark = pytest.mark.timeout(180)


def test_two_daemons_share_one_postgresql(tmp_path: Path, postgres_db: str) -> None:
    script = tmp_path / "greet.lead"
    script.write_text(GREET, encoding="utf-8")
    first, second = (tmp_path / "a", tmp_path / "b")
    first.mkdir()
    second.mkdir()
    # one Maildir for both (as on a shared volume): every send once across the two daemons
    (second / "outbox").symlink_to(first / "outbox", target_is_directory=True)
    (first / "outbox").mkdir()
    daemons = [Daemon(d, [str(script)], db=postgres_db).start() for d in (first, second)]
    rng = random.Random(7)
    start = time.time() - 600
    events = [
        {
            "type": "track",
            "userId": f"u{rng.randrange(40)}",
            "event": "Signed Up",
            "timestamp": iso(start + i),
            "messageId": f"m{i}",
            "properties": {"email": f"u{i}@example.com"},
        }
        for i in range(300)
    ]
    try:
        for i in range(0, len(events), 20):
            daemon = daemons[(i // 20) % 2]
            assert daemon.post("/v1/batch", {"batch": events[i : i + 20]}).status_code == 200
        for daemon in daemons:
            daemon.wait_idle()
        sends = daemons[0].ledger()
        wanted = sum(1 for e in sends if e["action"] == "send")
        wait_for(lambda: len(maildir_files(first)) >= wanted, 60, "not every send delivered")
    finally:
        for daemon in daemons:
            assert daemon.stop() == 0
    assert ledger_text(postgres_db, tmp_path) == simulate(script, events, time.time(), tmp_path)
    names = [p.name.split(":")[0] for p in maildir_files(first)]
    assert len(names) == len(set(names)) == wanted
