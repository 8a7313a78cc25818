"""The four `leadlang check --format`s: `full` (for people), `concise`, `json`, `sarif`.

Every renderer takes diagnostics already sorted (see `render`). Columns are
1-based; `end_column` is exclusive in every format (as SARIF's `endColumn` is).
"""

from __future__ import annotations

import json
import os
import re
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

from leadlang import __version__
from leadlang.codes import CODES
from leadlang.diagnostics import Diagnostic, count_summary, sort_key
from leadlang.source import Source, Span, escaped

_RED = "\x1b[1;31m"
_YELLOW = "\x1b[1;33m"
_BLUE = "\x1b[1;34m"
_CYAN = "\x1b[1;36m"
_BOLD = "\x1b[1m"
_RESET = "\x1b[0m"

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
HELP_URI = "https://github.com/leadlang/leadlang/blob/main/docs/diagnostics.md"


# ---------------------------------------------------------------- full


class _Painter:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, style: str, text: str) -> str:
        return f"{style}{text}{_RESET}" if self.color and text else text


def render_full(
    diagnostics: Sequence[Diagnostic], sources: Mapping[str, Source], *, color: bool
) -> str:
    """rustc-style: header, ` --> file:line:col`, the source line with carets, help."""
    if not diagnostics:
        return ""
    paint = _Painter(color)
    blocks = [_full_one(d, sources, paint) for d in diagnostics]
    summary = count_summary(diagnostics)
    worst = "error" if any(d.is_error for d in diagnostics) else "warning"
    style = _RED if worst == "error" else _YELLOW
    blocks.append(f"{paint(style, worst)}{paint(_BOLD, ': ' + summary)}\n")
    return "\n".join(blocks)


def _full_one(diagnostic: Diagnostic, sources: Mapping[str, Source], paint: _Painter) -> str:
    style = _RED if diagnostic.is_error else _YELLOW
    head = paint(style, f"{diagnostic.severity}[{diagnostic.code}]")
    lines = [f"{head}{paint(_BOLD, ': ' + _visible(diagnostic.message))}"]
    spans = [diagnostic.span, *(label.span for label in diagnostic.labels)]
    width = max(len(str(span.line)) for span in spans)
    lines += _snippet(diagnostic.span, "", "^", style, sources, paint, width)
    for label in diagnostic.labels:
        lines += _snippet(label.span, label.message, "-", _BLUE, sources, paint, width)
    if diagnostic.help:
        gutter = " " * width
        help = _visible(diagnostic.help)
        lines.append(f"{gutter} {paint(_BLUE, '=')} {paint(_BOLD, 'help')}: {help}")
    return "\n".join(lines) + "\n"


def _snippet(
    span: Span,
    note: str,
    mark: str,
    style: str,
    sources: Mapping[str, Source],
    paint: _Painter,
    width: int,
) -> list[str]:
    gutter = " " * width
    arrow = paint(_BLUE, "-->")
    out = [f"{gutter}{arrow} {_visible(span.file)}:{span.line}:{span.column}"]
    source = sources.get(span.file)
    if source is None:
        if note:
            out.append(f"{gutter} {paint(_BLUE, '=')} note: {note}")
        return out
    text = source.line_text(span.line)
    shown, start, end = _caret_columns(text, span)
    bar = paint(_BLUE, "|")
    number = paint(_BLUE, str(span.line).rjust(width))
    underline = paint(style, mark * (end - start))
    out.append(f"{gutter} {bar}")
    out.append(f"{number} {bar} {shown}".rstrip())
    caret_line = f"{gutter} {bar} {' ' * start}{underline}"
    if note:
        caret_line += " " + paint(style, _visible(note))
    out.append(caret_line)
    return out


def _caret_columns(text: str, span: Span) -> tuple[str, int, int]:
    """The line as displayed and the 0-based caret range on it, in terminal columns: tabs
    expanded, control characters escaped (`\x1b`: a script cannot drive the terminal), wide
    characters two columns and combining marks none, so the caret is under its span."""
    first = max(span.column - 1, 0)
    if span.end_line == span.line:
        last = max(span.end_column - 1, first + 1)
    else:  # a multi-line span: underline to the end of its first line
        last = max(len(text), first + 1)
    shown: list[str] = []
    column = start = end = 0
    for index, ch in enumerate(text):
        if index == first:
            start = column
        if index == last:
            end = column
        if ch == "\t":
            piece, width = " " * (4 - column % 4), 4 - column % 4
        elif ch.isprintable():
            piece, width = ch, _width(ch)
        else:
            piece = escaped(ch)
            width = len(piece)
        shown.append(piece)
        column += width
    if first >= len(text):
        start = column + first - len(text)
    if last >= len(text):
        end = column + last - len(text)
    return "".join(shown), start, max(end, start + 1)


def _width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _visible(text: str) -> str:
    """`text` with its unprintable characters escaped, as simulate's text format does (a
    lone surrogate, from a file name that is not UTF-8, is left to `printable`: U+FFFD)."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or "\ud800" <= ch <= "\udfff" else escaped(ch) for ch in text
    )


# ---------------------------------------------------------------- concise


def render_concise(diagnostics: Sequence[Diagnostic]) -> str:
    """One line each: `file:line:col: error[N001] message`."""
    return "".join(
        f"{_visible(d.span.file)}:{d.span.line}:{d.span.column}: {d.severity}[{d.code}] "
        f"{_visible(d.message)}\n"
        for d in diagnostics
    )


# ---------------------------------------------------------------- json


def _location(span: Span) -> dict[str, Any]:
    return {
        "file": span.file,
        "line": span.line,
        "column": span.column,
        "end_line": span.end_line,
        "end_column": span.end_column,
    }


def as_json(diagnostic: Diagnostic) -> dict[str, Any]:
    return {
        **_location(diagnostic.span),
        "severity": diagnostic.severity,
        "code": diagnostic.code,
        "message": diagnostic.message,
        "help": diagnostic.help,
        "labels": [
            {**_location(label.span), "message": label.message} for label in diagnostic.labels
        ],
    }


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    """One JSON array of objects (`[]` when there is nothing)."""
    return json.dumps([as_json(d) for d in diagnostics], indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------- sarif


def _uri(path: str) -> str:
    pure = PurePath(path)
    if pure.is_absolute():
        return pure.as_uri()
    return pure.as_posix()


def _region(span: Span) -> dict[str, int]:
    return {
        "startLine": span.line,
        "startColumn": span.column,
        "endLine": span.end_line,
        "endColumn": max(span.end_column, span.column + 1 if span.end_line == span.line else 1),
    }


def _physical(span: Span) -> dict[str, Any]:
    return {
        "physicalLocation": {"artifactLocation": {"uri": _uri(span.file)}, "region": _region(span)}
    }


def render_sarif(diagnostics: Sequence[Diagnostic]) -> str:
    """SARIF 2.1.0 as GitHub code scanning reads it; rules are the codes that occur."""
    used = sorted({d.code for d in diagnostics})
    index = {code: i for i, code in enumerate(used)}
    rules = []
    for code in used:
        info = CODES.get(code)
        rule: dict[str, Any] = {"id": code}
        if info is not None:
            rule |= {
                "name": _rule_name(info.summary),
                "shortDescription": {"text": info.summary},
                "fullDescription": {"text": info.explanation},
                "helpUri": f"{HELP_URI}#{code.lower()}",
                "help": {"text": info.explanation},
                "defaultConfiguration": {"level": info.severity},
            }
        rules.append(rule)
    results = []
    for d in diagnostics:
        text = d.message if not d.help else f"{d.message} (help: {d.help})"
        result: dict[str, Any] = {
            "ruleId": d.code,
            "ruleIndex": index[d.code],
            "level": d.severity,
            "message": {"text": text},
            "locations": [_physical(d.span)],
        }
        if d.labels:
            result["relatedLocations"] = [
                {"id": i, **_physical(label.span), "message": {"text": label.message}}
                for i, label in enumerate(d.labels)
            ]
        results.append(result)
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "leadlang",
                        "version": __version__,
                        "informationUri": HELP_URI,
                        "rules": rules,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"


def _rule_name(summary: str) -> str:
    """SARIF rule names are PascalCase identifiers: `unknown message` -> `UnknownMessage`."""
    words = "".join(ch if ch.isalnum() else " " for ch in summary).split()
    return "".join(word[:1].upper() + word[1:] for word in words)


def render(
    diagnostics: Sequence[Diagnostic],
    sources: Mapping[str, Source],
    fmt: str,
    *,
    color: bool | None = None,
) -> str:
    """Render diagnostics in one of the `leadlang check --format` formats.

    `color=None` colours the `full` format only when stdout is a terminal (and NO_COLOR is
    not set).
    Empty diagnostics give "" for `full` and `concise`, and an empty list for `json`/`sarif`.
    """
    ordered = sorted(diagnostics, key=sort_key)
    if fmt == "full":
        if color is None:  # https://no-color.org: an empty NO_COLOR does not count
            color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        return printable(render_full(ordered, sources, color=color))
    if fmt == "concise":
        return printable(render_concise(ordered))
    if fmt == "json":
        return printable(render_json(ordered))
    if fmt == "sarif":
        return printable(render_sarif(ordered))
    raise ValueError(f"unknown diagnostics format {fmt!r}")


_SURROGATE = re.compile("[\ud800-\udfff]")


def printable(text: str) -> str:
    """`text` with any lone UTF-16 surrogate (which no UTF-8 output can encode: e.g. from a
    file name that is not UTF-8) replaced by U+FFFD, so that printing it never raises."""
    return _SURROGATE.sub("\ufffd", text)
