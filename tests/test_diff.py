"""`leadlang diff OLD NEW`: per flow, the steps added, removed and changed by step id, the
header changes and the versions; the other declarations the flows use; exit codes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from leadlang.cli import main
from leadlang.diff import diff_programs, format_text
from leadlang.interpreter.check import check_paths
from leadlang.interpreter.compile import compile_program
from leadlang.runtime.diff import in_flight

WriteFiles = Callable[[dict[str, str]], Path]

MESSAGES = """\
message hello:
  channel email
  subject "hello {{ id }}"
  text "hello"

message reminder:
  channel email
  subject "reminder"
  text "come back"
"""

OLD = (
    MESSAGES
    + """
flow welcome:
  on signed_up
  set email = event.email
  send hello
  wait 1d
  send reminder
  tag "welcomed"

flow winback:
  on cart_abandoned
  wait 2h
  send reminder

flow legacy:
  on page_viewed
  tag "seen"
"""
)

# welcome: `wait 1d` -> `wait 2d` (s2 changed), `send reminder` now inside an `if` (s3
# changed kind, s3.then.0 added), `tag "welcomed"` gone (s4 removed), a goal and
# `reenter always` added; winback untouched; legacy removed; vip added.
NEW = (
    MESSAGES.replace('subject "reminder"', 'subject "a reminder"')
    + """
flow welcome:
  on signed_up
  reenter always
  goal order_completed within 3d
  set email = event.email
  send hello
  wait 2d
  if event.plan == "pro":
    send reminder

flow winback:
  on cart_abandoned
  wait 2h
  send reminder

flow vip:
  on order_completed where total > 100
  tag "vip"
"""
)


def program_ir(path: Path) -> dict[str, Any]:
    result = check_paths([str(path)])
    assert result.program is not None, result.diagnostics
    return compile_program(result.program)


@pytest.fixture
def versions(write_files: WriteFiles) -> tuple[dict[str, Any], dict[str, Any]]:
    root = write_files({"old/shop.lead": OLD, "new/shop.lead": NEW})
    return program_ir(root / "old"), program_ir(root / "new")


def flow_version(program: dict[str, Any], name: str) -> str:
    return next(f["version"] for f in program["flows"] if f["name"] == name)


def test_the_report_lists_steps_added_removed_and_changed_by_id(
    versions: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    old, new = versions
    report = diff_programs(old, new)
    assert report["changed"] is True
    assert report["version"] == {"old": old["version"], "new": new["version"]}
    flows = {f["flow"]: f for f in report["flows"]}
    assert [f["flow"] for f in report["flows"]] == ["welcome", "winback", "vip", "legacy"]
    welcome = flows["welcome"]
    assert welcome["status"] == "changed"
    assert welcome["version"] == {
        "old": flow_version(old, "welcome"),
        "new": flow_version(new, "welcome"),
    }
    assert welcome["header"] == [
        {"clause": "goals", "removed": [], "added": ["goal order_completed within 3d"]},
        {"clause": "reenter", "old": "never", "new": "always"},
    ]
    assert welcome["steps"] == {
        "added": [{"id": "s3.then.0", "step": "send email reminder"}],
        "removed": [{"id": "s4", "step": 'tag "welcomed"'}],
        "changed": [
            {
                "id": "s2",
                "old": "wait 1d",
                "new": "wait 2d",
                "changes": [{"field": "duration", "old": "1d", "new": "2d"}],
            },
            {
                "id": "s3",
                "old": "send email reminder",
                "new": 'if event.plan == "pro"',
                "changes": [
                    {
                        "field": "step",
                        "old": "send email reminder",
                        "new": 'if event.plan == "pro"',
                    },
                    {"field": "next", "old": "s4", "new": "(end)"},
                ],
            },
        ],
    }
    assert flows["winback"]["status"] == "unchanged"
    assert flows["winback"]["steps"] == {"added": [], "removed": [], "changed": []}
    assert flows["vip"]["status"] == "added"
    assert flows["vip"]["version"] == {"old": None, "new": flow_version(new, "vip")}
    assert flows["vip"]["steps"]["added"] == [{"id": "s0", "step": 'tag "vip"'}]
    assert flows["vip"]["header"][0] == {
        "clause": "triggers",
        "removed": [],
        "added": ["on order_completed where total > 100"],
    }
    assert flows["legacy"]["status"] == "removed"
    assert flows["legacy"]["steps"]["removed"] == [{"id": "s0", "step": 'tag "seen"'}]
    assert report["program"] == [
        {"kind": "message", "name": "reminder", "status": "changed", "fields": ["subject"]}
    ]


def test_exits_and_when_triggers_are_put_in_words(write_files: WriteFiles) -> None:
    flow = MESSAGES + "\nflow nudge:\n  {header}\n  send hello\n"
    root = write_files(
        {
            "old/shop.lead": flow.format(header="on signed_up\n  exit on order_completed"),
            "new/shop.lead": flow.format(header="when score > 10\n  exit when score > 50"),
        }
    )
    [nudge] = diff_programs(program_ir(root / "old"), program_ir(root / "new"))["flows"]
    assert nudge["header"] == [
        {"clause": "triggers", "removed": ["on signed_up"], "added": ["when score > 10"]},
        {
            "clause": "exits",
            "removed": ["exit on order_completed"],
            "added": ["exit when score > 50"],
        },
    ]


def test_the_text_report_reads_step_by_step(
    versions: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    old, new = versions
    text = format_text(diff_programs(old, new))
    w_old, w_new = flow_version(old, "welcome")[:12], flow_version(new, "welcome")[:12]
    assert text == (
        f"flow welcome: changed (version {w_old} -> {w_new})\n"
        "  + goal order_completed within 3d  (header)\n"
        "  ~ reenter never -> always  (header)\n"
        "  ~ s2           wait 1d  ->  wait 2d\n"
        "      duration: `1d` -> `2d`\n"
        '  ~ s3           send email reminder  ->  if event.plan == "pro"\n'
        "      next: goes to the end of the flow (was s4)\n"
        "  + s3.then.0    send email reminder  (new step)\n"
        '  - s4           tag "welcomed"  (step removed)\n'
        f"flow vip: added (version {flow_version(new, 'vip')[:12]})\n"
        "  + on order_completed where total > 100\n"
        '  + s0           tag "vip"\n'
        f"flow legacy: removed (version {flow_version(old, 'legacy')[:12]})\n"
        "  - on page_viewed\n"
        '  - s0           tag "seen"\n'
        "message reminder: changed (subject)\n"
        "unchanged: flow winback"
    )


def test_the_same_program_has_no_changes(versions: tuple[dict[str, Any], dict[str, Any]]) -> None:
    old, _ = versions
    report = diff_programs(old, old)
    assert report["changed"] is False
    assert all(f["status"] == "unchanged" for f in report["flows"])
    assert format_text(report).endswith("no changes")


def test_a_changed_condition_branch_and_split_name_the_field(write_files: WriteFiles) -> None:
    base = """\
flow f:
  on signed_up
  if plan == "pro":
    tag "pro"
  elif plan == "team":
    tag "team"
  split test:
    50% a: tag "a"
    50% b: tag "b"
"""
    edited = base.replace('plan == "team"', 'plan == "teams"').replace("50% a", "70% a")
    edited = edited.replace("50% b", "30% b")
    traits = "trait plan: text\n"
    root = write_files({"a/t.lead": traits + base, "b/t.lead": traits + edited})
    report = diff_programs(program_ir(root / "a"), program_ir(root / "b"))
    changed = report["flows"][0]["steps"]["changed"]
    assert [(c["id"], c["changes"]) for c in changed] == [
        ("s0", [{"field": "cases.1.cond", "old": 'plan == "team"', "new": 'plan == "teams"'}]),
        (
            "s1",
            [
                {"field": "arms.a.percent", "old": "50%", "new": "70%"},
                {"field": "arms.b.percent", "old": "50%", "new": "30%"},
            ],
        ),
    ]


def test_a_moved_one_line_flow_is_named_after_its_new_line(write_files: WriteFiles) -> None:
    flow = 'when score > 50 then tag "hot"\n'
    score = "score:\n  page_viewed +10\n\n"
    root = write_files({"a/card.lead": score + flow, "b/card.lead": score + "# moved\n" + flow})
    report = diff_programs(program_ir(root / "a"), program_ir(root / "b"))
    statuses = {f["flow"]: (f["status"], f.get("same_as")) for f in report["flows"]}
    assert statuses == {"card:5": ("added", "card:4"), "card:4": ("removed", None)}
    assert "same steps as removed flow `card:4`" in format_text(report)


def test_contacts_inside_a_changed_flow_meet_its_edits_policy(write_files: WriteFiles) -> None:
    migrating = NEW.replace("  reenter always\n", "  reenter always\n  edits migrate\n")
    root = write_files({"old/shop.lead": OLD, "new/shop.lead": NEW, "mig/shop.lead": migrating})
    old = program_ir(root / "old")
    where = {"welcome": {"s4": 1, "s2": 3, "s1": 2}, "winback": {"s0": 5}, "legacy": {"s0": 1}}
    for folder, policy in (("new", "keep"), ("mig", "migrate")):
        new = program_ir(root / folder)
        entries = in_flight(diff_programs(old, new), where, old, new)
        assert [(e["flow"], e["step"], e["contacts"], e["edits"]) for e in entries] == [
            ("welcome", "s1", 2, policy),
            ("welcome", "s2", 3, policy),
            ("welcome", "s4", 1, policy),
            ("legacy", "s0", 1, None),  # (winback did not change: its contacts go on as they are)
        ]
        outcomes = [e["outcome"] for e in entries]
        if policy == "keep":
            assert outcomes[:3] == ["they finish on the old version (edits keep)"] * 3
        else:
            assert outcomes[:3] == [
                "they move to the new version at this same step (edits migrate)",
                "they move to the new version at this step, now `wait 2d` (edits migrate)",
                "their step is gone: they finish on the old version (edits migrate)",
            ]
        assert outcomes[3] == "the flow is removed: they finish on its last version"


# ---------------------------------------------------------------------- the command


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["diff", *args])


def test_exit_codes(write_files: WriteFiles) -> None:
    write_files({"old/shop.lead": OLD, "new/shop.lead": NEW})
    same = run("old", "old")
    assert (same.exit_code, same.output.splitlines()[-1]) == (0, "no changes")
    differ = run("old", "new")
    assert differ.exit_code == 1
    assert differ.output.startswith("flow welcome: changed")


def test_broken_scripts_are_reported_with_their_diagnostics(write_files: WriteFiles) -> None:
    broken = OLD.replace("send reminder\n  tag", "send nothing_here\n  tag")
    write_files({"old/shop.lead": OLD, "bad/shop.lead": broken, "bad2/shop.lead": broken})
    for args in (("old", "bad"), ("bad", "old")):
        result = run(*args)
        assert result.exit_code == 2
        assert "nothing_here" in result.stderr and "bad/shop.lead" in result.stderr
        assert result.stdout == ""
    both = run("bad", "bad2")  # each one's diagnostics, not only the first's
    assert both.exit_code == 2
    assert "bad/shop.lead" in both.stderr and "bad2/shop.lead" in both.stderr
    missing = run("old", "nowhere")
    assert missing.exit_code == 2 and "nowhere" in missing.stderr


def test_json_output_is_the_report(write_files: WriteFiles) -> None:
    root = write_files({"old/shop.lead": OLD, "new/shop.lead": NEW})
    result = run("old", "new", "--format", "json")
    assert result.exit_code == 1
    report = orjson.loads(result.stdout)
    expected = diff_programs(program_ir(root / "old"), program_ir(root / "new"))
    assert report == orjson.loads(orjson.dumps(expected))
    assert "replay" not in report


def test_a_store_that_cannot_be_opened_is_exit_2(write_files: WriteFiles) -> None:
    write_files({"old/shop.lead": OLD})
    result = run("old", "old", "--db", "mysql://nobody@nowhere/x")
    assert result.exit_code == 2
    assert "unsupported database" in result.stderr


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_NAMES = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def example_irs() -> dict[str, dict[str, Any]]:
    return {name: program_ir(EXAMPLES / name) for name in EXAMPLE_NAMES}


@pytest.mark.parametrize("a", EXAMPLE_NAMES)
@pytest.mark.parametrize("b", EXAMPLE_NAMES)
def test_any_two_examples_diff_both_ways(
    a: str, b: str, example_irs: dict[str, dict[str, Any]]
) -> None:
    forward = diff_programs(example_irs[a], example_irs[b])
    backward = diff_programs(example_irs[b], example_irs[a])
    assert forward["changed"] is (a != b)
    assert format_text(forward)  # (renders whatever the steps are)

    def steps(report: dict[str, Any], kind: str) -> set[tuple[str, str]]:
        return {
            (flow["flow"], step["id"]) for flow in report["flows"] for step in flow["steps"][kind]
        }

    assert steps(forward, "added") == steps(backward, "removed")
    assert steps(forward, "changed") == steps(backward, "changed")
    for flow in forward["flows"]:  # steps in written order: a step before the steps inside it
        ids = [step["id"] for step in flow["steps"]["added"] + flow["steps"]["removed"]]
        for i, sid in enumerate(ids):
            assert not any(sid.startswith(other + ".") for other in ids[i + 1 :])
