"""Every example checks clean and replays its event log to its golden effects; every std module
checks clean.

Examples are discovered on disk, so a new folder under examples/ is covered without editing
this file: it needs a `.lead` script, an `events.jsonl` and an `expected.jsonl` (reviewed by
hand; regenerate with `leadlang simulate examples/NAME --events examples/NAME/events.jsonl
--format json > examples/NAME/expected.jsonl` and read the diff).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from leadlang.cli import main
from leadlang.interpreter.check import check_paths
from leadlang.interpreter.compile import compile_program

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir())
STDLIB = sorted((ROOT / "stdlib").glob("*.lead"))


def _describe(diagnostics: list) -> str:
    return "\n".join(
        f"{d.code} {d.severity}: {d.message} at {getattr(d, 'span', '?')}" for d in diagnostics
    )


def test_there_are_examples_and_std_modules() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"card", "flowio", "contactflow", "act-on"} <= names
    assert {"traits", "events", "scoring", "segments"} <= {p.stem for p in STDLIB}


@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda p: p.name)
def test_example_checks_clean(folder: Path) -> None:
    assert list(folder.glob("*.lead")), f"{folder.name} has no .lead script"
    result = check_paths([str(folder)])
    assert not result.usage_error
    assert not result.diagnostics, _describe(result.diagnostics)


@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda p: p.name)
def test_example_simulates_to_its_golden_effects(folder: Path) -> None:
    events = folder / "events.jsonl"
    expected = folder / "expected.jsonl"
    assert events.is_file() and expected.is_file(), f"{folder.name} needs both event files"
    result = CliRunner().invoke(
        main,
        ["simulate", str(folder), "--events", str(events), "--expect", str(expected)],
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda p: p.name)
def test_example_golden_effects_are_well_formed(folder: Path) -> None:
    """The golden file holds effects a person reviewed: every line parses and names a contact
    of the event log, and the flows do something (a golden with no sends proves little)."""
    contacts = {
        e.get("userId") or e.get("anonymousId")
        for e in map(json.loads, (folder / "events.jsonl").read_text().splitlines())
    }
    effects = [json.loads(line) for line in (folder / "expected.jsonl").read_text().splitlines()]
    assert effects
    for effect in effects:
        assert {"at", "contact", "action"} <= effect.keys()
        assert effect["contact"] in contacts
    assert any(e["action"] == "send" for e in effects)
    # Every enrollment ends within the simulated time: one exit per enter.
    enters = sorted((e["contact"], e["flow"]) for e in effects if e["action"] == "enter")
    exits = sorted((e["contact"], e["flow"]) for e in effects if e["action"] == "exit")
    assert enters == exits


@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda p: p.name)
def test_example_event_log_runs_every_send_and_arm(folder: Path) -> None:
    """The event log exercises the whole script: every flow is entered, every `send` step
    (so every branch, split arm and `else` path that sends) is reached, and every split arm
    is chosen for someone."""
    result = check_paths([str(folder)])
    assert result.program is not None
    flows = compile_program(result.program)["flows"]
    effects = [json.loads(line) for line in (folder / "expected.jsonl").read_text().splitlines()]
    entered = {e["flow"] for e in effects if e["action"] == "enter"}
    reached = {(e["flow"], e["step"]) for e in effects if e["action"] in ("send", "skip")}
    chosen = {(e["flow"], e["split"], e["arm"]) for e in effects if e["action"] == "split"}
    missing: list[str] = []
    for flow in flows:
        name = flow["name"]
        if name not in entered:
            missing.append(f"flow `{name}` is never entered")
        for state in flow["states"].values():
            if state["kind"] == "send" and (name, state["id"]) not in reached:
                missing.append(f"`send {state['message']}` ({name} {state['id']}) never runs")
            if state["kind"] == "split":
                for arm in state["arms"]:
                    if (name, state["name"], arm["name"]) not in chosen:
                        missing.append(f"arm `{arm['name']}` of split `{state['name']}` unused")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("module", STDLIB, ids=lambda p: p.stem)
def test_std_module_checks_clean(module: Path) -> None:
    result = check_paths([str(module)])
    assert not result.usage_error
    assert not result.diagnostics, _describe(result.diagnostics)


def test_readme_first_command_works() -> None:
    """`leadlang check examples && leadlang simulate examples/card ... --format text`."""
    runner = CliRunner()
    checked = runner.invoke(main, ["check", str(ROOT / "examples")])
    assert checked.exit_code == 0, checked.output
    card = ROOT / "examples" / "card"
    simulated = runner.invoke(
        main,
        ["simulate", str(card), "--events", str(card / "events.jsonl"), "--format", "text"],
    )
    assert simulated.exit_code == 0, simulated.output
    assert "deal" in simulated.output and "final" in simulated.output
