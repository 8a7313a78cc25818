"""docs/diagnostics.md lists every code and is generated from leadlang/codes.py."""

from __future__ import annotations

import runpy
from pathlib import Path

from leadlang.codes import CODES

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_doc_lists_every_code() -> None:
    text = (DOCS / "diagnostics.md").read_text(encoding="utf-8")
    for code, info in CODES.items():
        assert f"| [{code}](#{code.lower()}) | {info.severity} | {info.summary} |" in text
        assert f'<a id="{code.lower()}"></a>' in text


def test_doc_is_up_to_date() -> None:
    generate = runpy.run_path(str(DOCS / "generate_diagnostics.py"))["generate"]
    assert (DOCS / "diagnostics.md").read_text(encoding="utf-8") == generate(), (
        "run `python docs/generate_diagnostics.py`"
    )
