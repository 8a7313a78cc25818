"""The lexer for `.lead` scripts: one master regular expression, keywords decided by context.

Lark's contextual lexer (a lexer per parser state, whitespace matched as a token of its own)
was about a third of parse time. This one skips whitespace inside the master pattern and
keeps the one contextual rule the language needs: a word that spells a keyword is that
keyword only where the parser can accept the keyword, and a plain name elsewhere, so
`score`, `event` or `max` still read as names in expressions. Terminal names and patterns
come from grammar.lark (the `TOKENS` below must stay in step with its terminals).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from lark import Token
from lark.exceptions import UnexpectedCharacters
from lark.lexer import Lexer

# (terminal, pattern) in matching order: longer literals before their prefixes.
TOKENS: list[tuple[str, str]] = [
    # Newlines with the next line's indentation, comments included (as grammar.lark's _NL).
    ("_NL", r"(?:\r?\n[\t ]*|#[^\n]*)+"),
    ("DATETIME", r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)?"),
    ("DATE", r"\d{4}-\d\d-\d\d"),
    ("TIME", r"\d\d?:\d\d(?::\d\d)?(?![\d])"),
    ("DURATION", r"\d[\d_.]*[A-Za-z][A-Za-z0-9_]*"),
    ("PERCENT_LIT", r"\d[\d_]*(?:\.\d+)?%(?![A-Za-z0-9_(])"),
    ("NUMBER", r"\d[\d_]*(?:\.\d+)?"),
    ("NAME", r"[A-Za-z_][A-Za-z0-9_]*"),
    ("STRING", r'"(?:[^"\\\n]|\\.)*"'),
    ("PUNCT", r"==|!=|<=|>=|[<>=()\[\]{},:;.+\-*/%]"),
]
_SKIP = r"[\t \f\r\ufeff]*"

# Unit words people write after a number (`24 hours`, `90min`), as the language's units.
UNIT_WORDS = {
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "m": "m",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
    "w": "w",
    "wk": "w",
    "wks": "w",
    "week": "w",
    "weeks": "w",
}
# Calendar units the language leaves out (their length varies), as a number of days.
CALENDAR_DAYS = {"mo": 30, "mon": 30, "month": 30, "months": 30, "y": 365, "yr": 365}
CALENDAR_DAYS |= {"yrs": 365, "year": 365, "years": 365}


def calendar_help(amount: str | float, word: str) -> str:
    """`3 months` -> count days, e.g. `90d`."""
    try:
        days = round(float(str(amount).replace("_", "")) * CALENDAR_DAYS[word])
    except (ValueError, OverflowError):  # a number no float holds: no example
        return "there are no months or years: count days"
    return f"there are no months or years: count days, e.g. `{days}d`"


class LeadLexer(Lexer):
    """A Lark custom lexer (interface 2): `lex(lexer_state, parser_state)` yields Tokens."""

    __future_interface__ = 2

    def __init__(self, lexer_conf: Any) -> None:
        strings: dict[str, str] = {}
        for terminal in lexer_conf.terminals:
            pattern = terminal.pattern
            if type(pattern).__name__ == "PatternStr":
                strings[pattern.value] = terminal.name
        self.keywords = {text: name for text, name in strings.items() if text.isalpha()}
        self.punctuation = {text: name for text, name in strings.items() if not text.isalpha()}
        groups = "|".join(f"(?P<{name}>{pattern})" for name, pattern in TOKENS)
        self.master = re.compile(f"{_SKIP}(?:{groups})")
        self.skip_to_end = re.compile(f"{_SKIP}$")

    def lex(self, lexer_state: Any, parser_state: Any) -> Iterator[Token]:
        text: str = lexer_state.text.text
        match = self.master.match
        keywords = self.keywords
        punctuation = self.punctuation
        states = parser_state.parse_conf.parse_table.states if parser_state is not None else None
        pos = 0
        line = 1
        # offset of the first character of the current line; a byte-order mark that starts
        # the text takes no column
        line_start = 1 if text.startswith("\ufeff") else 0
        end = len(text)
        while pos < end:
            m = match(text, pos)
            if m is None:
                if self.skip_to_end.match(text, pos):
                    return
                start = pos
                while start < end and text[start] in "\t \f\r\ufeff":
                    start += 1
                raise UnexpectedCharacters(text, start, line, start - line_start + 1)
            kind = m.lastgroup
            value = m.group(kind)  # type: ignore[arg-type]
            start = m.start(kind)  # type: ignore[arg-type]
            pos = m.end()
            column = start - line_start + 1
            if kind == "_NL":
                newlines = value.count("\n")
                end_line = line + newlines
                last = value.rfind("\n")
                new_line_start = start + last + 1
                yield Token(
                    "_NL", value, start, line, column, end_line, pos - new_line_start + 1, pos
                )
                line = end_line
                line_start = new_line_start
                continue
            if kind == "NAME":
                keyword = keywords.get(value)
                if keyword is not None:
                    accepted = states[parser_state.position] if states is not None else None
                    # A keyword where the parser accepts it (or where a name would not fit
                    # either, so the error names the keyword); a plain name elsewhere.
                    if accepted is None or keyword in accepted or "NAME" not in accepted:
                        kind = keyword
            elif kind == "PUNCT":
                kind = punctuation[value]
            yield Token(kind, value, start, line, column, line, column + len(value), pos)  # type: ignore[arg-type]
