"""The `leadlang` command as a user meets it: exit codes and messages that say what to do."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from leadlang.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_simulate_on_a_folder_of_several_programs_says_which_to_name() -> None:
    events = EXAMPLES / "card" / "events.jsonl"
    result = CliRunner().invoke(main, ["simulate", str(EXAMPLES), "--events", str(events)])
    assert result.exit_code == 2
    assert "several programs" in result.output
    assert "Traceback" not in result.output


def test_graph_on_a_folder_of_several_programs_exits_2() -> None:
    result = CliRunner().invoke(main, ["graph", str(EXAMPLES)])
    assert result.exit_code == 2
    assert "name one folder" in result.output


def test_explain_unknown_code_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["explain", "Z999"])
    assert result.exit_code == 2
    assert "unknown diagnostic code `Z999`" in result.output


def test_ci_runs_the_readme_test_command_exactly() -> None:
    root = EXAMPLES.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    block = readme.split("**Test it**", 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    command = block.strip()
    assert command.endswith("pytest")
    ci_lines = (root / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert f"{command} || exit 1" in ci_lines
