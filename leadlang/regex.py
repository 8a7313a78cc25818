"""`matches`: regular expressions written as in Python, run on RE2 (time linear in the text).

Python's own engine backtracks, so `"(a+)+$"` against 34 characters takes hours; RE2 never
backtracks. The dialect users write stays Python's: a pattern is translated to RE2 syntax
(`\\d`, `\\w` and `\\s` keep their Unicode meaning, `\\Z` and `\\uXXXX` are spelt the RE2 way),
and what RE2 cannot run (lookaround, backreferences) is refused: `check` reports it (T013)
and at run time such a pattern matches nothing. Shared by the checker and the engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import re2

# Python's \s, \d and \w on text, as RE2 classes (the contents, without the brackets).
_SPACE = r"\t-\r\x{1c}-\x{1f}\x{85}\p{Z}"
_DIGIT = r"\p{Nd}"
_WORD = r"\p{L}\p{N}_"
_OUTSIDE = {
    "s": f"[{_SPACE}]",
    "S": f"[^{_SPACE}]",
    "d": _DIGIT,
    "D": r"\P{Nd}",
    "w": f"[{_WORD}]",
    "W": f"[^{_WORD}]",
    "Z": r"\z",
}
_INSIDE = {"s": _SPACE, "d": _DIGIT, "D": r"\P{Nd}", "w": _WORD}

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # (RE2 would print every refused pattern on stderr)
# A pattern whose program and DFA cache need more memory is refused (the DFA falls back to
# the NFA, still linear): with the cache of compiled patterns below, patterns computed from
# event data hold at most 256 MB however many there are.
_OPTIONS.max_mem = 1 << 20
# `matches` only asks whether there is a match: no groups, and the leftmost-longest mode,
# which finds the same matches with the DFA alone (faster than Python's engine on the
# standard library's patterns; the wrapper's `search` costs three times as much)
_OPTIONS.never_capture = True
_OPTIONS.longest_match = True
_UNANCHORED = re2._Anchor.UNANCHORED

_HINTS = (
    ("(?=", "lookahead `(?=...)`"),
    ("(?!", "negative lookahead `(?!...)`"),
    ("(?<=", "lookbehind `(?<=...)`"),
    ("(?<!", "negative lookbehind `(?<!...)`"),
)


def translate(pattern: str) -> str:
    """A Python pattern in RE2's syntax (the same matches, where RE2 can express them)."""
    out: list[str] = []
    in_class = False
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            table = _INSIDE if in_class else _OUTSIDE
            if nxt in table:
                out.append(table[nxt])
                i += 2
                continue
            width = {"u": 4, "U": 8}.get(nxt)
            if width and re.fullmatch(r"[0-9a-fA-F]+", pattern[i + 2 : i + 2 + width] or "-"):
                out.append(f"\\x{{{pattern[i + 2 : i + 2 + width]}}}")
                i += 2 + width
                continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            out.append(char)
            i += 1
            # a `]` first in a class (after an optional `^`) is a literal
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":
                out.append(r"\]")
                i += 1
            continue
        out.append(char)
        i += 1
    return "".join(out)


def problem(pattern: str) -> tuple[str, str] | None:
    """Why `pattern` cannot be used, as (code, message): T010 when Python's syntax refuses it,
    T013 when RE2 cannot run it; None when it is fine."""
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as error:
        return "T010", f"invalid regular expression: {getattr(error, 'msg', 'too complex')}"
    if compile_pattern(pattern) is not None:
        return None
    for marker, feature in _HINTS:
        if marker in pattern:
            return "T013", f"{feature} is not supported in `matches`"
    if re.search(r"\\[1-9]|\(\?P=", pattern):
        return "T013", "backreferences are not supported in `matches`"
    return "T013", f"this regular expression cannot be run: {_re2_error(pattern)}"


def _re2_error(pattern: str) -> str:
    try:
        re2.compile(translate(pattern), options=_OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else "unsupported"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        return str(reason)
    return "unsupported"


Search = Callable[[str], bool]


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Search | None:
    """`search(text)`: whether `pattern` matches somewhere in `text`; None when RE2 cannot
    run the pattern."""
    try:
        program = re2.compile(translate(pattern), options=_OPTIONS)._regexp
    except (re2.error, TypeError, ValueError):
        return None
    match = program.Match

    def search(text: str) -> bool:
        data = text.encode("utf-8", "surrogatepass")
        return match(_UNANCHORED, data, 0, len(data))[0][0] >= 0

    return search
