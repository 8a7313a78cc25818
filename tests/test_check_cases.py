"""Scripts with the expected diagnostics written next to the offending lines.

In tests/check_cases/*.lead, a line ending in `### CODE [CODE...]` expects diagnostics
with those codes to start on that line, and no line without such a comment may have one
(the starlark-go style: the script reads as its own specification).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from leadlang.interpreter.check import check_paths

CASES = sorted((Path(__file__).parent / "check_cases").glob("*.lead"))
EXPECT = re.compile(r"###((?:\s+[SNTF]\d{3})+)\s*$")


def expected(path: Path) -> Counter[tuple[int, str]]:
    found: Counter[tuple[int, str]] = Counter()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = EXPECT.search(line)
        if match:
            found.update((number, code) for code in match.group(1).split())
    return found


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_diagnostics_are_where_the_script_says(path: Path) -> None:
    result = check_paths([str(path)])
    actual = Counter(
        (d.span.line, d.code)
        for d in result.diagnostics
        if Path(d.span.file).resolve() == path.resolve()
    )
    assert sorted(actual.elements()) == sorted(expected(path).elements())
