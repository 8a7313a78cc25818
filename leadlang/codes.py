"""Every diagnostic code, with its one-line summary and the explanation `leadlang explain` prints.

Codes are grouped by the pass that reports them:
  S...  syntax (syntax.py) and reading files (loader.py)
  N...  names: resolution, duplicates, modules (interpreter/resolve.py)
  T...  types (interpreter/types.py)
  F...  flow and message lints (interpreter/lints.py)
"""

from __future__ import annotations

import attrs


@attrs.frozen(slots=True)
class CodeInfo:
    code: str
    severity: str  # "error" | "warning": the default severity
    summary: str
    explanation: str


def _code(code: str, severity: str, summary: str, explanation: str) -> CodeInfo:
    return CodeInfo(code, severity, summary, explanation.strip())


_ALL: list[CodeInfo] = [
    # ------------------------------------------------------------------ syntax
    _code(
        "S001",
        "error",
        "unexpected text",
        """
The parser met something it did not expect at this point of the script, for example a
missing message name after `send`, or a step written where a declaration belongs.
The message says what was expected instead.
""",
    ),
    _code(
        "S002",
        "error",
        "unexpected end of file",
        """
The file ended in the middle of a construct: an unclosed `(`, `[`, `{` or string, or a
block header ending in `:` with no indented lines after it.
""",
    ),
    _code(
        "S003",
        "error",
        "tab in indentation",
        """
Blocks are delimited by indentation made of spaces only, as in Python. Replace the tab
characters at the start of the line with spaces.
""",
    ),
    _code(
        "S004",
        "error",
        "inconsistent indentation",
        """
A line is dedented to a column that does not match any enclosing block. Indent it to the
same column as the lines of the block it belongs to.
""",
    ),
    _code(
        "S005",
        "error",
        "invalid literal",
        """
A number, duration, date, datetime or time of day is malformed: e.g. `25:00`, `2025-13-01`,
`3mo` (durations use s, m, h, d, w only), or a string with an invalid escape.
""",
    ),
    _code(
        "S006",
        "error",
        "cannot read file",
        """
The file does not exist, cannot be read, or is not UTF-8 text.
""",
    ),
    _code(
        "S007",
        "error",
        "nesting too deep",
        """
The expression nests brackets deeper than the parser supports. Split it with a `metric`
or a `segment`.
""",
    ),
    # ------------------------------------------------------------------ modules (loader.py)
    _code(
        "N010",
        "error",
        "module not found",
        """
A `use` line names a module that does not exist. `use std.NAME` loads `NAME.lead` from the
standard library (the message suggests the closest standard module); `use "path.lead"` is
read relative to the file that contains the `use` line.
""",
    ),
    _code(
        "N011",
        "error",
        "use cycle",
        """
Files `use` each other in a circle (a -> b -> a), so there is no order in which to load
them. Move the declarations both need into a third file that each of them uses.
""",
    ),
]

CODES: dict[str, CodeInfo] = {info.code: info for info in _ALL}
