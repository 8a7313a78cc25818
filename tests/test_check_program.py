"""The checked Program handed to the compiler, and the `check`/`explain` commands."""

from __future__ import annotations

import json
from pathlib import Path

from checking import MESSAGES, check_files, check_text
from click.testing import CliRunner

from leadlang.cli import main
from leadlang.codes import CODES

ROOT = Path(__file__).resolve().parent.parent


def test_program_merges_settings_score_and_tables(tmp_path: Path) -> None:
    result = check_files(
        tmp_path,
        {
            "main.lead": 'use std.scoring\nuse "msgs/messages.lead"\n'
            'settings:\n  timezone "Europe/Paris"\n  quiet hours 21:00 to 08:00\n'
            "  cap email 2 per 1d\n  cap sms 1 per 7d\n"
            'trait plan: text = "free"\n'
            "flow f:\n  on signed_up\n  send deal\n",
            "msgs/messages.lead": MESSAGES,
        },
    )
    assert result.diagnostics == []
    program = result.program
    assert program is not None
    assert program.timezone == "Europe/Paris"
    assert program.quiet_hours is not None
    assert (program.quiet_hours[0].hour, program.quiet_hours[1].hour) == (21, 8)
    assert [(c.channel, c.count, c.per_seconds) for c in program.caps] == [
        ("email", 2, 86400),
        ("sms", 1, 7 * 86400),
    ]
    assert program.score_max == 100  # from std.scoring
    assert program.decay is not None and program.decay.every.seconds == 7 * 86400
    assert "propensity" in program.metrics
    assert "order_completed" in program.events
    assert program.message_channels == {"deal": "email", "final": "email", "flash": "sms"}
    assert Path(program.message_dirs["deal"]).name == "msgs"
    assert program.trait_types["plan"] == "text"
    assert program.trait_types["unsubscribed"] == "bool"
    assert list(program.flows) == ["f"]


def test_no_program_when_there_are_errors(tmp_path: Path) -> None:
    assert check_text(tmp_path, "segment s = nope\n").program is None


def test_check_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.lead"
    good.write_text(MESSAGES + "flow f:\n  on signed_up\n  send deal\n")
    warned = tmp_path / "warned.lead"
    warned.write_text('flow lonely:\n  tag "x"\n')
    bad = tmp_path / "bad.lead"
    bad.write_text("segment s = nope\n")
    runner = CliRunner()
    assert runner.invoke(main, ["check", str(good)]).exit_code == 0
    assert runner.invoke(main, ["check", str(warned)]).exit_code == 0
    assert runner.invoke(main, ["check", "--strict", str(warned)]).exit_code == 1
    failed = runner.invoke(main, ["check", "--format", "json", str(bad), str(good)])
    assert failed.exit_code == 1
    assert [d["code"] for d in json.loads(failed.output)] == ["N004"]
    missing = runner.invoke(main, ["check", str(tmp_path / "missing.lead")])
    assert missing.exit_code == 2


def test_examples_and_stdlib_check_clean() -> None:
    result = CliRunner().invoke(main, ["check", str(ROOT / "examples"), str(ROOT / "stdlib")])
    assert result.exit_code == 0, result.output


def test_explain_every_code() -> None:
    runner = CliRunner()
    for code, info in CODES.items():
        out = runner.invoke(main, ["explain", code.lower()])
        assert out.exit_code == 0
        assert info.summary in out.output and info.explanation in out.output
    assert runner.invoke(main, ["explain", "X999"]).exit_code == 2


def test_every_code_explains_with_an_example() -> None:
    for code, info in CODES.items():
        if code.startswith("S") or code in ("N010", "N011"):
            continue  # the parser's and loader's codes, explained in their own words
        assert info.severity in ("error", "warning")
        assert "\n    " in info.explanation, f"{code} has no indented example"
