"""Regenerate docs/diagnostics.md from leadlang/codes.py: `python docs/generate_diagnostics.py`."""

from __future__ import annotations

from pathlib import Path

from leadlang.codes import markdown_index

DOCS = Path(__file__).resolve().parent


def generate() -> str:
    return markdown_index((DOCS / "diagnostics.preamble.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    (DOCS / "diagnostics.md").write_text(generate(), encoding="utf-8")
