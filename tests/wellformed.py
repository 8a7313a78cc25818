"""What every diagnostic must be, whatever the input: a known code with its severity, a message,
and a span inside the text it points into (line and column agreeing with the offsets)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from leadlang.codes import CODES
from leadlang.diagnostics import Diagnostic
from leadlang.source import Source


def assert_well_formed(diagnostics: Iterable[Diagnostic], sources: Mapping[str, Source]) -> None:
    """Each diagnostic has a known code, that code's severity, a message, and a span within
    the text of the source it names (its start's line and column agree with its offset)."""
    for diagnostic in diagnostics:
        info = CODES.get(diagnostic.code)
        assert info is not None, f"unknown code {diagnostic.code}"
        assert diagnostic.severity == info.severity, diagnostic
        assert diagnostic.message, diagnostic
        span = diagnostic.span
        source = sources.get(span.file)
        assert source is not None, f"{diagnostic.code} points into {span.file!r}, not a source"
        # (at the end of a file without a final newline, the caret sits just past the text)
        assert 0 <= span.start <= len(source.text), (diagnostic, len(source.text))
        assert span.start <= span.end <= len(source.text) + 1, (diagnostic, len(source.text))
        assert (span.line, span.column) == source.line_col(span.start), diagnostic
        # (the end of a span that closes a line may be written as that line's end or as the
        # start of the next: both are the same offset)
        assert (span.end_line, span.end_column) >= (span.line, span.column), diagnostic
        assert span.end_line <= source.line_col(len(source.text))[0], diagnostic
