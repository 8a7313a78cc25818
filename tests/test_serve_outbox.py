"""Dead letters a user can see and send again: a delivery that fails for good is a `dead`
outbox row (admin API and `leadlang outbox list`), `leadlang outbox retry` queues it again,
and a message that cannot be rendered is dead with the reason and never delivered."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.serve_daemon import Daemon

pytestmark = pytest.mark.timeout(90)

SCRIPT = """
message welcome:
  channel email
  subject "Welcome {{ first_name | default('there') }}"
  text "Hello"

message broken:
  channel email
  subject "{{ tags.append('x') }}"
  text "x"

flow greet:
  on signed_up
  send welcome

flow break:
  on broke
  send broken
"""


def outbox(daemon: Daemon, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "leadlang", "outbox", *args, "--db", daemon.db],
        capture_output=True,
        text=True,
        cwd=daemon.workdir,
        check=True,
    )
    return done.stdout


def wait_for(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.05)


def test_dead_rows_are_listed_and_queued_again(tmp_path: Path) -> None:
    (tmp_path / "shop.lead").write_text(SCRIPT, encoding="utf-8")
    daemon = Daemon(tmp_path, [str(tmp_path / "shop.lead")]).start()
    try:
        batch = [
            {"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"}},
            {"type": "identify", "userId": "bob", "traits": {"email": "bob at nowhere, carol@x"}},
            {"type": "track", "userId": "ann", "event": "signed_up"},
            {"type": "track", "userId": "bob", "event": "signed_up"},
            {"type": "identify", "userId": "cid", "traits": {"email": "cid@example.com"}},
            {"type": "track", "userId": "cid", "event": "broke"},
        ]
        assert daemon.post("/v1/batch", {"batch": batch}).status_code == 200

        def rows(status: str) -> list[dict[str, object]]:
            return daemon.admin(f"/v1/outbox?status={status}").json()["outbox"]

        wait_for(lambda: len(rows("sent")) == 1 and len(rows("dead")) == 2)
        dead, broken = sorted(rows("dead"), key=lambda r: str(r["contact"]))
        # a template may not change the profile it reads: dead before any delivery, with why
        assert broken["contact"] == "cid" and broken["attempts"] == 0
        assert str(broken["last_error"]).startswith("render failed")
        assert dead["contact"] == "bob" and dead["attempts"] == 1
        assert "not one email address" in str(dead["last_error"])
        assert [r["contact"] for r in rows("sent")] == ["ann"]
        assert len(list((tmp_path / "outbox" / "new").iterdir())) == 1  # only Ann's

        listed = outbox(daemon, "list", "--status", "dead")
        assert str(dead["key"]) in listed and "bob" in listed

        # queued again: the driver refuses the address again, so it is dead once more; the
        # row that could not be rendered is not queued (it has nothing to deliver)
        assert "1 dead row(s) queued again" in outbox(daemon, "retry", "--all-dead")
        # keys that were not queued again are named (a mistyped key said "0 queued" alone)
        retry = ["outbox", "retry", "nope", str(broken["key"]), "--db", daemon.db]
        missed = subprocess.run(
            [sys.executable, "-m", "leadlang", *retry],
            capture_output=True,
            text=True,
            cwd=daemon.workdir,
        )
        assert missed.returncode == 1 and "0 dead row(s) queued again" in missed.stdout
        assert missed.stderr == (
            "error: not queued again (no such key, not dead, or its message could not be"
            f" rendered): `nope`, `{broken['key']}`\n"
        )
        wait_for(lambda: len(rows("dead")) == 2 and not rows("pending"))
        assert {r["contact"]: r["attempts"] for r in rows("dead")} == {"bob": 1, "cid": 0}
        assert len(list((tmp_path / "outbox" / "new").iterdir())) == 1
    finally:
        assert daemon.stop() == 0
