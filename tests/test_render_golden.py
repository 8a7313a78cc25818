"""`leadlang render` golden tests: every message of every example, rendered for one fixed
contact at one fixed instant, equals `tests/golden/render/EXAMPLE/MESSAGE.txt`.

To regenerate after an intended change: `LEADLANG_UPDATE_GOLDENS=1 pytest
tests/test_render_golden.py`. The files are written and each test FAILS with "regenerated:
review the diff", so a regeneration never passes unnoticed; review `git diff`, then run again.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from deliveries import UNREADABLE_ADDRESSES

from leadlang.cli import main
from leadlang.interpreter.check import check_paths
from leadlang.interpreter.compile import compile_program

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden" / "render"
UPDATE = os.environ.get("LEADLANG_UPDATE_GOLDENS") == "1"
AT = "2026-01-15T09:30:00Z"
TRAITS = {
    "id": "golden-ann",
    "first_name": "Ann",
    "last_name": "Example",
    "email": "ann@example.com",
    "phone": "+15550100",
    "company": "Example Co",
    "role": "Head of Marketing",
    "industry": "Retail",
    "audience_noun": "customers",
    "plan": "pro",
}


def _cases() -> list[tuple[str, str]]:
    cases = []
    for example in sorted(p for p in EXAMPLES.iterdir() if p.is_dir()):
        result = check_paths([str(example)])
        assert result.program is not None, example
        for message in compile_program(result.program)["messages"]:
            cases.append((example.name, message))
    return cases


CASES = _cases()


def render(example: str, message: str) -> str:
    result = CliRunner().invoke(
        main,
        [
            "render",
            message,
            str(EXAMPLES / example),
            "--traits",
            orjson.dumps(TRAITS).decode(),
            "--at",
            AT,
        ],
        env={"PUSH_SERVICE_TOKEN": "must-never-be-shown"},
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_every_example_has_messages() -> None:
    assert {example for example, _ in CASES} == {p.name for p in EXAMPLES.iterdir() if p.is_dir()}


@pytest.mark.parametrize(("example", "message"), CASES, ids=[f"{e}/{m}" for e, m in CASES])
def test_render_matches_golden(example: str, message: str) -> None:
    output = render(example, message)
    golden = GOLDEN / example / f"{message}.txt"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(output, encoding="utf-8")
        pytest.fail(f"regenerated {golden.relative_to(ROOT)}: review the diff")
    assert golden.exists(), (
        f"no golden file {golden.relative_to(ROOT)}: run with LEADLANG_UPDATE_GOLDENS=1"
    )
    assert output == golden.read_text(encoding="utf-8")


def test_no_golden_file_is_left_over() -> None:
    expected = {GOLDEN / e / f"{m}.txt" for e, m in CASES}
    assert set(GOLDEN.rglob("*.txt")) <= expected


def test_render_is_fixed_by_at_and_hides_secrets() -> None:
    push = render("contactflow", "loyalty_push")
    assert "secret(PUSH_SERVICE_TOKEN)" in push
    assert "must-never-be-shown" not in push
    email = render("contactflow", "thank_you")
    assert "Date: Thu, 15 Jan 2026 09:30:00 +0000" in email.splitlines()
    assert render("contactflow", "thank_you") == email


def test_at_must_be_an_iso_time() -> None:
    result = CliRunner().invoke(
        main,
        ["render", "thank_you", str(EXAMPLES / "contactflow"), "--traits", "{}", "--at", "soon"],
    )
    assert result.exit_code == 2
    assert "--at `soon` is not an ISO 8601 time" in result.output


@pytest.mark.parametrize("address", UNREADABLE_ADDRESSES)
def test_an_email_address_the_email_package_cannot_read_is_an_error_not_a_traceback(
    address: str,
) -> None:
    # (serve's email drivers fail such a send for good, with the same words)
    traits = orjson.dumps({**TRAITS, "email": address}).decode()
    result = CliRunner().invoke(
        main,
        ["render", "thank_you", str(EXAMPLES / "contactflow"), "--traits", traits, "--at", AT],
    )
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "error: message `thank_you` cannot be built as an email: " in result.output


def test_a_push_without_json_shows_the_title_and_text_the_webhook_posts(tmp_path: Path) -> None:
    # (the webhook driver posts {"title", "text"} when a push has no `json`: `null` was shown)
    (tmp_path / "p.lead").write_text(
        'message p:\n  channel push\n  url "https://push.example.com/v1"\n'
        '  title "Hi {{ nick }}"\n  text "25% off"\n'
        "trait nick: text\n"
    )
    result = CliRunner().invoke(
        main, ["render", "p", str(tmp_path), "--traits", '{"nick": "Ann"}', "--at", AT]
    )
    assert result.exit_code == 0, result.output
    head, body = result.output.split("\n\n", 1)
    assert head == "POST https://push.example.com/v1"
    assert orjson.loads(body) == {"title": "Hi Ann", "text": "25% off"}
