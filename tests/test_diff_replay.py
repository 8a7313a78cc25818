"""`leadlang diff OLD NEW --db URL`: a store built by a real `leadlang serve` replayed through
an edited script names exactly the contacts whose effects the edit changes, and tells them
from contacts whose ledger holds effects of an earlier version."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from leadlang.interpreter.check import check_paths
from leadlang.interpreter.compile import compile_program
from leadlang.runtime.diff import contact_text, diff_report
from leadlang.runtime.store.sql import open_store
from tests.serve_daemon import Daemon

HEAD = """\
event signed_up(email: text, plan: text)

message hello:
  channel email
  subject "hello {{ id }}"
  text "hello"

message pro_tips:
  channel email
  subject "tips for pros"
  text "tips"
"""

V1 = (
    HEAD
    + """
flow welcome:
  on signed_up
  set email = event.email
  send hello
  wait 1h
  if event.plan == "pro":
    send pro_tips
"""
)

# What ran before V1: every welcome also tagged `early`.
V0 = V1 + '  tag "early"\n'

# The edit: teams get the pro tips too (a changed condition), pros are tagged (a step
# added), big orders make a VIP (a flow added).
V2 = (
    V1.replace('event.plan == "pro":', 'event.plan == "pro" or event.plan == "team":')
    + '    tag "pro"\n'
    + """
flow vip:
  on order_completed where total > 100
  tag "vip"
"""
)

CHANGED = {"bob", "cat", "eve"}  # a pro, a team, a big order
UNCHANGED = {"ann", "dan", "fay"}  # basic plans, small orders
WAITING = "hal"  # signed up minutes ago: at `wait 1h` (s2), nothing differs yet
EARLIER = "gus"  # welcomed under V0


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def signed_up(who: str, plan: str, t: float) -> dict[str, Any]:
    props = {"email": f"{who}@example.com", "plan": plan}
    return {"type": "track", "userId": who, "event": "signed_up", "properties": props,
            "timestamp": stamp(t)}  # fmt: skip


def order(who: str, total: int, t: float) -> dict[str, Any]:
    return {"type": "track", "userId": who, "event": "order_completed",
            "properties": {"total": total}, "timestamp": stamp(t)}  # fmt: skip


def serve(workdir: Path, script: Path, batch: list[dict[str, Any]], db: str | None) -> str:
    daemon = Daemon(workdir, [str(script)], db=db).start()
    try:
        assert daemon.post("/v1/batch", {"batch": batch}).status_code == 200
        daemon.wait_idle()
    finally:
        assert daemon.stop() == 0
    return daemon.db


def write_versions(root: Path) -> None:
    for name, text in (("v0", V0), ("v1", V1), ("v2", V2)):
        (root / name).mkdir()
        (root / name / "shop.lead").write_text(text, encoding="utf-8")


def v1_batch(now: float) -> list[dict[str, Any]]:
    return [
        signed_up("ann", "basic", now - 86400),
        signed_up("bob", "pro", now - 86300),
        signed_up("cat", "team", now - 86200),
        order("dan", 50, now - 86100),
        order("eve", 500, now - 86000),
        signed_up("fay", "basic", now - 85900),
        order("fay", 20, now - 85800),
        signed_up(WAITING, "team", now - 600),
    ]


def build_store(root: Path, db: str | None) -> str:
    """gus welcomed under V0; then the others under V1 (a day or two ago: every timer due)."""
    write_versions(root)
    now = time.time()
    db = serve(root, root / "v0", [signed_up(EARLIER, "basic", now - 2 * 86400)], db)
    return serve(root, root / "v1", v1_batch(now), db)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("diff_replay")
    return root, build_store(root, None)


def leadlang(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leadlang", *args], cwd=cwd, capture_output=True, text=True
    )


def effect(body: str) -> tuple[str, str | None, str | None]:
    data = orjson.loads(body)
    return data["action"], data.get("flow"), data.get("tag") or data.get("message")


def check_replay(replay: dict[str, Any]) -> None:
    by_contact = {entry["contact"]: entry for entry in replay["contacts"]}
    assert set(by_contact) == CHANGED | {EARLIER}
    assert {c for c, e in by_contact.items() if e["edit"]} == CHANGED
    for contact in CHANGED:
        assert by_contact[contact]["ledger_only"] == []
        assert by_contact[contact]["old_replay_matches_ledger"] is True
    assert [effect(b) for b in by_contact["bob"]["replay_only"]] == [("tag", "welcome", "pro")]
    assert [effect(b) for b in by_contact["cat"]["replay_only"]] == [
        ("send", "welcome", "pro_tips"),
        ("tag", "welcome", "pro"),
    ]
    assert [effect(b) for b in by_contact["eve"]["replay_only"]] == [
        ("enter", "vip", None),
        ("tag", "vip", "vip"),
        ("exit", "vip", None),
    ]
    gus = by_contact[EARLIER]
    assert gus["edit"] is False and gus["old_replay_matches_ledger"] is False
    assert [effect(b) for b in gus["ledger_only"]] == [("tag", "welcome", "early")]
    assert gus["old_replay"]["ledger_only"] == gus["ledger_only"]
    assert replay["contacts"] == sorted(replay["contacts"], key=lambda e: e["contact"])
    counts = [replay[k] for k in ("replayed_contacts", "replayed_events", "differ")]
    assert counts == [8, 9, 4]
    assert replay["changed_by_edit"] == 3
    assert (replay["ledger_not_old"], replay["errors"], replay["unprocessed_events"]) == (1, 0, 0)
    assert replay["in_flight"] == [
        {
            "flow": "welcome",
            "step": "s2",
            "contacts": 1,
            "edits": "keep",
            "outcome": "they finish on the old version (edits keep)",
        }
    ]


@pytest.mark.timeout(180)
def test_the_replay_names_exactly_the_contacts_the_edit_changes(store: tuple[Path, str]) -> None:
    root, db = store
    result = leadlang(root, "diff", "v1", "v2", "--db", db, "--format", "json")
    assert result.returncode == 1, result.stderr
    report = orjson.loads(result.stdout)
    assert [f["flow"] for f in report["flows"]] == ["welcome", "vip"]
    check_replay(report["replay"])


@pytest.mark.timeout(180)
def test_the_text_report_tells_the_edit_from_earlier_versions(store: tuple[Path, str]) -> None:
    root, db = store
    config = root / "diff.toml"
    config.write_text(f'[store]\nurl = "{db}"\n', encoding="utf-8")
    result = leadlang(root, "diff", "v1", "v2", "--config", str(config))
    assert result.returncode == 1, result.stderr
    text = result.stdout
    heads = [line for line in text.splitlines() if line.startswith("contact ")]
    assert heads == [
        "contact bob: the edit changes its effects",
        "contact cat: the edit changes its effects",
        "contact eve: the edit changes its effects",
        "contact gus: differs from the ledger, but the old version's replay differs the same"
        " way (effects of earlier versions or late events): not this edit",
    ]
    assert "  + " in text and "tag=early" in text
    assert "the edit changes the effects of 3 contacts" in text
    assert "the ledger of 1 contact differs from the old version's replay too" in text
    assert text.endswith(
        "contacts inside the changed flows now (where the old version's replay leaves them):\n"
        "  welcome s2: 1 contact; they finish on the old version (edits keep)\n"
    )


@pytest.mark.timeout(180)
def test_no_edit_changes_nobody(store: tuple[Path, str]) -> None:
    root, db = store
    result = leadlang(root, "diff", "v1", "v1", "--db", db, "--format", "json")
    assert result.returncode == 0, result.stderr
    replay = orjson.loads(result.stdout)["replay"]
    assert replay["changed_by_edit"] == 0
    assert [e["contact"] for e in replay["contacts"]] == [EARLIER]


def program_ir(path: Path) -> dict[str, Any]:
    result = check_paths([str(path)])
    assert result.program is not None
    program = compile_program(result.program)
    program["event_types"] = {n: dict(p) for n, p in result.program.event_params.items()}
    return program


@pytest.mark.timeout(180)
def test_diff_report_for_a_dry_run_reload(store: tuple[Path, str]) -> None:
    root, db = store

    async def report(**kw: Any) -> dict[str, Any]:
        opened = await open_store(db)
        try:
            return await diff_report(program_ir(root / "v1"), program_ir(root / "v2"), opened, **kw)
        finally:
            await opened.close()

    full = asyncio.run(report())
    check_replay(full["replay"])
    first = asyncio.run(report(max_contacts=2))["replay"]
    assert [e["contact"] for e in first["contacts"]] == ["bob", "cat"]
    assert first["differ"] == 4  # counted all the same
    # without a store: the flows and steps only
    alone = asyncio.run(diff_report(program_ir(root / "v1"), program_ir(root / "v2")))
    assert "replay" not in alone and alone["changed"] is True


@pytest.mark.timeout(180)
def test_diff_next_to_a_running_daemon(tmp_path: Path) -> None:
    """What a dry-run reload does: read the store while the daemon that owns it runs."""
    write_versions(tmp_path)
    daemon = Daemon(tmp_path, [str(tmp_path / "v1")]).start()
    try:
        assert daemon.post("/v1/batch", {"batch": v1_batch(time.time())}).status_code == 200
        daemon.wait_idle()
        result = leadlang(tmp_path, "diff", "v1", "v2", "--db", daemon.db, "--format", "json")
        assert result.returncode == 1, result.stderr
        replay = orjson.loads(result.stdout)["replay"]
        assert {e["contact"] for e in replay["contacts"]} == CHANGED
        assert all(e["old_replay_matches_ledger"] for e in replay["contacts"])
        # the daemon goes on taking events
        more = [order("ivy", 900, time.time() - 60)]
        assert daemon.post("/v1/batch", {"batch": more}).status_code == 200
        daemon.wait_idle()
    finally:
        assert daemon.stop() == 0


@pytest.mark.timeout(240)
def test_the_replay_on_postgresql(tmp_path: Path, postgres_db: str) -> None:
    db = build_store(tmp_path, postgres_db)
    result = leadlang(tmp_path, "diff", "v1", "v2", "--db", db, "--format", "json")
    assert result.returncode == 1, result.stderr
    check_replay(orjson.loads(result.stdout)["replay"])


@pytest.mark.timeout(180)
def test_an_edit_that_also_changes_a_contact_with_an_older_ledger(store: tuple[Path, str]) -> None:
    """gus's ledger is V0's; an edit of V1 that changes gus too: the lines against the
    ledger, and the edit's own lines (old replay -> new replay) beside them."""
    root, db = store
    (root / "v3").mkdir(exist_ok=True)
    (root / "v3" / "shop.lead").write_text(V1 + '  tag "welcomed"\n', encoding="utf-8")
    result = leadlang(root, "diff", "v1", "v3", "--db", db, "--format", "json")
    assert result.returncode == 1, result.stderr
    gus = next(
        e for e in orjson.loads(result.stdout)["replay"]["contacts"] if e["contact"] == "gus"
    )
    assert gus["edit"] is True and gus["old_replay_matches_ledger"] is False
    assert [effect(b) for b in gus["ledger_only"]] == [("tag", "welcome", "early")]
    assert [effect(b) for b in gus["replay_only"]] == [("tag", "welcome", "welcomed")]
    assert gus["edit_only"]["old_only"] == []
    assert [effect(b) for b in gus["edit_only"]["new_only"]] == [("tag", "welcome", "welcomed")]
    text = leadlang(root, "diff", "v1", "v3", "--db", db).stdout
    assert "contact gus: the edit changes its effects, and its ledger differs" in text
    assert "  the edit alone (old version's replay -> new version's):\n    + " in text


def test_a_contact_id_is_escaped_in_its_heading_as_in_its_lines() -> None:
    # (an id with ESC or U+2028 moved the terminal's cursor or broke the heading's line)
    entry = {
        "contact": "ann\x1b[2J\u2028x",
        "edit": True,
        "old_replay_matches_ledger": True,
        "ledger_only": [],
        "replay_only": [],
    }
    assert contact_text(entry) == "contact ann\\x1b[2J\\u2028x: the edit changes its effects"
    errored = {"contact": "bo\nb", "error": "cannot be replayed"}
    assert contact_text(errored) == "contact bo\\nb: cannot be replayed"
