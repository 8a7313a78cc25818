"""Golden files for rendered diagnostics: one small broken script per diagnostic code.

tests/golden/diagnostics/<CODE>.lead is a script that must produce <CODE>; next to it are
its expected renderings in the four formats: <CODE>.full, .concise, .json and .sarif.
Helper files a case needs (e.g. the other half of a `use` cycle) live in `support/`.

After a deliberate change of the output, refresh the expected files and review the diff:

    LEADLANG_UPDATE_GOLDENS=1 pytest tests/test_check_golden.py

A regenerating run never passes a rendering test (it would compare the output with itself):
each one writes its file, then fails if the file changed and is skipped if not, with
"regenerated: review the diff". Run the tests again without the variable to see them pass.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from leadlang.codes import CODES
from leadlang.interpreter.check import check_paths
from leadlang.render import render

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path("tests/golden/diagnostics")  # relative to ROOT, as the renderings show it
FORMATS = ("full", "concise", "json", "sarif")
UPDATE = os.environ.get("LEADLANG_UPDATE_GOLDENS") == "1"

CASES = sorted(path.stem for path in (ROOT / GOLDEN).glob("*.lead"))


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_every_code_has_a_golden_case() -> None:
    assert sorted(CODES) == CASES


@pytest.mark.parametrize("code", CASES)
def test_case_reports_its_code(code: str) -> None:
    result = check_paths([str(GOLDEN / f"{code}.lead")])
    assert result.usage_error is None
    reported = {d.code for d in result.diagnostics}
    assert code in reported
    assert all(d.severity == CODES[d.code].severity for d in result.diagnostics)
    if not code.startswith("S") and code not in ("N010", "N011"):
        assert all(d.help for d in result.diagnostics), "every checker diagnostic has a help"
    if CODES[code].severity == "error":
        assert result.program is None
    else:
        assert result.program is not None


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("code", CASES)
def test_rendering_matches_golden(code: str, fmt: str) -> None:
    result = check_paths([str(GOLDEN / f"{code}.lead")])
    output = render(result.diagnostics, result.sources, fmt, color=False)
    expected_path = ROOT / GOLDEN / f"{code}.{fmt}"
    if UPDATE:
        regenerate(expected_path, output)
    assert expected_path.exists(), f"run LEADLANG_UPDATE_GOLDENS=1 pytest to create {expected_path}"
    assert output == expected_path.read_text(encoding="utf-8")


def regenerate(path: Path, output: str) -> None:
    """Write `output` to `path`, then end the test without passing: a changed file fails, an
    unchanged one is skipped, both saying "regenerated: review the diff"."""
    before = path.read_text(encoding="utf-8") if path.exists() else None
    path.write_text(output, encoding="utf-8")
    if before != output:
        pytest.fail(f"regenerated: review the diff of {path}", pytrace=False)
    pytest.skip(f"regenerated: review the diff ({path} is unchanged)")


def test_regenerating_never_passes(tmp_path: Path) -> None:
    """With the update flag a rendering test writes its file and fails (changed) or is skipped
    (unchanged): it never passes by comparing the output with itself."""
    path = tmp_path / "CODE.full"
    with pytest.raises(pytest.fail.Exception, match="regenerated: review the diff"):
        regenerate(path, "new output\n")  # created
    assert path.read_text(encoding="utf-8") == "new output\n"
    with pytest.raises(pytest.skip.Exception, match="regenerated: review the diff"):
        regenerate(path, "new output\n")  # unchanged
    with pytest.raises(pytest.fail.Exception, match="regenerated: review the diff"):
        regenerate(path, "other output\n")  # changed
    assert path.read_text(encoding="utf-8") == "other output\n"


@pytest.mark.parametrize("code", CASES)
def test_json_has_the_promised_fields(code: str) -> None:
    result = check_paths([str(GOLDEN / f"{code}.lead")])
    items = json.loads(render(result.diagnostics, result.sources, "json"))
    assert items
    for item in items:
        assert item["line"] >= 1 and item["column"] >= 1
        assert (item["end_line"], item["end_column"]) >= (item["line"], item["column"])
        assert item["severity"] in ("error", "warning")
        assert item["code"] in CODES
        assert item["file"].endswith(".lead") or item["file"].endswith(".html")
