"""Diagnostics: user mistakes found in a script, as values (never exceptions).

A pass returns a list of `Diagnostic`s; the renderers (`render_*`) turn them into text for
people (`full`, `concise`), tools (`json`) and GitHub code scanning (`sarif`).
Messages are short, lower case, identifiers in backticks; the renderer adds the location.
"""

from __future__ import annotations

from typing import Literal

import attrs

from leadlang.source import Span

Severity = Literal["error", "warning"]


@attrs.frozen(slots=True, kw_only=True)
class Label:
    """A secondary location, e.g. the first definition of a duplicated name."""

    span: Span
    message: str


@attrs.frozen(slots=True, kw_only=True)
class Diagnostic:
    code: str  # see leadlang/codes.py
    severity: Severity
    message: str
    span: Span
    help: str | None = None
    labels: tuple[Label, ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


def sort_key(diagnostic: Diagnostic) -> tuple[str, int, int, str]:
    span = diagnostic.span
    return (span.file, span.line, span.column, diagnostic.code)
