"""Live edits (RUNTIME.md section 3): `POST /v1/reload` and SIGHUP read the scripts again; a
broken script is refused with its diagnostics and the running version stays; contacts waiting
inside a flow finish on the version they started on (`edits keep`) or move to the new one at
the same step (`edits migrate`), none dropped or duplicated; on several daemons of one
PostgreSQL, a reload on one reaches the others."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from leadlang.runtime.store.sql import open_store
from tests.serve_daemon import ADMIN_TOKEN, Daemon, fresh_postgres, maildir_files
from tests.test_serve_crash import iso
from tests.test_store_migrations import NOW

pytestmark = pytest.mark.timeout(180)

WAIT = 8  # seconds the contacts wait inside the flow, across the reload

V1 = f"""\
message first:
  channel email
  subject "first {{{{ id }}}}"
  text "first"

message old_later:
  channel email
  subject "old later {{{{ id }}}}"
  text "old"

message new_later:
  channel email
  subject "new later {{{{ id }}}}"
  text "new"

flow onboard:
  on started
  set email = event.email
  send first
  wait {WAIT}s
  send old_later
"""

V2 = V1.replace("  send old_later\n", "  send new_later\n")
V2_MIGRATE = V2.replace("  on started\n", "  on started\n  edits migrate\n")


def started(users: list[str]) -> dict[str, Any]:
    now = time.time()
    return {
        "batch": [
            {
                "type": "track",
                "userId": user,
                "event": "started",
                "timestamp": iso(now),
                "messageId": f"started-{user}",
                "properties": {"email": f"{user}@example.com"},
            }
            for user in users
        ]
    }


def reload(daemon: Daemon, query: str = "") -> requests.Response:
    return requests.post(
        daemon.url + "/v1/reload" + query,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )


def until(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise TimeoutError("the daemon did not get there in time")


def sends(daemon: Daemon) -> Counter[tuple[str, str]]:
    """(contact, message) of every send in the ledger."""
    return Counter((e["contact"], e["message"]) for e in daemon.ledger() if e["action"] == "send")


def flow_version(daemon: Daemon) -> str:
    return str(daemon.admin("/v1/flows/onboard").json()["version"])


def run_edit(tmp_path: Path, new_script: str, how: str) -> tuple[Daemon, Counter[Any]]:
    """Five contacts enter v1 and wait; the script becomes `new_script` and is reloaded
    (`how`: "post", "sighup", or "restart": the daemon stopped and started again) while
    they wait; three more enter after. Returns the daemon (stopped) and the sends."""
    script = tmp_path / "onboard.lead"
    script.write_text(V1, encoding="utf-8")
    daemon = Daemon(tmp_path, [str(script)]).start()
    try:
        early = [f"early{i}" for i in range(5)]
        late = [f"late{i}" for i in range(3)]
        assert daemon.post("/v1/batch", started(early)).status_code == 200
        until(lambda: len(sends(daemon)) == 5)
        v1 = flow_version(daemon)
        script.write_text(new_script, encoding="utf-8")
        if how == "sighup":
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGHUP)
            until(lambda: any("reloaded (generation" in line for line in daemon.output))
        elif how == "restart":
            assert daemon.stop() == 0
            daemon.start()
        else:
            answer = reload(daemon)
            assert answer.status_code == 200, answer.text
            assert answer.json()["reloaded"] is True
        v2 = flow_version(daemon)
        assert v2 != v1
        assert daemon.admin("/v1/flows/onboard").json()["versions"] == {v1: len(early)}
        assert daemon.post("/v1/batch", started(late)).status_code == 200
        everyone = len(early) + len(late)
        until(lambda: len(sends(daemon)) == 2 * everyone, timeout=WAIT + 60)
        time.sleep(0.5)  # nothing more comes
        found = sends(daemon)
        exits = Counter(e["contact"] for e in daemon.ledger() if e["action"] == "exit")
        assert exits == dict.fromkeys(early + late, 1)  # none dropped, none twice
        assert len(maildir_files(tmp_path)) == 2 * everyone
        return daemon, found
    finally:
        daemon.stop()


def test_reload_keeps_waiting_contacts_on_the_version_they_started_on(tmp_path: Path) -> None:
    _, found = run_edit(tmp_path, V2, "post")
    assert found == {
        **{(f"early{i}", "first"): 1 for i in range(5)},
        **{(f"early{i}", "old_later"): 1 for i in range(5)},  # v1 to the end (edits keep)
        **{(f"late{i}", "first"): 1 for i in range(3)},
        **{(f"late{i}", "new_later"): 1 for i in range(3)},
    }


def test_sighup_reload_moves_waiting_contacts_under_edits_migrate(tmp_path: Path) -> None:
    _, found = run_edit(tmp_path, V2_MIGRATE, "sighup")
    assert found == {
        **{(f"early{i}", "first"): 1 for i in range(5)},
        **{(f"early{i}", "new_later"): 1 for i in range(5)},  # moved at `wait` (s2)
        **{(f"late{i}", "first"): 1 for i in range(3)},
        **{(f"late{i}", "new_later"): 1 for i in range(3)},
    }


def test_restarting_on_edited_scripts_is_a_reload(tmp_path: Path) -> None:
    """The daemon that starts on v2 finds contacts waiting on v1 in the store: it loads v1
    from the store's flow versions and they finish on it."""
    _, found = run_edit(tmp_path, V2, "restart")
    assert Counter(message for (_, message) in found) == {
        "first": 8,
        "old_later": 5,
        "new_later": 3,
    }


def test_contacts_on_a_version_the_store_lost_are_set_aside_and_the_log_names_it(
    tmp_path: Path,
) -> None:
    """A daemon that starts on v2 finds a contact waiting on v1, but the store no longer
    keeps v1 (restored from a backup older than it, say): the contact is set aside, the
    others go on, and the log names the flow and the first 12 characters of the version."""
    script = tmp_path / "onboard.lead"
    script.write_text(V1, encoding="utf-8")
    daemon = Daemon(tmp_path, [str(script)]).start()
    try:
        assert daemon.post("/v1/batch", started(["u1"])).status_code == 200
        until(lambda: sends(daemon) == {("u1", "first"): 1})
        v1 = flow_version(daemon)
        assert daemon.stop() == 0
        store = sqlite3.connect(tmp_path / "leadlang.db")
        try:
            store.execute("DELETE FROM flow_versions WHERE version = ?", (v1,))
            store.commit()
        finally:
            store.close()
        script.write_text(V2, encoding="utf-8")
        daemon.start()
        assert daemon.post("/v1/batch", started(["u2"])).status_code == 200
        shown = f"flow 'onboard' version {v1[:12]} is not loaded"
        until(lambda: any(line.endswith(shown) for line in daemon.output), timeout=WAIT + 90)
        assert any("contact 'u1' could not be processed" in line for line in daemon.output)
        until(lambda: ("u2", "first") in sends(daemon))
        assert ("u1", "old_later") not in sends(daemon)
    finally:
        daemon.stop()


def test_a_broken_script_is_refused_and_the_running_version_goes_on(tmp_path: Path) -> None:
    script = tmp_path / "onboard.lead"
    script.write_text(V1, encoding="utf-8")
    daemon = Daemon(tmp_path, [str(script)]).start()
    try:
        v1 = flow_version(daemon)
        script.write_text(V1.replace("  send old_later\n", "  send nowhere\n"), encoding="utf-8")
        answer = reload(daemon)
        assert answer.status_code == 422
        body = answer.json()
        assert body["error"] == "invalid scripts"
        problem = next(d for d in body["diagnostics"] if d["severity"] == "error")
        assert "nowhere" in problem["message"]
        assert problem["file"].endswith("onboard.lead")
        assert problem["line"] == V1.splitlines().index("  send old_later") + 1
        # (SIGHUP: the same refusal, in the log)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        until(lambda: sum("reload refused" in line for line in daemon.output) >= 2)
        assert flow_version(daemon) == v1
        assert daemon.post("/v1/batch", started(["u1"])).status_code == 200
        until(lambda: sends(daemon) == {("u1", "first"): 1})
        assert requests.post(daemon.url + "/v1/reload", timeout=10).status_code == 401
    finally:
        daemon.stop()


def test_dry_run_reports_the_edit_and_changes_nothing(tmp_path: Path) -> None:
    script = tmp_path / "onboard.lead"
    script.write_text(V1, encoding="utf-8")
    daemon = Daemon(tmp_path, [str(script)]).start()
    try:
        assert daemon.post("/v1/batch", started(["a", "b"])).status_code == 200
        until(lambda: len(sends(daemon)) == 2)
        v1 = flow_version(daemon)
        script.write_text(V2_MIGRATE, encoding="utf-8")
        garbage = reload(daemon, "?dry_run=%00maybe")
        assert garbage.status_code == 400 and garbage.json()["error"] == "bad query"
        answer = reload(daemon, "?dry_run=1")
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert report["dry_run"] is True and report["changed"] is True
        (flow,) = report["flows"]
        assert flow["flow"] == "onboard" and flow["status"] == "changed"
        assert [step["id"] for step in flow["steps"]["changed"]] == ["s3"]
        (waiting,) = report["replay"]["in_flight"]
        assert (waiting["step"], waiting["contacts"], waiting["edits"]) == ("s2", 2, "migrate")
        assert flow_version(daemon) == v1  # nothing was reloaded
        until(lambda: len(sends(daemon)) == 4, timeout=WAIT + 60)
        assert Counter(m for _, m in sends(daemon)) == {"first": 2, "old_later": 2}
    finally:
        daemon.stop()


def two_daemons(tmp_path: Path, db: str) -> tuple[Path, list[Daemon]]:
    """Two daemons on `db` running the script v1, with one Maildir between them."""
    script = tmp_path / "onboard.lead"
    script.write_text(V1, encoding="utf-8")
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    (dirs[0] / "outbox").mkdir()
    (dirs[1] / "outbox").symlink_to(dirs[0] / "outbox", target_is_directory=True)
    return script, [Daemon(d, [str(script)], db=db).start() for d in dirs]


@pytest.mark.parametrize("policy", ["keep", "migrate"])
def test_reload_on_every_daemon_at_once_under_both_policies(tmp_path: Path, policy: str) -> None:
    """Two daemons of one PostgreSQL: contacts wait on v1 (entered through both), the scripts
    change and both daemons are reloaded at the same moment; each waiting contact finishes on
    the version its policy says, exactly once across the two, and new contacts run v2."""
    with fresh_postgres() as db:
        script, daemons = two_daemons(tmp_path, db)
        dirs = [daemon.workdir for daemon in daemons]
        try:
            first, second = daemons
            early = [f"early{i}" for i in range(6)]
            assert first.post("/v1/batch", started(early[:3])).status_code == 200
            assert second.post("/v1/batch", started(early[3:])).status_code == 200
            until(lambda: len(sends(first)) == 6)
            v1 = flow_version(second)
            script.write_text(V2 if policy == "keep" else V2_MIGRATE, encoding="utf-8")
            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(reload, daemons))
            assert [a.status_code for a in answers] == [200, 200]
            v2 = flow_version(first)
            assert v2 != v1
            until(lambda: flow_version(second) == v2, timeout=10)
            late = ["late0", "late1"]
            assert second.post("/v1/batch", started(late)).status_code == 200
            until(lambda: len(sends(first)) == 2 * (len(early) + len(late)), timeout=WAIT + 60)
            time.sleep(0.5)
            later = "old_later" if policy == "keep" else "new_later"
            assert sends(second) == {
                **{(user, "first"): 1 for user in early + late},
                **{(user, later): 1 for user in early},
                **{(user, "new_later"): 1 for user in late},
            }
            assert len(maildir_files(dirs[0])) == 2 * (len(early) + len(late))
        finally:
            for daemon in daemons:
                daemon.stop()


def test_a_reload_on_one_daemon_reaches_the_others(tmp_path: Path) -> None:
    """Only the first daemon is told; the second runs the new program within seconds, for
    its admin API and for the events it takes."""
    with fresh_postgres() as db:
        script, daemons = two_daemons(tmp_path, db)
        try:
            first, second = daemons
            v1 = flow_version(second)
            script.write_text(V2, encoding="utf-8")
            assert reload(first).status_code == 200
            v2 = flow_version(first)
            assert v2 != v1
            until(lambda: flow_version(second) == v2, timeout=10)
            assert second.post("/v1/batch", started(["n1"])).status_code == 200
            until(lambda: len(sends(second)) == 1)
            contact = second.admin("/v1/contacts/n1").json()
            assert [e["version"] for e in contact["enrollments"]] == [v2]
        finally:
            for daemon in daemons:
                daemon.stop()


def test_the_store_keeps_every_flow_version_and_the_program_last_published(
    store_url: str,
) -> None:
    """The store's side of a reload (`publish_program`): each publish is one generation more,
    the program read back is the last one, and the IR of every flow version stays readable
    for the contacts still on it (`edits keep`); a version published again keeps the IR it
    was first stored with."""

    async def body() -> None:
        store = await open_store(store_url)
        try:
            assert await store.current_program() == (0, None)
            assert await store.program_generation() == 0
            first = await store.publish_program(
                '{"p": 1}', [("onboard", "v1", "ir-1"), ("welcome", "w1", "ir-w")], NOW
            )
            # onboard edited, welcome not
            second = await store.publish_program(
                '{"p": 2}', [("onboard", "v2", "ir-2"), ("welcome", "w1", "ir-w2")], NOW + 1
            )
            assert (first, second) == (1, 2)
            assert await store.current_program() == (2, '{"p": 2}')
            assert await store.program_generation() == 2
            wanted = [("onboard", "v1"), ("onboard", "v2"), ("welcome", "w1"), ("onboard", "v3")]
            assert await store.flow_version_irs(wanted) == {
                ("onboard", "v1"): "ir-1",
                ("onboard", "v2"): "ir-2",
                ("welcome", "w1"): "ir-w",
            }
        finally:
            await store.close()

    asyncio.run(body())


def test_daemons_publishing_at_once_get_one_generation_each(postgres_db: str) -> None:
    """Several daemons of one PostgreSQL reloading the same scripts at the same moment (the
    same new flow versions, the generation row made or raised at once): every publish
    succeeds, each with a generation of its own."""

    async def body() -> list[int]:
        stores = [await open_store(postgres_db) for _ in range(4)]
        try:
            generations: list[int] = []
            for n in range(3):
                flows = [("onboard", f"v{n}", f"ir-{n}")]
                generations += await asyncio.gather(
                    *(store.publish_program(f'{{"p": {n}}}', flows, NOW) for store in stores)
                )
            return generations
        finally:
            for store in stores:
                await store.close()

    assert sorted(asyncio.run(body())) == list(range(1, 13))
