"""Helpers for checker tests: write scripts to a temporary folder and check them."""

from __future__ import annotations

from pathlib import Path

from leadlang.diagnostics import Diagnostic
from leadlang.interpreter.check import CheckResult, check_paths


def check_files(folder: Path, files: dict[str, str]) -> CheckResult:
    """Write `files` (name -> text) under `folder` and check the first one."""
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return check_paths([str(folder / next(iter(files)))])


def check_text(folder: Path, text: str) -> CheckResult:
    return check_files(folder, {"main.lead": text})


def codes(result: CheckResult) -> list[str]:
    return [d.code for d in result.diagnostics]


def only(result: CheckResult, code: str) -> Diagnostic:
    """The one diagnostic of the result, which must have `code`."""
    assert codes(result) == [code], [f"{d.code} {d.message}" for d in result.diagnostics]
    return result.diagnostics[0]


MESSAGES = """\
message deal:
  channel email
  subject "{{ first_name | default('there') }}, 20% off"
  text "Hi"

message final:
  channel email
  subject "Last call"
  text "Hi"

message flash:
  channel sms
  text "Flash sale"
"""
