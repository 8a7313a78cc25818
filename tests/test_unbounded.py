"""No input makes `check` or `simulate` work without bound: each case that could hang or eat
memory runs the command in a child process under a time limit and a 1 GB memory cap (see
`bounded.py`), so a regression fails here instead of stalling CI. The nesting cases run in
this process, whose stack pytest already deepens: a pass that recurses too deep fails here
first."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from bounded import no_traceback, run_leadlang
from click.testing import CliRunner, Result

from leadlang.cli import main
from leadlang.regex import compile_pattern, problem, translate

pytestmark = pytest.mark.timeout(60)  # (the cases run in this process too)

TRACK = {"type": "track", "userId": "u", "event": "e", "timestamp": "2025-01-01T00:00:00Z"}


def _track(**props: object) -> str:
    return json.dumps({**TRACK, "properties": props})


def _invoke(*args: str | Path) -> Result:
    """The command in this process; an exception (RecursionError...) fails the test."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_a_backtracking_pattern_runs_in_linear_time(tmp_path: Path) -> None:
    script = tmp_path / "re.lead"
    script.write_text(
        'event e(name: text)\nflow f:\n  on e where name matches "(a+)+$"\n  tag "x"\n'
    )
    log = tmp_path / "events.jsonl"
    # 34 characters took Python's engine hours; a megabyte is nothing for RE2
    log.write_text(_track(name="a" * 34 + "!") + "\n" + _track(name="a" * 1_000_000 + "!") + "\n")
    result = run_leadlang("simulate", script, "--events", log)
    assert result.returncode == 0, result.stderr
    assert '"action":"tag"' not in result.stdout


@pytest.mark.parametrize(
    ("pattern", "code"),
    [
        ("(?=a)b", "T013"),
        ("(?<!a)b", "T013"),
        ("(a)\\1", "T013"),
        ("(?P<x>a)(?P=x)", "T013"),
        ("(chief|ceo", "T010"),
        ("a{1001}", "T013"),
    ],
)
def test_patterns_re2_cannot_run_are_diagnostics(pattern: str, code: str) -> None:
    found = problem(pattern)
    assert found is not None and found[0] == code


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("(?i)\\bvp\\b", "The VP of sales", True),
        ("\\d+", "٣", True),  # an Arabic-Indic digit is a digit, as in Python
        ("^\\w+$", "héllo", True),
        ("^\\W$", "é", False),
        ("\\s", "a\u00a0b", True),
        ("end\\Z", "the end", True),
        ("end\\Z", "end of it", False),
        ("[\\d]x", "7x", True),
        ("[]a]", "]", True),
        ("\\u00e9", "é", True),
        ("(?P<word>ab)+", "abab", True),
    ],
)
def test_the_dialect_stays_pythons(pattern: str, text: str, matches: bool) -> None:
    compiled = compile_pattern(pattern)
    assert compiled is not None, translate(pattern)
    assert compiled(text) is matches


def test_checking_a_template_never_evaluates_it(tmp_path: Path) -> None:
    script = tmp_path / "t.lead"
    script.write_text(
        "message m:\n  channel email\n"
        "  subject \"{{ 'a' * 10**10 }}{{ 'a' | center(9999999999) }}\"\n"
        "  text \"{{ ['a'] * 10**9 }}{{ first_name }}\"\n"
        '  html "{{ ' + "1" * 5000 + ' }}"\n'
    )
    result = run_leadlang("check", "--format", "concise", script)
    assert no_traceback(result), result.stderr
    assert "F004" in result.stdout  # `first_name` has no source: the template was read
    assert "out of range" in result.stdout  # the 5,000-digit number


def test_a_json_line_nested_1000_deep_is_a_bad_line(tmp_path: Path) -> None:
    script = tmp_path / "s.lead"
    script.write_text('event e()\nflow f:\n  on e\n  tag "x"\n')
    log = tmp_path / "events.jsonl"
    deep = json.dumps(TRACK)[:-1] + ', "properties": {"a": ' + "[" * 1000 + "]" * 1000 + "}}"
    log.write_text(json.dumps(TRACK) + "\n" + deep + "\n")
    result = run_leadlang("simulate", script, "--events", log)
    assert result.returncode == 2
    assert no_traceback(result), result.stderr
    assert "line 2: properties or traits nested more than 64 levels deep" in result.stderr


def test_nested_blocks_are_a_diagnostic_or_work(tmp_path: Path) -> None:
    def nested(depth: int) -> str:
        steps = "".join("  " * (i + 1) + f"if event.x > {i}:\n" for i in range(depth))
        return f'event e(x: number)\nflow f:\n  on e\n{steps}{"  " * (depth + 1)}tag "deep"\n'

    too_deep = tmp_path / "deep400.lead"
    too_deep.write_text(nested(400))
    result = _invoke("check", "--format", "concise", too_deep)
    assert result.exit_code == 1
    assert "S007" in result.output

    # the deepest accepted, with the deepest condition, through every pass
    deepest = tmp_path / "deep99.lead"
    condition = "event.x" + " + event.x" * 145 + " > 1"
    deepest.write_text(nested(99).replace("if event.x > 98:", f"if {condition}:"))
    log = tmp_path / "events.jsonl"
    log.write_text(_track(x=500) + "\n")
    assert _invoke("check", deepest).exit_code == 0
    simulated = _invoke("simulate", deepest, "--events", log)
    assert simulated.exit_code == 0, simulated.output
    assert '"tag":"deep"' in simulated.output
    for fmt in ("mermaid", "dot"):
        assert _invoke("graph", "--format", fmt, deepest).exit_code == 0


def test_a_chain_of_definitions_is_a_diagnostic_or_works(tmp_path: Path) -> None:
    def chain(n: int) -> str:
        metrics = [f"metric m{i} = m{i - 1} + 1" for i in range(n - 1, 0, -1)]
        segments = [f"segment s{i} = s{i - 1} and m{i} > 0" for i in range(n - 1, 0, -1)]
        return "\n".join(
            ["event e(x: number)", *metrics, "metric m0 = count(e)", *segments,
             "segment s0 = m0 > 0", f'when s{n - 1} then tag "x"', ""]
        )  # fmt: skip

    long = tmp_path / "long.lead"
    long.write_text(chain(1500))  # declared last-first: each definition reads a later one
    result = _invoke("check", "--format", "concise", long)
    assert result.exit_code == 1
    assert result.output.count("S007") == 2  # once per chain, where it first goes too deep

    short = tmp_path / "short.lead"
    short.write_text(chain(30))
    log = tmp_path / "events.jsonl"
    log.write_text(_track(x=1) + "\n")
    simulated = _invoke("simulate", short, "--events", log)
    assert simulated.exit_code == 0, simulated.output
    assert '"tag":"x"' in simulated.output


def test_a_100_mb_line_is_skipped_in_linear_time_and_little_memory(tmp_path: Path) -> None:
    # (a line over 1 MB is a bad line, dropped as it is read: never held whole)
    script = tmp_path / "s.lead"
    script.write_text('event e(blob: text)\nflow f:\n  on e\n  tag "x"\n')
    log = tmp_path / "events.jsonl"
    with log.open("w") as handle:
        handle.write(_track(blob="x" * (100 << 20)) + "\n")
        handle.write(_track(blob="y") + "\n")
    result = run_leadlang("simulate", script, "--events", log)
    assert result.returncode == 2, result.stderr
    assert "line 1: longer than 1 MB" in result.stderr
    result = run_leadlang("simulate", script, "--events", log, "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"action":"tag"') == 1  # (line 2's event)


def test_a_long_chain_of_use_lines_loads(tmp_path: Path) -> None:
    # each file uses the next (a recursive loader stopped near 480): followed with a stack
    for i in range(600):
        uses = f'use "m{i + 1}.lead"\n' if i < 599 else 'use "m0.lead"\n'  # (and a cycle)
        (tmp_path / f"m{i}.lead").write_text(f"{uses}event e{i}()\n")
    result = _invoke("check", "--format", "concise", tmp_path / "m0.lead")
    assert result.exit_code == 1
    assert result.output.count("N011") == 1 and "S001" not in result.output


def test_a_3_mb_string_and_150000_comment_lines_check_in_little_memory(
    tmp_path: Path,
) -> None:
    # A repeated group in a pattern keeps a mark per character matched (some 100 bytes):
    # the lexer's string and newline tokens are possessive, so a long one costs nothing.
    # (Just under the 4 MB a script may have; a 3.5 MB string took over 1 GB before.)
    script = tmp_path / "s.lead"
    script.write_text(
        'event e\nflow f:\n  on e\n  tag "' + "x" * 3_500_000 + '"\n' + "# note\n\n\n" * 50_000
    )
    result = run_leadlang("check", "--format", "concise", script)
    assert result.returncode == 0, result.stderr[-2000:]
    assert no_traceback(result)


def test_a_fifo_for_a_script_or_a_template_is_an_error_not_a_wait(tmp_path: Path) -> None:
    # (opening a FIFO waits for a writer, and reading it for its writer's end: forever)
    os.mkfifo(tmp_path / "pipe.lead")
    os.mkfifo(tmp_path / "t.html")
    script = tmp_path / "s.lead"
    script.write_text('message m:\n  channel email\n  subject "s"\n  html file "t.html"\n')
    result = run_leadlang("check", "--format", "concise", tmp_path / "pipe.lead", script)
    assert result.returncode == 1, result.stderr
    assert no_traceback(result), result.stderr
    assert (
        "S006" in result.stdout and "pipe.lead`: it is a pipe (FIFO), not a file" in result.stdout
    )
    assert "F007" in result.stdout and "t.html`: it is a pipe (FIFO), not a file" in result.stdout


def test_a_template_name_with_a_nul_is_f007(tmp_path: Path) -> None:
    script = tmp_path / "s.lead"
    script.write_text('message m:\n  channel email\n  subject "s"\n  html file "a\\u0000.html"\n')
    result = _invoke("check", "--format", "concise", script)
    assert result.exit_code == 1
    assert "F007" in result.output and "it does not exist" in result.output


def test_more_workers_than_contacts_start_no_more_processes_than_contacts(
    tmp_path: Path,
) -> None:
    # (each worker had its share built, and a process forked for it, empty or not)
    script = tmp_path / "s.lead"
    script.write_text('event e()\nflow f:\n  on e\n  tag "x"\n')
    log = tmp_path / "events.jsonl"
    log.write_text(json.dumps(TRACK) + "\n" + json.dumps({**TRACK, "userId": "v"}) + "\n")
    result = run_leadlang("simulate", script, "--events", log, "--workers", "100000000000")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count('"action":"tag"') == 2


def test_an_expected_file_without_end_or_nested_deep_is_an_error(tmp_path: Path) -> None:
    script = tmp_path / "s.lead"
    script.write_text('event e()\nflow f:\n  on e\n  tag "x"\n')
    log = tmp_path / "events.jsonl"
    log.write_text(json.dumps(TRACK) + "\n")
    # (it was read whole: all the memory there is)
    result = run_leadlang("simulate", script, "--events", log, "--expect", "/dev/zero")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: /dev/zero: line 1: longer than 1 MB" in result.stderr
    assert no_traceback(result)
    deep = tmp_path / "expected.jsonl"
    deep.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    result = run_leadlang("simulate", script, "--events", log, "--expect", deep)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: {deep}: line 1: not valid JSON" in result.stderr
    assert no_traceback(result)


def test_a_config_without_end_is_refused_in_little_memory() -> None:
    # (it was read whole: some 5 GB in 15 s, then more)
    result = run_leadlang("effects", "--config", "/dev/zero")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr == "error: cannot read config `/dev/zero`: it is larger than 1 MB\n"
