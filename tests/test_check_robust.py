"""Any script, however broken, gives well-formed diagnostics (a known code, a span inside the
text) and never a Python exception.

Scripts are assembled from the lines of the examples and the standard library, shuffled,
re-indented and with words swapped, so that the parser recovers partial declarations and
the checker meets every odd combination (steps without flows, sends of unknown messages,
conditions of the wrong type, ...).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wellformed import assert_well_formed

from leadlang.interpreter.check import check_paths
from leadlang.render import render

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted(
    {
        line
        for path in [*ROOT.glob("examples/*/*.lead"), *ROOT.glob("stdlib/*.lead")]
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#") and not line.startswith("use ")
    }
)
WORDS = ["score", "event", "deal", "email", "24h", "none", '"x"', "60%", "09:00", "total", "and"]


@st.composite
def scripts(draw: st.DrawFn) -> str:
    lines = draw(st.lists(st.sampled_from(CORPUS), min_size=1, max_size=25))
    out = []
    for line in lines:
        words = line.split(" ")
        if draw(st.booleans()) and len(words) > 1:
            index = draw(st.integers(0, len(words) - 1))
            words[index] = draw(st.sampled_from(WORDS))
        indent = draw(st.sampled_from(["", "  ", "    ", None]))
        text = " ".join(words)
        out.append(text if indent is None else indent + text.lstrip())
    return "\n".join(out) + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts())
def test_checking_never_raises(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.lead"
        path.write_text(text, encoding="utf-8")
        result = check_paths([str(path)])
        assert result.usage_error is None
        assert_well_formed(result.diagnostics, result.sources)
        for fmt in ("full", "concise", "json", "sarif"):
            render(result.diagnostics, result.sources, fmt, color=False)
        assert (result.program is None) == any(d.is_error for d in result.diagnostics)
