"""Diagnostics: user mistakes found in a script, as values (never exceptions).

A pass returns a list of `Diagnostic`s; `render.render` turns them into
text for people (`full`, `concise`), tools (`json`) and GitHub code scanning (`sarif`).
Messages are short, lower case, identifiers in backticks; the renderer adds the location.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs

from leadlang.source import Span

Severity = Literal["error", "warning"]


# Words whose article is not decided by their first letter: `sms` is read "es-em-es".
_AN_WORDS = frozenset({"sms", "html", "hour", "smtp"})
_A_WORDS = frozenset({"url", "user", "use", "one", "unique"})


def with_article(word: str) -> str:
    """`email` -> `an email`, `push` -> `a push`: the article as the word is read aloud."""
    key = word.lower()
    an = key in _AN_WORDS or (key[:1] in ("a", "e", "i", "o", "u") and key not in _A_WORDS)
    return f"{'an' if an else 'a'} {word}"


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


def count_summary(diagnostics: Sequence[Diagnostic]) -> str:
    """`2 errors, 1 warning` (empty when there is nothing)."""
    errors = sum(1 for d in diagnostics if d.is_error)
    warnings = len(diagnostics) - errors
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(parts)
