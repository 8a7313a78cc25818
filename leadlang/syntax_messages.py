"""Syntax errors in words: Lark's unexpected-token errors to S-code diagnostics.

Lark reports the terminal names it expected (`NAME`, `_NL`, `$END`); people need phrases
("a message name after `send`"). The expected set is mapped to phrases and the previous
token gives context; no terminal name ever reaches a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from leadlang.diagnostics import Diagnostic

if TYPE_CHECKING:
    from leadlang.syntax import AstBuilder, LeadIndenter

# Phrases for terminals whose text is not the word itself.
_PHRASES: dict[str, str] = {
    "NAME": "a name",
    "STRING": "a string",
    "NUMBER": "a number",
    "PERCENT_LIT": "a percentage like `50%`",
    "DURATION": "a duration like `24h`",
    "DATE": "a date",
    "DATETIME": "a datetime",
    "TIME": "a time of day like `09:00`",
    "_NL": "the end of the line",
    "_INDENT": "an indented block",
    "_DEDENT": "the end of the block",
    "$END": "the end of the file",
}
_EXPRESSION_STARTS = frozenset(
    {"NAME", "NUMBER", "STRING", "DURATION", "LPAR", "LSQB", "MINUS", "NOT", "TRUE", "FALSE"}
)
_BLOCK_KEYWORDS = frozenset({"flow", "settings", "score", "message", "split", "if", "elif", "else"})

# What may follow a keyword, when Lark's expected set alone reads poorly.
_AFTER: dict[str, str] = {
    "send": "a message name",
    "wait": "a duration like `24h`, `until` or `for`",
    "enroll": "a flow name",
    "flow": "a flow name",
    "message": "a message name",
    "segment": "a segment name",
    "metric": "a metric name",
    "event": "an event name",
    "trait": "a trait name",
    "split": "a split name",
    "set": "a trait name",
    "on": "an event name",
    "goal": "an event name",
    "use": "a module like `std.segments` or a quoted file path",
    "tag": "a tag",
    "untag": "a tag",
    "every": "a duration like `7d`",
    "up to": "a duration like `1w`",
    "per": "a duration like `1d`",
    "timezone": 'a quoted time zone like `"Europe/Paris"`',
    "reenter": "`never`, `always` or `after` and a duration",
    "decay": "an amount like `10` or `10%`",
    "max": "a number",
    "score": "`:` or a signed number like `+5`",
}


def _describe_token(token: Token) -> str:
    if token.type == "_NL":
        return "the end of the line"
    if token.type == "$END" or (token.type == "_DEDENT" and not token.value):
        return "the end of the file"
    if token.type == "_INDENT":
        return "an indented line"
    if token.type == "_DEDENT":
        return "the end of the block"
    text = str(token.value)
    if len(text) > 30:
        text = text[:27] + "..."
    if token.type == "STRING":
        return f"string {text}"
    return f"`{text}`"


def _phrase(terminal: str, terminals: dict[str, Any]) -> str:
    if terminal in _PHRASES:
        return _PHRASES[terminal]
    definition = terminals.get(terminal)
    pattern = getattr(definition, "pattern", None)
    if pattern is not None and type(pattern).__name__ == "PatternStr":
        return f"`{pattern.value}`"
    return "something else"  # an internal terminal: never show its name


def _expected_phrase(expected: set[str], terminals: dict[str, Any]) -> str:
    names = set(expected)
    phrases: list[str] = []
    if len(names & _EXPRESSION_STARTS) >= 4:
        phrases.append("an expression")
        names -= _EXPRESSION_STARTS | {
            "PERCENT_LIT",
            "DATE",
            "DATETIME",
            "TIME",
            "LBRACE",
            "NONE",
        }
    ordered = sorted(names, key=lambda n: (n.startswith("_") or n == "$END", n))
    for name in ordered:
        phrase = _phrase(name, terminals)
        if phrase not in phrases:
            phrases.append(phrase)
    if len(phrases) > 5:
        phrases = [*phrases[:5], "..."]
    if len(phrases) <= 1:
        return phrases[0] if phrases else "something else"
    return ", ".join(phrases[:-1]) + " or " + phrases[-1]


def _line_keyword(text: str, token: Token) -> str | None:
    """The first word of the line the token is on (e.g. `flow`)."""
    line = token.line or 1
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    words = lines[line - 1].split()
    return words[0].rstrip(":") if words else None


def describe_unexpected(
    error: UnexpectedInput, builder: AstBuilder, indenter: LeadIndenter, text: str
) -> Diagnostic:
    """A diagnostic in words for a Lark parse error."""
    from leadlang.syntax import get_parser

    terminals = {t.name: t for t in get_parser().terminals}
    if isinstance(error, UnexpectedCharacters):
        return _unexpected_character(error, builder, text)
    if isinstance(error, UnexpectedEOF):
        token = Token(
            "$END", "", len(text), error.line, error.column, error.line, error.column, len(text)
        )
        return _diag(builder, "S002", "unexpected end of file", token)
    assert isinstance(error, UnexpectedToken)
    token = error.token
    expected = set(error.expected)
    previous = indenter.previous if indenter.current is token else indenter.current
    if token.type == "_DEDENT" and indenter.previous is not None:
        previous = indenter.previous
    prev_text = str(previous.value) if previous is not None and previous.type != "_NL" else ""

    at_end = token.type == "$END" or (token.type == "_DEDENT" and not token.value)
    if token.type == "$END" and indenter.open_brackets:
        bracket = indenter.open_brackets[-1]
        closing = {"(": ")", "[": "]", "{": "}"}[str(bracket.value)]
        return _diag(
            builder,
            "S002",
            f"this `{bracket.value}` is never closed",
            bracket,
            help=f"add the missing `{closing}`",
        )
    if at_end and "_INDENT" in expected:
        return _diag(builder, "S002", "the file ends before the indented block", token)

    context = _AFTER.get(prev_text)
    if prev_text == "to" and previous is not None and _line_keyword(text, previous) == "wait":
        context = _AFTER["up to"]
    if "COLON" in expected and token.type == "_NL":
        word = _line_keyword(text, token)
        if word in _BLOCK_KEYWORDS:
            return _diag(builder, "S001", f"expected `:` at the end of the `{word}` line", token)
    if "_INDENT" in expected and token.type != "_INDENT":
        word = _line_keyword(text, previous or token)
        what = f"the `{word}` line" if word else "a line ending in `:`"
        return _diag(builder, "S001", f"expected an indented block after {what}", token)
    if token.type in ("RPAR", "RSQB", "RBRACE") and not indenter.open_brackets:
        return _diag(
            builder, "S001", f"unexpected `{token.value}`", token, help="nothing is open here"
        )

    got = _describe_token(token)
    if context and prev_text:
        message = f"expected {context} after `{prev_text}`, found {got}"
    else:
        message = f"unexpected {got}; expected {_expected_phrase(expected, terminals)}"
        if prev_text and token.type not in ("_NL", "$END"):
            message = f"unexpected {got} after `{prev_text}`; expected {_expected_phrase(expected, terminals)}"
    code = "S002" if at_end else "S001"
    return _diag(builder, code, message, token)


def _unexpected_character(
    error: UnexpectedCharacters, builder: AstBuilder, text: str
) -> Diagnostic:
    pos = error.pos_in_stream
    char = text[pos] if 0 <= pos < len(text) else ""
    token = Token(
        "CHAR", char, pos, error.line, error.column, error.line, error.column + 1, pos + 1
    )
    if char == '"':
        rest = text[pos:].split("\n", 1)[0]
        token = Token(
            "STRING",
            rest,
            pos,
            error.line,
            error.column,
            error.line,
            error.column + len(rest),
            pos + len(rest),
        )
        return _diag(
            builder,
            "S002",
            "this string is not closed before the end of the line",
            token,
            help='add the closing `"`',
        )
    if char == "\t":
        return _diag(builder, "S003", "tab in indentation", token, help="indent with spaces only")
    if not char.isprintable() or char == "\x00":
        shown = f"U+{ord(char):04X}" if char else "character"
        return _diag(builder, "S001", f"unexpected character {shown}", token)
    return _diag(builder, "S001", f"unexpected character `{char}`", token)


def _diag(
    builder: AstBuilder, code: str, message: str, token: Token, help: str | None = None
) -> Diagnostic:
    return Diagnostic(
        code=code, severity="error", message=message, span=builder.tspan(token), help=help
    )
