"""The `leadlang` command as a user meets it: exit codes and messages that say what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
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
    # The message names the user's own folders, not a fixed example.
    for folder in ("act-on", "card", "contactflow", "flowio"):
        assert f"`{EXAMPLES / folder}`" in result.output
    assert "name one of them" in result.output


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


def test_help_shows_each_commands_whole_summary() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "Explain a diagnostic code, e.g. `leadlang explain N001`." in result.output
    commands = result.output.split("Commands:", 1)[1]
    assert "..." not in commands  # no summary is cut short


def test_check_says_what_it_checked_on_success(tmp_path: Path) -> None:
    (tmp_path / "a.lead").write_text(
        'message hi:\n  channel email\n  subject "s"\n  text "t"\n'
        "flow one:\n  on signed_up\n  send hi\n"
        "when score > 5 then send hi\n"
    )
    (tmp_path / "b.lead").write_text("event signed_up\n")
    result = CliRunner().invoke(main, ["check", str(tmp_path)])
    assert result.exit_code == 0
    assert result.output == "checked 2 files, 2 flows: no problems\n"
    # Machine formats print only their document.
    result = CliRunner().invoke(main, ["check", str(tmp_path), "--format", "json"])
    assert result.output.strip() == "[]"


def test_check_with_warnings_says_how_many(tmp_path: Path) -> None:
    (tmp_path / "a.lead").write_text(
        'message hi:\n  channel email\n  subject "s"\n  text "t"\n'
        "flow one:\n  on signed_up\n  send hi\n  send hi\n"
    )
    result = CliRunner().invoke(main, ["check", str(tmp_path / "a.lead")])
    assert result.exit_code == 0
    assert result.output.endswith("checked 1 file, 1 flow: 1 warning\n")


def test_simulate_reads_the_event_log_from_standard_input() -> None:
    events = EXAMPLES / "card" / "events.jsonl"
    card = str(EXAMPLES / "card")
    from_file = CliRunner().invoke(main, ["simulate", card, "--events", str(events)])
    piped = CliRunner().invoke(main, ["simulate", card, "--events", "-"], input=events.read_bytes())
    assert piped.exit_code == 0
    assert piped.output == from_file.output and piped.output
    bad = CliRunner().invoke(main, ["simulate", card, "--events", "-"], input=b"{\n")
    assert bad.exit_code == 2
    assert "standard input: line 1: not valid JSON" in bad.output


def test_check_counts_each_file_once_and_names_the_standard_library(tmp_path: Path) -> None:
    (tmp_path / "shared.lead").write_text("trait plan: text\n")
    for name in ("one", "two"):
        folder = tmp_path / "programs" / name
        folder.mkdir(parents=True)
        (folder / f"{name}.lead").write_text(
            f'use "../../shared.lead"\nuse std.traits\nflow {name}:\n  on x\n  tag "t"\n'
        )
    result = CliRunner().invoke(main, ["check", str(tmp_path / "programs")])
    assert result.exit_code == 0, result.output
    # one.lead, two.lead, shared.lead and std.traits: each read by both programs, counted once
    assert result.output == "checked 4 files (1 from the standard library), 2 flows: no problems\n"


_LONE_SURROGATES = 'trait note: text\nmessage m:\n  channel email\n  subject "s"\n  text "t"\nflow f:\n  on signed_up\n  send m\n  tag "\\ud800x"\n  set note = "a\\udc00"\n'


@pytest.mark.parametrize("fmt", ["full", "concise", "json", "sarif"])
def test_a_lone_surrogate_escape_is_s005_in_every_format(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "s.lead").write_text(_LONE_SURROGATES)
    result = _leadlang(tmp_path, "check", "s.lead", "--format", fmt)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    if fmt == "concise":
        assert result.stdout.splitlines() == [
            "s.lead:9:8: error[S005] invalid escape in string: a lone UTF-16 surrogate",
            "s.lead:10:16: error[S005] invalid escape in string: a lone UTF-16 surrogate",
        ]


def test_a_file_name_that_is_not_utf8_prints_without_raising(tmp_path: Path) -> None:
    bad = os.fsencode(tmp_path) + b"/bad\xff.lead"
    with open(bad, "wb") as handle:
        handle.write(b"segment s = \n")
    for fmt in ("full", "concise", "json", "sarif"):
        result = _leadlang(tmp_path, "check", ".", "--format", fmt)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert "bad\ufffd.lead" in result.stdout


def _leadlang(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own: its real standard output, encoding included."""
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent), "NO_COLOR": "1"}
    env["PYTHONIOENCODING"] = "utf-8"  # strict, whatever the locale
    return subprocess.run(
        [sys.executable, "-m", "leadlang", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
@pytest.mark.parametrize(
    "args",
    [
        ["compile", str(EXAMPLES / "card")],
        ["simulate", str(EXAMPLES / "card"), "--events", str(EXAMPLES / "card" / "events.jsonl")],
        ["explain", "N001"],
    ],
)
def test_a_full_disk_under_the_output_is_an_error_not_a_traceback(args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "leadlang", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)},
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr == "error: cannot write the output: No space left on device\n"


def test_events_from_a_closed_standard_input_are_an_error() -> None:
    # (`leadlang simulate DIR --events - <&-`: an AttributeError traceback on `None.buffer`)
    result = subprocess.run(
        [sys.executable, "-m", "leadlang", "simulate", str(EXAMPLES / "card"), "--events", "-"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)},
        preexec_fn=lambda: os.close(0),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == "error: cannot read events file `-`: standard input is closed\n"
