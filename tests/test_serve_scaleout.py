"""Two daemons on one PostgreSQL database: ingest on both, each event processed once, each
send delivered once, and the ledger what simulate says (each round claims its contacts, and
the claims are checked again at each write); a daemon SIGKILLed with work in hand leaves it
to the other, which runs it within seconds (its claims end with its connection)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from tests.serve_daemon import GREET, SLOW, Daemon, maildir_files
from tests.test_serve_crash import iso, ledger_text, simulate, wait_for

pytestmark = pytest.mark.timeout(180)


def shared_outbox(tmp_path: Path) -> tuple[Path, Path]:
    """Two daemons' folders with one Maildir (as on a shared volume)."""
    first, second = (tmp_path / "a", tmp_path / "b")
    first.mkdir()
    second.mkdir()
    (second / "outbox").symlink_to(first / "outbox", target_is_directory=True)
    (first / "outbox").mkdir()
    return first, second


def test_two_daemons_share_one_postgresql(tmp_path: Path, postgres_db: str) -> None:
    script = tmp_path / "greet.lead"
    script.write_text(GREET, encoding="utf-8")
    # one Maildir for both: every send once across the two daemons
    first, second = shared_outbox(tmp_path)
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


def test_a_killed_daemons_work_is_taken_over_by_the_other(tmp_path: Path, postgres_db: str) -> None:
    script = tmp_path / "slow.lead"
    script.write_text(SLOW, encoding="utf-8")  # each `started` waits 5 s, then sends
    first, second = shared_outbox(tmp_path)
    doomed = Daemon(first, [str(script)], db=postgres_db).start()
    survivor = Daemon(second, [str(script)], db=postgres_db).start()
    now = time.time()
    events = [
        {
            "type": "track",
            "userId": f"u{i % 400}",
            "event": "Started",
            "timestamp": iso(now - 2 + i / 1000),
            "messageId": f"m{i}",
            "properties": {"email": f"u{i}@example.com"},
        }
        for i in range(2000)
    ]
    try:
        assert doomed.post("/v1/batch", {"batch": events}).status_code == 200
        time.sleep(0.3)  # its processor is at work on them (it was woken by its own ingest)
        doomed.kill()
        killed = time.monotonic()
        # every event processed and every wait fired (due 5 s after its event), by the survivor
        survivor.wait_idle(30)
        taken = time.monotonic() - killed
        wait_for(lambda: not survivor.count("contacts", "WHERE wake IS NOT NULL"), 30, "waits")
        wanted = sum(1 for e in survivor.ledger() if e["action"] == "send")
        assert wanted >= 400  # one at least per contact
        wait_for(lambda: len(maildir_files(first)) >= wanted, 60, "not every send delivered")
        fired = time.monotonic() - killed
    finally:
        doomed.kill()
        assert survivor.stop() == 0
    assert taken < 10  # the killed daemon's claims were free at once
    assert fired < 30
    assert ledger_text(postgres_db, tmp_path) == simulate(script, events, time.time(), tmp_path)
    names = [p.name.split(":")[0] for p in maildir_files(first)]
    assert len(names) == len(set(names)) == wanted


def test_daemons_started_together_on_a_new_database_all_come_up(
    tmp_path: Path, postgres_db: str
) -> None:
    # each makes the schema if it is missing: one at a time, the others finding it made
    script = tmp_path / "greet.lead"
    script.write_text(GREET, encoding="utf-8")
    folders = [tmp_path / name for name in "abc"]
    for folder in folders:
        folder.mkdir()
    daemons = [Daemon(folder, [str(script)], db=postgres_db) for folder in folders]
    failed: list[str] = []

    def start(daemon: Daemon) -> None:
        try:
            daemon.start()
        except RuntimeError as exc:
            failed.append(str(exc))

    threads = [threading.Thread(target=start, args=(daemon,)) for daemon in daemons]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not failed, failed
        for i, daemon in enumerate(daemons):
            event = {"userId": f"u{i}", "event": "Signed Up", "properties": {"email": "x@y.z"}}
            assert daemon.post("/v1/track", event).status_code == 200
    finally:
        for daemon in daemons:
            daemon.stop()
