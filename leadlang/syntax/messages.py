"""Syntax errors in words: Lark's unexpected-token errors to S-code diagnostics.

Lark reports the terminal names it expected (`NAME`, `_NL`, `$END`); people need phrases
("a message name after `send`"). The expected set is mapped to phrases and the previous
token gives context; no terminal name ever reaches a message.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.lexer import TerminalDef

from leadlang.diagnostics import Diagnostic
from leadlang.syntax.build import AstBuilder
from leadlang.syntax.lexer import CALENDAR_DAYS, UNIT_WORDS, LeadIndenter, calendar_help

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
    "score": "a signed number like `+5` or `-2`",
}

# A short example of a correct line, by the keyword it starts with (or the keyword just read):
# the help of a syntax error shows what was expected at that point, written out.
_EXAMPLES: dict[str, str] = {
    "send": '`send deal` or `send deal with {code: "X1"}`',
    "wait": "`wait 2d`, `wait until 09:00` or `wait for order_completed up to 3d`",
    "until": "`wait until 09:00` or `wait until 2025-12-01T09:00`",
    "for": "`wait for order_completed up to 3d`",
    "up to": "`wait for order_completed up to 3d`",
    "enroll": "`enroll onboarding`",
    "flow": "`flow welcome:` followed by indented lines",
    "message": "`message deal:` followed by indented fields",
    "segment": "`segment vip = score > 50`",
    "metric": "`metric orders = count(order_completed within 30d)`",
    "event": "`event order_completed(total: number, currency: text)`",
    "trait": '`trait plan: text = "free"`',
    "split": "`split subject_test:` with arms like `50% a: send deal_a` below",
    "set": '`set plan = "pro"`',
    "on": "`on signed_up` or `on order_completed where total > 100`",
    "goal": "`goal order_completed within 14d`",
    "use": '`use std.segments` or `use "shared/messages.lead"`',
    "tag": '`tag "vip"`',
    "untag": '`untag "vip"`',
    "every": "`decay 10 every 7d idle`",
    "decay": "`decay 10 every 7d idle` or `decay 5% every 7d idle`",
    "per": "`cap email 2 per 1d`",
    "cap": "`cap email 2 per 1d`",
    "quiet": "`quiet hours 21:00 to 08:00`",
    "hours": "`quiet hours 21:00 to 08:00`",
    "timezone": '`timezone "Europe/Paris"`',
    "reenter": "`reenter never`, `reenter always` or `reenter after 30d`",
    "after": "`reenter after 30d`",
    "edits": "`edits keep` (the default) or `edits migrate`",
    "max": "`max 100`",
    "score": "`score +5` or `score -2`",
    "check": "`check opened(deal) within 2d else exit`",
    "within": "`within 30d`",
    "exit": "`exit`, `exit on unsubscribed` or `exit when score < 10`",
    "when": "`when score > 50`",
    "where": "`where total > 100`",
    "if": "`if score > 50:` followed by indented steps",
    "elif": "`elif score > 20:` followed by indented steps",
    "else": "`else:` followed by indented steps, or `else exit` on one line",
    "then": '`when score > 50 then tag "hot"`',
    "settings": '`settings:` followed by indented lines like `timezone "Europe/Paris"`',
}
_SPLIT_ARM = "`50% a: send deal_a` (each arm starts with its share of contacts, above 0%)"
# Examples by the enclosing block, and inside an open bracket.
_BLOCK_EXAMPLES: dict[str, str] = {
    "score": "`order_completed +25 where total > 100`, `decay 10 every 7d idle` or `max 100`",
    "settings": '`timezone "Europe/Paris"`, `quiet hours 21:00 to 08:00` or `cap email 2 per 1d`',
    "message": '`channel email`, `subject "20% off"` or `html file "templates/deal.html"`',
    "split": _SPLIT_ARM,
    "flow": '`on signed_up`, `send deal`, `wait 2d` or `tag "vip"`',
}
_BRACKET_EXAMPLES: dict[str, str] = {
    "{": '`{code: "X1", "other key": score}`',
    "[": '`["vip", "beta"]`',
    "(": "`count(order_completed where total > 5 within 30d)` or `(score + 10) / 2`",
}
_DECLARATION_EXAMPLE = (
    "a declaration starts at column 0 with its keyword, e.g. `flow welcome:` or "
    "`segment vip = score > 50`; steps go on indented lines inside a `flow`"
)
_HEADER_EXAMPLE = (
    'e.g. `on signed_up`, `when score > 50`, `send deal` or `tag "vip"` (the trigger and '
    "other header clauses first, then the steps, one a line)"
)
_STEP_EXAMPLE = (
    'e.g. `send deal`, `wait 2d` or `tag "vip"` (one step a line, or steps separated by `;`)'
)


def _example_for(word: str | None) -> str | None:
    return _EXAMPLES.get(word) if word else None


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


_DECLARATION_WORDS = (
    "use",
    "settings",
    "event",
    "trait",
    "score",
    "metric",
    "segment",
    "message",
    "flow",
    "when",
    "on",
)
_STEP_WORDS = (
    "send",
    "wait",
    "check",
    "if",
    "split",
    "tag",
    "untag",
    "set",
    "score",
    "enroll",
    "exit",
)
_CLOSING_BRACKET = {"(": ")", "[": "]", "{": "}"}  # the bracket that closes each one
_HEADER_WORDS = ("on", "when", "exit", "goal", "reenter", "edits")


_OPERATOR_WORDS = frozenset(
    {"or", "and", "not", "in", "starts", "ends", "contains", "matches", "+", "-", "*", "/", "%"}
    | {"==", "!=", "<", "<=", ">", ">=", "."}
)


def _literal(terminal: str, terminals: dict[str, Any]) -> str | None:
    """The text of a terminal that is a fixed string (`and`, `==`), else None."""
    pattern = getattr(terminals.get(terminal), "pattern", None)
    if pattern is not None and type(pattern).__name__ == "PatternStr":
        return str(pattern.value)
    return None


def _indent_token(raw: Token) -> Token:
    """The indentation at the start of the line an INDENT token introduces."""
    line = raw.end_line or raw.line or 1
    end = raw.end_pos or 0
    width = len(str(raw.value))
    return Token("_INDENT", raw.value, end - width, line, 1, line, width + 1, end)


def _group_phrase(expected: set[str]) -> tuple[str, tuple[str, ...]] | None:
    """A phrase for the big expected sets: the start of a declaration, a step, a header."""
    if {"FLOW", "METRIC", "SEGMENT", "MESSAGE"} <= expected:
        return (
            "a declaration (`flow`, `metric`, `segment`, `message`, `score`, ...)",
            _DECLARATION_WORDS,
        )
    if {"SEND", "WAIT", "TAG", "ENROLL"} <= expected:
        if {"REENTER", "GOAL"} <= expected:
            return (
                "a step or a header clause (`on`, `when`, `goal`, ...)",
                _STEP_WORDS + _HEADER_WORDS,
            )
        if "IF" not in expected:  # after `then`, `else` or `;` on one line
            return "a one-line step (`send`, `wait`, `check`, `tag`, ...)", _STEP_WORDS
        return "a step (`send`, `wait`, `check`, `if`, `tag`, ...)", _STEP_WORDS
    return None


def _did_you_mean(token: Token, words: tuple[str, ...]) -> str | None:
    if token.type != "NAME":
        return None
    close = difflib.get_close_matches(str(token.value), words, n=1, cutoff=0.7)
    return f"did you mean `{close[0]}`?" if close else None


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


def _line_text(text: str, token: Token) -> str | None:
    """The text of the line the token is on, without indentation or a comment."""
    line = token.line or 1
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    return lines[line - 1].split("#", 1)[0].strip() or None


def _line_keyword(text: str, token: Token) -> str | None:
    """The first word of the line the token is on (e.g. `flow`)."""
    line = token.line or 1
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    words = lines[line - 1].split()
    return words[0].rstrip(":") if words else None


def describe_unexpected(
    error: UnexpectedInput,
    builder: AstBuilder,
    indenter: LeadIndenter,
    text: str,
    grammar_terminals: Iterable[TerminalDef],
) -> Diagnostic:
    """A diagnostic in words for a Lark parse error (`grammar_terminals`: the parser's)."""
    terminals = {t.name: t for t in grammar_terminals}
    if isinstance(error, UnexpectedCharacters):
        return _unexpected_character(error, builder, text, terminals)
    if isinstance(error, UnexpectedEOF):
        token = Token(
            "$END", "", len(text), error.line, error.column, error.line, error.column, len(text)
        )
        expected_words = _expected_phrase(set(error.expected or ()), terminals)
        return _diag(
            builder,
            "S002",
            "unexpected end of file",
            token,
            help=f"the file ends here, but {expected_words} was expected: finish the line",
        )
    assert isinstance(error, UnexpectedToken)
    raw = error.token
    token = _point_if_layout(raw)
    expected = _accepted(error, builder)
    # The indenter has read one token past `raw` only when `raw` is one it injected.
    previous = indenter.previous if indenter.current is raw else indenter.current
    if raw.type in ("_INDENT", "_DEDENT") and indenter.previous is not None:
        previous = indenter.previous
    prev_text = str(previous.value) if previous is not None and previous.type != "_NL" else ""

    at_end = token.type == "$END" or (token.type == "_DEDENT" and not token.value)
    if token.type == "$END" and indenter.open_brackets:
        bracket = indenter.open_brackets[-1]
        closing = _CLOSING_BRACKET[str(bracket.value)]
        return _diag(
            builder,
            "S002",
            f"this `{bracket.value}` is never closed",
            bracket,
            help=f"add the missing `{closing}`",
        )
    if at_end and "_INDENT" in expected:
        # The end of this declaration, which is not always the end of the file: a line at
        # column 0 starts the next declaration (`flow f:` then an unindented `on e`).
        header = _line_text(text, token)
        what = f"`{header}`" if header and len(header) <= 40 else "a line ending in `:`"
        return _diag(
            builder,
            "S002",
            f"expected an indented block after {what}",
            token,
            help="indent the lines that belong to it with spaces, deeper than the line "
            "ending in `:`",
        )

    # Context applies to keywords only: `score` or `max` read as names in expressions.
    context = _AFTER.get(prev_text) if previous is not None and previous.type != "NAME" else None
    if prev_text == "to" and previous is not None and _line_keyword(text, previous) == "wait":
        context = _AFTER["up to"]
    if "COLON" in expected and token.type == "_NL":
        word = _line_keyword(text, token)
        if word in _BLOCK_KEYWORDS:
            example = _example_for(word)
            return _diag(
                builder,
                "S001",
                f"expected `:` at the end of the `{word}` line",
                token,
                help="a block's first line ends with `:`"
                + (f", e.g. {example}" if example else ""),
            )
    if "_INDENT" in expected and token.type != "_INDENT":
        word = _line_keyword(text, previous or token)
        what = f"the `{word}` line" if word else "a line ending in `:`"
        return _diag(
            builder,
            "S001",
            f"expected an indented block after {what}",
            token,
            help="indent the lines that belong to it with spaces, deeper than the line "
            "ending in `:`",
        )
    if token.type in ("RPAR", "RSQB", "RBRACE") and not indenter.open_brackets:
        return _diag(
            builder, "S001", f"unexpected `{token.value}`", token, help="nothing is open here"
        )

    if indenter.open_brackets and raw.type != "$END":
        bracket = indenter.open_brackets[-1]
        if (raw.line or 0) > (bracket.line or 0) and raw.column == 1:
            closing = _CLOSING_BRACKET[str(bracket.value)]
            return _diag(
                builder,
                "S001",
                f"this `{bracket.value}` is not closed before line {(raw.line or 0) + builder.line_offset}",
                bracket,
                help=f"add the missing `{closing}`",
            )

    if raw.type == "_INDENT":
        return _diag(
            builder,
            "S001",
            "unexpected indentation",
            _indent_token(raw),
            help="indent this line like the line above it",
        )
    if prev_text == ":" and expected <= {"_NL"}:
        return _diag(
            builder,
            "S001",
            "expected the end of the line after `:`",
            token,
            help="a block's lines go below the line ending in `:`, indented",
        )

    got = _describe_token(token)
    literals = {text for text in (_literal(n, terminals) for n in expected) if text}
    help: str | None = _hint(raw, previous, prev_text, expected, literals)
    if previous is not None and previous.type == "NUMBER" and str(raw.value) in CALENDAR_DAYS:
        help = calendar_help(str(previous.value), str(raw.value))
    if previous is not None and previous.type == "NUMBER" and str(raw.value) in UNIT_WORDS:
        help = (
            f"write durations without a space, e.g. `{previous.value}{UNIT_WORDS[str(raw.value)]}`"
        )
    if {"and", "or"} <= {_literal(n, terminals) for n in expected}:  # after an expression
        others = {n for n in expected if _literal(n, terminals) not in _OPERATOR_WORDS}
        phrase = _expected_phrase(others, terminals) if others else ""
        joiner = ", " if " or " in phrase else " or "
        what = "an operator" + (f"{joiner}{phrase}" if phrase else "")
        where = f" after `{prev_text}`" if prev_text else ""
        inside = str(indenter.open_brackets[-1].value) if indenter.open_brackets else None
        if help is None and inside is not None and "COMMA" in expected:
            items = {"(": "arguments", "[": "items", "{": "entries"}[inside]
            help = (
                f"separate the {items} with `,` (and join two values with an operator such "
                f"as `and`, `==` or `+`); e.g. {_BRACKET_EXAMPLES[inside]}"
            )
        if help is None:
            help = (
                "two values are joined by an operator (`and`, `or`, `==`, `>`, `+`, ...), "
                'e.g. `score > 50 and plan == "pro"`'
                + (f"; otherwise {phrase} was expected here" if phrase else "")
            )
        return _diag(builder, "S001", f"expected {what}{where}, found {got}", token, help=help)
    group = _group_phrase(expected)
    if group is not None:
        where = (
            f" after `{prev_text}`"
            if prev_text and previous is not None and previous.type != "_NL"
            else ""
        )
        help = _did_you_mean(raw, group[1]) or help
        if raw.type in ("IF", "SPLIT") and "IF" not in expected:
            help = (
                f"write `else:` and put the `{raw.value}` on the indented lines below"
                if prev_text == "else"
                else f"`{raw.value}` takes a block: write it inside a `flow NAME:` block"
            )
        if help is None:
            if group[1] is _DECLARATION_WORDS:
                help = _DECLARATION_EXAMPLE
            elif "REENTER" in expected:  # a flow's first lines: a header clause or a step
                help = _HEADER_EXAMPLE
            else:
                help = _STEP_EXAMPLE
        return _diag(
            builder,
            "S002" if at_end else "S001",
            f"expected {group[0]}{where}, found {got}",
            token,
            help=help,
        )
    what = context or _expected_phrase(expected, terminals)
    if prev_text:
        message = f"expected {what} after `{prev_text}`, found {got}"
    else:
        message = f"expected {what}, found {got}"
    if help is None:
        keyword = (
            ("up to" if context == _AFTER["up to"] else prev_text)
            if previous is not None and previous.type not in ("NAME", "STRING")
            else None
        )
        line_word = _line_keyword(text, token)
        inside = str(indenter.open_brackets[-1].value) if indenter.open_brackets else None
        if inside == "(" and line_word == "event":
            inside = None  # the line's own example shows the properties
        words = (keyword, inside, line_word, _block_keyword(text, token))
        help = _expected_help(what if context else None, expected, terminals, words)
    code = "S002" if at_end else "S001"
    return _diag(builder, code, message, token, help=help)


def _expected_help(
    context: str | None,
    expected: set[str],
    terminals: dict[str, Any],
    words: tuple[str | None, str | None, str | None, str | None],
) -> str:
    """The help of a syntax error with no more specific hint: what was expected, in words,
    and an example of the construct being written. `context` is what may follow the keyword
    just read; `words` are that keyword, the innermost open bracket, the first word of the
    line and the keyword of the enclosing block: the first with an example gives it."""
    keyword, bracket, line_word, block_word = words
    if "PERCENT_LIT" in expected and "NUMBER" not in expected:
        return f"write a percentage here, e.g. {_SPLIT_ARM}"
    example = (
        _example_for(keyword)
        or _BRACKET_EXAMPLES.get(bracket or "")
        or _example_for(line_word)
        or _BLOCK_EXAMPLES.get(block_word or "")
    )
    enders = expected & {"_NL", "$END", "_DEDENT"}
    others = expected - enders - {"SEMICOLON"}
    if context is not None:
        help = f"write {context} here"
    elif not others:
        help = "end the line here (put the next step or clause on a line of its own)"
    else:
        help = f"write {_expected_phrase(others, terminals)} here"
        if "_NL" in enders:
            help += ", or end the line"
        elif enders:
            help += ", or end the block"
    return help + (f"; e.g. {example}" if example else "")


def _block_keyword(text: str, token: Token) -> str | None:
    """The first word of the line that opens the block the token is in (`message` for a
    line in a `message deal:` block), if any."""
    lines = text.split("\n")
    line = min(token.line or 1, len(lines))
    indent = None
    for i in range(line - 1, -1, -1):
        stripped = lines[i].split("#", 1)[0].strip()
        if not stripped:
            continue
        depth = len(lines[i]) - len(lines[i].lstrip(" "))
        if indent is None:
            indent = depth
        elif depth < indent:
            return stripped.split()[0].rstrip(":")
    return None


def _hint(
    raw: Token, previous: Token | None, prev_text: str, expected: set[str], literals: set[str]
) -> str | None:
    """Help for the mistakes people bring from other languages or write by habit."""
    value = str(raw.value)
    if value == "=" and "==" in literals:
        return 'to compare, write `==` (a single `=` only sets: `set plan = "pro"`)'
    if raw.type == "NUMBER" and "PERCENT_LIT" in expected and "NUMBER" not in expected:
        return f"write the share as a percentage: `{value}%`"
    if value == "if" and prev_text == "else":
        return "write `elif CONDITION:` for another branch"
    if previous is None or previous.line != raw.line:
        return None
    if previous.type == "DURATION" and raw.type == "DURATION":
        return f"write a duration in one piece, without spaces: `{previous.value}{value}`"
    if previous.type == "STRING" and raw.start_pos == previous.end_pos:
        # `"Hi "there""`: the inner quote ended the string.
        quoted = f"`'{value}'`" if raw.type == "NAME" else "single quotes `'...'`"
        return f'a `"` inside a string ends it: write {quoted} or escape it as `\\"`'
    return None


def _accepted(error: UnexpectedToken, builder: AstBuilder) -> set[str]:
    """The terminals the parser really accepts here.

    Lark's `expected` comes from merged LALR states and may list words that cannot follow;
    the interactive parser tries each terminal. Trying may run AST callbacks, so their
    diagnostics are dropped afterwards.
    """
    kept = len(builder.diagnostics)
    try:
        parser = error.interactive_parser
        accepted = set(parser.accepts()) if parser is not None else set(error.expected)
    except Exception:  # any failure here only costs precision of the message
        accepted = set(error.expected)
    del builder.diagnostics[kept:]
    return accepted or set(error.expected)


def _point_if_layout(token: Token) -> Token:
    """Layout tokens span a newline and the next line's indentation: point at the newline."""
    if token.type not in ("_NL", "_INDENT", "_DEDENT", "$END"):
        return token
    pos = token.start_pos or 0
    line = token.line or 1
    col = token.column or 1
    return Token(token.type, token.value, pos, line, col, line, col + 1, pos + 1)


def _unexpected_character(
    error: UnexpectedCharacters, builder: AstBuilder, text: str, terminals: dict[str, Any]
) -> Diagnostic:
    pos: int = error.pos_in_stream or 0
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
    help = _CHARACTER_HINTS.get(char)
    if help is not None and char in _OPENING_QUOTES:
        # Show the very string, requoted: `'pro'` or `“pro”` -> `"pro"`.
        rest = text[pos + 1 :].split("\n", 1)[0]
        close = min((i for i, c in enumerate(rest) if c in _CLOSING_QUOTES), default=-1)
        if 0 <= close <= 60:
            help = f'{help}: `"{rest[:close]}"`'
    if help is not None:
        return _diag(builder, "S001", f"unexpected character `{char}`", token, help=help)
    help = _character_help(error, text, token, terminals)
    if not char.isprintable() or char == "\x00":
        shown = f"U+{ord(char):04X}" if char else "character"
        return _diag(builder, "S001", f"unexpected character {shown}", token, help=help)
    return _diag(builder, "S001", f"unexpected character `{char}`", token, help=help)


def _character_help(
    error: UnexpectedCharacters, text: str, token: Token, terminals: dict[str, Any]
) -> str:
    """What the parser would have accepted where a stray character is (the lexer passes
    the terminals of the parser's state, which may list a few more than really fit)."""
    allowed = {name for name in (error.allowed or ()) if name in terminals}
    group = _group_phrase(allowed)
    if group is not None:
        expected = group[0]
    elif {"AND", "OR"} <= allowed:
        expected = "an operator (`and`, `or`, `==`, `+`, ...) or the end of the expression"
    else:
        expected = _expected_phrase(allowed, terminals) if allowed else ""
    if not expected or expected == "something else":
        return "remove it: it has no meaning in a script outside a string or a comment"
    example = _example_for(_line_keyword(text, token))
    return f"expected {expected} here" + (f", e.g. {example}" if example else "")


_QUOTES_HINT = "use straight double quotes (an editor or word processor curled these)"
_OPENING_QUOTES = "'\u201c\u201e\u2018\u00ab"
_CLOSING_QUOTES = "'\u201d\u201c\u2019\u00bb"
_CHARACTER_HINTS = {
    "&": "write `and` (`&&` is not an operator here)",
    "|": "write `or` (`||` is not an operator here)",
    "!": 'write `not`, or `!=` for "is not equal"',
    "'": "strings are written in double quotes",
    "\u201c": _QUOTES_HINT,  # “
    "\u201d": _QUOTES_HINT,  # ”
    "\u201e": _QUOTES_HINT,  # „
    "\u2018": _QUOTES_HINT,  # ‘
    "\u2019": _QUOTES_HINT,  # ’
    "\u00ab": _QUOTES_HINT,  # «
    "\u00bb": _QUOTES_HINT,  # »
}


def _diag(
    builder: AstBuilder, code: str, message: str, token: Token, help: str | None = None
) -> Diagnostic:
    return Diagnostic(
        code=code, severity="error", message=message, span=builder.tspan(token), help=help
    )
