"""The lexer for `.lead` scripts: one master regular expression, keywords decided by context.

Lark's contextual lexer (a lexer per parser state, whitespace matched as a token of its own)
was about a third of parse time. This one skips whitespace inside the master pattern and
keeps the one contextual rule the language needs: a word that spells a keyword is that
keyword only where the parser can accept the keyword, and a plain name elsewhere, so
`score`, `event` or `max` still read as names in expressions. Terminal names and patterns
come from grammar.lark (the `TOKENS` below must stay in step with its terminals).

`LeadIndenter` then lays the lines out: Python-style INDENT/DEDENT tokens, with the nesting
limits (too deep is S007) and the problems only layout can see (`SyntaxProblem`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from lark import Token
from lark.exceptions import UnexpectedCharacters
from lark.indenter import Indenter
from lark.lexer import Lexer

# (terminal, pattern) in matching order: longer literals before their prefixes.
TOKENS: list[tuple[str, str]] = [
    # Newlines with the next line's indentation, comments included (as grammar.lark's _NL).
    # Possessive repeats (`++`, `*+`): a plain repeat of a group keeps a backtracking mark per
    # character, some 100 bytes each, so a 10 MB string or a million blank lines took gigabytes.
    ("_NL", r"(?:\r?\n[\t ]*|#[^\n]*)++"),
    ("DATETIME", r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)?"),
    ("DATE", r"\d{4}-\d\d-\d\d"),
    ("TIME", r"\d\d?:\d\d(?::\d\d)?(?![\d])"),
    ("DURATION", r"\d[\d_.]*[A-Za-z][A-Za-z0-9_]*"),
    ("PERCENT_LIT", r"\d[\d_]*(?:\.\d+)?%(?![A-Za-z0-9_(])"),
    ("NUMBER", r"\d[\d_]*(?:\.\d+)?"),
    ("NAME", r"[A-Za-z_][A-Za-z0-9_]*"),
    ("STRING", r'"(?:[^"\\\n]|\\.)*+"'),
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
                # What the parser accepts here, for the help line (messages.py).
                allowed = set(states[parser_state.position]) if states is not None else None
                raise UnexpectedCharacters(
                    text, start, line, start - line_start + 1, allowed=allowed
                )
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


# ---------------------------------------------------------------- layout

MAX_NESTING = 100  # open brackets; deeper input gets S007
# Blocks inside blocks (`if` in `if`...): later passes walk steps recursively too.
MAX_BLOCK_DEPTH = 100


class SyntaxProblem(Exception):
    """Raised inside the parse for a problem found while lexing or laying out lines."""

    def __init__(self, code: str, message: str, token: Token, help: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.token = token
        self.help = help


class LeadIndenter(Indenter):
    """Python-style INDENT/DEDENT tokens, tolerant of stray closing brackets.

    It remembers the open brackets (to report an unclosed one) and the last token (to give
    an error message context).
    """

    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB", "LBRACE"]  # noqa: RUF012 (Lark's interface)
    CLOSE_PAREN_types = ["RPAR", "RSQB", "RBRACE"]  # noqa: RUF012
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8

    def __init__(self) -> None:
        super().__init__()
        self.open_brackets: list[Token] = []
        self.previous: Token | None = None
        self.current: Token | None = None

    def handle_NL(self, token: Token) -> Iterator[Token]:
        if self.paren_level > 0:
            return
        yield token
        indent_str = token.rsplit("\n", 1)[1]
        indent = indent_str.count(" ") + indent_str.count("\t") * self.tab_len
        if indent > self.indent_level[-1]:
            if len(self.indent_level) > MAX_BLOCK_DEPTH:
                end = token.end_pos or 0
                raise SyntaxProblem(
                    "S007",
                    f"nesting too deep (blocks more than {MAX_BLOCK_DEPTH} levels deep)",
                    Token(
                        "INDENT_AT",
                        indent_str,
                        end,
                        token.end_line,
                        1,
                        token.end_line,
                        indent + 1,
                        end,
                    ),
                    help="move the inner steps to a flow of their own and `enroll` it",
                )
            self.indent_level.append(indent)
            yield Token.new_borrow_pos(self.INDENT_type, indent_str, token)
            return
        while indent < self.indent_level[-1]:
            self.indent_level.pop()
            yield Token.new_borrow_pos(self.DEDENT_type, indent_str, token)
        if indent != self.indent_level[-1]:
            end = token.end_pos or 0
            at = Token(
                "INDENT_AT",
                indent_str,
                end - len(indent_str),  # the start of the line, which column 1 names
                token.end_line,
                1,
                token.end_line,
                indent + 1,
                end,
            )
            raise SyntaxProblem(
                "S004",
                f"this line is indented to column {indent + 1}, which matches no enclosing block",
                at,
                help=f"indent it to column {self.indent_level[-1] + 1} or to a block's column",
            )

    def _process(self, stream: Iterator[Token]) -> Iterator[Token]:
        token = None
        for token in stream:
            self.previous, self.current = self.current, token
            if token.type == self.NL_type:
                yield from self.handle_NL(token)
                continue
            yield token
            if token.type in self.OPEN_PAREN_types:
                self.paren_level += 1
                self.open_brackets.append(token)
                if self.paren_level > MAX_NESTING:
                    raise SyntaxProblem(
                        "S007",
                        f"nesting too deep (more than {MAX_NESTING} brackets)",
                        token,
                        help="split the expression with a `metric` or a `segment`",
                    )
            elif token.type in self.CLOSE_PAREN_types and self.paren_level > 0:
                self.paren_level -= 1
                self.open_brackets.pop()
        while len(self.indent_level) > 1:
            self.indent_level.pop()
            yield (
                Token.new_borrow_pos(self.DEDENT_type, "", token)
                if token
                else Token(self.DEDENT_type, "", 0, 1, 1, 1, 1, 0)
            )

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        self.paren_level = 0
        self.indent_level = [0]
        self.open_brackets = []
        self.previous = self.current = None
        return self._process(stream)
