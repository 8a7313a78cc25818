"""The AST builder: Lark's callbacks that turn each grammar rule's tokens into `ast` nodes.

Runs while parsing (Lark's `transformer=`), so there is no intermediate tree. It checks
literals as it builds them (durations, numbers and instants out of range are S005/S008),
applies operator precedence to the flat `expr` rule, and bounds expression depth (S007).
The parser driver (`parser.py`) owns the Lark parser and the error recovery.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from lark import Token

from leadlang import ast, limits
from leadlang.diagnostics import Diagnostic, with_article
from leadlang.interpreter.scope import EXPRESSION_KEYWORDS, KEYWORDS, normalize_event_name
from leadlang.source import Span
from leadlang.syntax.lexer import CALENDAR_DAYS, UNIT_WORDS, SyntaxProblem, calendar_help

# Expression depth (operators, calls, attributes): later passes walk the AST recursively,
# so an expression deeper than this is S007 rather than a RecursionError in the checker.
MAX_EXPR_DEPTH = 150

# Tokens the indenter adds or that span line breaks: they never start or end a node's span.
_LAYOUT = frozenset({"_NL", "_INDENT", "_DEDENT"})


# ---------------------------------------------------------------- literal checks

_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|.)")


def _escape_code(match: re.Match[str]) -> int:
    """The code a `\\uXXXX` escape names (-1 for any other escape)."""
    text = match.group()
    return int(text[2:], 16) if text.startswith("\\u") else -1


_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


_WRITTEN_DURATION = re.compile(r"(\d+(?:\.\d+)?)([A-Za-z]+)")
DURATION_HELP = (
    "durations are whole numbers with units s, m (minutes), h, d, w, e.g. `24h` or `1d12h`"
)


def compound_duration(seconds: int) -> str:
    """86400 + 43200 -> `1d12h` (weeks only when they are whole)."""
    units = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
    if seconds and seconds % 604800 == 0:
        return f"{seconds // 604800}w"
    parts = []
    for unit, size in units:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def duration_help(text: str) -> str:
    """What to write instead of a duration that does not read (`24hours`, `1.5d`, `3mo`)."""
    match = _WRITTEN_DURATION.fullmatch(text)
    if match is None:
        return DURATION_HELP
    number, word = match.group(1), match.group(2).lower()
    amount = float(number) if len(number) < 20 else None  # (a digit string no float holds)
    if amount is None:
        return DURATION_HELP
    if word in CALENDAR_DAYS:
        return calendar_help(amount, word)
    unit = UNIT_WORDS.get(word)
    if unit is None:
        return DURATION_HELP
    if amount == int(amount):  # `24hours`: the number as written, with the unit's letter
        return f"write `{int(amount)}{unit}`"
    seconds = amount * _UNIT_SECONDS[unit]
    if seconds != int(seconds) or seconds <= 0:
        return DURATION_HELP
    return f"write `{compound_duration(int(seconds))}`"


def duration_seconds(text: str) -> int | None:
    """Seconds in `30s`, `1d12h`...; None when malformed; more than `limits.MAX_DURATION`
    (however many digits) when out of range."""
    total = 0
    pos = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        digits = match.group(1)
        if len(digits) > limits.MAX_DIGITS:  # (never converted: it is out of range anyway)
            return limits.MAX_DURATION + 1
        total += int(digits) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


def _out_of_range(what: str) -> str:
    return f"{what} is out of range"


def _shorten(text: str) -> str:
    """A literal as a message quotes it: a 4,000-digit one by its ends."""
    return text if len(text) <= 24 else f"{text[:10]}...{text[-10:]}"


_RANGE_HELP = {
    "number": f"numbers are finite, and whole numbers at most {limits.MAX_INTEGER:,} "
    "(2^53 - 1) either side of 0",
    "duration": f"durations are at most {limits.MAX_DURATION // 604800:,}w "
    "(the span from year 1 to year 9999)",
    "instant": f"dates and datetimes run from {limits.FIRST_TEXT} to {limits.LAST_TEXT}",
}


class AstBuilder:
    """Lark callbacks: each grammar rule's children (all tokens kept) to an AST node.

    Spans come from tokens. `line_offset`/`pos_offset` shift them when a chunk of the file
    is parsed on its own during error recovery.
    """

    def __init__(self) -> None:
        self.file = "<string>"
        self.stem = "<string>"
        self.line_offset = 0
        self.pos_offset = 0
        self.diagnostics: list[Diagnostic] = []
        self.depths: dict[int, int] = {}  # id(expression node) -> depth, for compound nodes

    # ------------------------------------------------------------ helpers

    def tspan(self, tok: Token) -> Span:
        lo = self.line_offset
        po = self.pos_offset
        return Span(
            self.file,
            tok.line + lo,  # type: ignore[operator]
            tok.column,  # type: ignore[arg-type]
            tok.end_line + lo,  # type: ignore[operator]
            tok.end_column,  # type: ignore[arg-type]
            tok.start_pos + po,  # type: ignore[operator]
            tok.end_pos + po,  # type: ignore[operator]
        )

    @staticmethod
    def _edge(items: Sequence[Any], last: bool) -> Any:
        """The first (or last) token or node of `items` that takes up text."""
        seq = reversed(items) if last else iter(items)
        for item in seq:
            if isinstance(item, Token):
                if item.type in _LAYOUT:
                    continue
                return item
            if isinstance(item, (list, tuple)):
                found = AstBuilder._edge(item, last)
                if found is not None:
                    return found
                continue
            if getattr(item, "span", None) is not None:
                return item
        return None

    def span(self, children: Sequence[Any]) -> Span:
        """From the start of the first child to the end of the last, as one new Span (this
        runs for every node, so no intermediate Spans are built)."""
        first = self._edge(children, last=False)
        last = self._edge(children, last=True)
        if first is None or last is None:
            return Span(self.file, 1, 1, 1, 1, 0, 0)
        if isinstance(first, Token):
            line = first.line + self.line_offset  # type: ignore[operator]
            column = first.column
            start = first.start_pos + self.pos_offset  # type: ignore[operator]
        else:
            head = first.span
            line, column, start = head.line, head.column, head.start
        if isinstance(last, Token):
            end_line = last.end_line + self.line_offset  # type: ignore[operator]
            end_column = last.end_column
            end = last.end_pos + self.pos_offset  # type: ignore[operator]
        else:
            tail = last.span
            end_line, end_column, end = tail.end_line, tail.end_column, tail.end
        return Span(self.file, line, column, end_line, end_column, start, end)  # type: ignore[arg-type]

    def error(self, code: str, message: str, span: Span, help: str | None = None) -> None:
        self.diagnostics.append(
            Diagnostic(code=code, severity="error", message=message, span=span, help=help)
        )

    def reserved(
        self, tok: Token, what: str, help: str | None = None, message: str | None = None
    ) -> None:
        """N018 when a name in a reference (an event, a split, a flow to enroll...) is a
        reserved keyword: the lexer reads a keyword as a name where the grammar has no place
        for the keyword, so `on within` or `count(send)` parse, and are refused here."""
        if tok.type == "NAME" and tok.value in KEYWORDS:
            self.error(
                "N018",
                message or f"`{tok.value}` is a keyword and cannot name {with_article(what)}",
                self.tspan(tok),
                help=help
                or f"keywords are reserved: choose another name, e.g. `{tok.value}_{what.split()[-1]}`",
            )

    @staticmethod
    def values(children: Sequence[Any]) -> list[Any]:
        """Children without keywords, punctuation and layout tokens."""
        out = []
        for c in children:
            if isinstance(c, Token):
                if c.type in _VALUE_TOKENS:
                    out.append(c)
            else:
                out.append(c)
        return out

    @staticmethod
    def after(children: Sequence[Any], word: str) -> Any:
        """The child right after the keyword `word`, or None."""
        for i, c in enumerate(children):
            if isinstance(c, Token) and c.value == word and c.type not in _VALUE_TOKENS:
                return children[i + 1] if i + 1 < len(children) else None
        return None

    def ident(self, tok: Token) -> ast.Ident:
        if tok.type == "STRING":
            return ast.Ident(name=self.decode_string(tok), span=self.tspan(tok))
        return ast.Ident(name=str(tok.value), span=self.tspan(tok))

    def decode_string(self, tok: Token) -> str:
        text = str(tok.value)
        try:
            value = json.loads(text, strict=False)  # a raw tab in a string is fine
        except ValueError:
            self.error(
                "S005",
                "invalid escape in string",
                self.tspan(tok),
                help='strings use JSON escapes: \\" \\\\ \\n \\t \\uXXXX',
            )
            return text[1:-1]
        if not isinstance(value, str):
            return text[1:-1]
        if _SURROGATE.search(value):
            # json.loads joins a valid pair into one character, so what is left is a lone
            # half: no text can hold it (printing it, or writing it as UTF-8, would fail).
            self.error(
                "S005",
                "invalid escape in string: a lone UTF-16 surrogate",
                self._surrogate_span(tok),
                help="a `\\uD800`-`\\uDBFF` escape must be followed by a `\\uDC00`-`\\uDFFF` one "
                "(a surrogate pair); or write the character itself",
            )
            return _SURROGATE.sub("\ufffd", value)
        return value

    def _surrogate_span(self, tok: Token) -> Span:
        """The first escape in a string token that is half of a surrogate pair alone."""
        text = str(tok.value)
        escapes = list(_ESCAPE.finditer(text))
        codes = [_escape_code(m) for m in escapes]

        def pairs(i: int) -> bool:  # escapes i and i + 1 are a high and a low half, adjacent
            return (
                i + 1 < len(escapes)
                and escapes[i].end() == escapes[i + 1].start()
                and 0xD800 <= codes[i] <= 0xDBFF
                and 0xDC00 <= codes[i + 1] <= 0xDFFF
            )

        for i, match in enumerate(escapes):
            if not 0xD800 <= codes[i] <= 0xDFFF or pairs(i) or (i > 0 and pairs(i - 1)):
                continue
            span = self.tspan(tok)
            if span.line != span.end_line:  # (a string is on one line; never happens)
                return span
            return Span(
                span.file,
                span.line,
                span.column + match.start(),
                span.line,
                span.column + match.end(),
                span.start + match.start(),
                span.start + match.end(),
            )
        return self.tspan(tok)

    def signed(self, children: Sequence[Any]) -> ast.Number:
        sign = next(c for c in children if isinstance(c, Token) and c.type in ("PLUS", "MINUS"))
        num = next(c for c in children if isinstance(c, Token) and c.type == "NUMBER")
        value = self.number_value(num)
        if sign.type == "MINUS":
            value = -value
        return ast.Number(value=value, span=self.tspan(sign).to(self.tspan(num)))

    def number_value(self, tok: Token) -> int | float:
        text = str(tok.value).rstrip("%")
        try:
            if len(text) > limits.MAX_DIGITS:  # (not converted: Python refuses long ints)
                value: int | float = math.inf
            else:
                value = float(text) if "." in text else int(text)
        except ValueError:
            self.error("S005", f"invalid number `{tok.value}`", self.tspan(tok))
            return 0
        if not limits.number_ok(value):
            self.error(
                "S008",
                _out_of_range(f"the number `{_shorten(str(tok.value))}`"),
                self.tspan(tok),
                help=_RANGE_HELP["number"],
            )
            return 1  # (not 0, which would add "must be positive" to the same literal)
        return value

    def where_of(self, children: Sequence[Any]) -> Any:
        return self.after(children, "where")

    # ------------------------------------------------------------ module

    def start(self, children: list[Any]) -> list[Any]:
        return [c for c in children if not isinstance(c, Token)]

    # ------------------------------------------------------------ declarations

    def use_decl(self, c: list[Any]) -> ast.Use:
        target = c[1]
        if isinstance(target, Token):
            return ast.Use(target=self.decode_string(target), is_path=True, span=self.span(c))
        name = "".join(str(t.value) for t in target)
        return ast.Use(target=name, is_path=False, span=self.span(c))

    def module_name(self, c: list[Any]) -> list[Token]:
        for tok in c:
            self.reserved(tok, "module")
        return c

    def settings_decl(self, c: list[Any]) -> ast.Settings:
        return ast.Settings(items=tuple(self.values(c)), span=self.span(c))

    def timezone_setting(self, c: list[Any]) -> ast.TimezoneSetting:
        tok = c[1]
        value = ast.String(value=self.decode_string(tok), span=self.tspan(tok))
        return ast.TimezoneSetting(timezone=value, span=self.span(c))

    def quiet_setting(self, c: list[Any]) -> ast.QuietHoursSetting:
        start = self.time(c[2:3])
        end = self.time(c[4:5])
        return ast.QuietHoursSetting(start=start, end=end, span=self.span(c))

    def cap_setting(self, c: list[Any]) -> ast.CapSetting:
        self.reserved(c[1], "channel")
        count = self.number([c[2]])
        per = self.duration([c[4]])
        return ast.CapSetting(channel=self.ident(c[1]), count=count, per=per, span=self.span(c))

    def event_decl(self, c: list[Any]) -> ast.EventDecl:
        params = tuple(x for x in c if isinstance(x, ast.Param))
        name = self.ident(c[1])
        if c[1].type == "STRING":
            # Declared as the log spells it; matched by its normalised form, as `on "..."` is.
            normal = normalize_event_name(name.name)
            if not normal:
                self.error(
                    "S005",
                    "an event name needs at least one letter or digit",
                    name.span,
                    help='e.g. `event "Added To Wishlist"(sku: text)`',
                )
            name = ast.Ident(name=normal or name.name, span=name.span)
        return ast.EventDecl(name=name, params=params, span=self.span(c))

    def param(self, c: list[Any]) -> ast.Param:
        if c[0].value not in EXPRESSION_KEYWORDS:  # (`message`, as the built-in events have)
            self.reserved(c[0], "property")
        type_ref = ast.TypeRef(name=str(c[2].value), span=self.tspan(c[2]))
        return ast.Param(name=self.ident(c[0]), type=type_ref, span=self.span(c))

    def trait_decl(self, c: list[Any]) -> ast.TraitDecl:
        type_tok = self.after(c, ":")
        type_ref = (
            ast.TypeRef(name=str(type_tok.value), span=self.tspan(type_tok))
            if type_tok is not None
            else None
        )
        default = self.after(c, "=")
        return ast.TraitDecl(
            name=self.ident(c[1]), type=type_ref, default=default, span=self.span(c)
        )

    def score_decl(self, c: list[Any]) -> ast.ScoreBlock:
        return ast.ScoreBlock(
            rules=tuple(x for x in c if isinstance(x, ast.ScoreRule)),
            decays=tuple(x for x in c if isinstance(x, ast.Decay)),
            maxes=tuple(x for x in c if isinstance(x, ast.ScoreMax)),
            span=self.span(c),
        )

    def score_rule(self, c: list[Any]) -> ast.ScoreRule:
        return ast.ScoreRule(
            event=c[0], points=self.signed(c), where=self.where_of(c), span=self.span(c)
        )

    def decay(self, c: list[Any]) -> ast.Decay:
        amount_tok = c[1]
        amount = (
            self.percent([amount_tok])
            if amount_tok.type == "PERCENT_LIT"
            else self.number([amount_tok])
        )
        return ast.Decay(amount=amount, every=self.duration([c[3]]), span=self.span(c))

    def score_max(self, c: list[Any]) -> ast.ScoreMax:
        return ast.ScoreMax(value=self.number([c[1]]), span=self.span(c))

    def metric_decl(self, c: list[Any]) -> ast.MetricDecl:
        return ast.MetricDecl(name=self.ident(c[1]), expr=c[3], span=self.span(c))

    def segment_decl(self, c: list[Any]) -> ast.SegmentDecl:
        return ast.SegmentDecl(name=self.ident(c[1]), expr=c[3], span=self.span(c))

    def message_decl(self, c: list[Any]) -> ast.MessageDecl:
        fields = tuple(x for x in c if isinstance(x, ast.MessageField))
        return ast.MessageDecl(name=self.ident(c[1]), fields=fields, span=self.span(c))

    def message_field(self, c: list[Any]) -> ast.MessageField:
        self.reserved(c[0], "message field")
        from_file = isinstance(c[1], Token) and c[1].type == "FILE"
        value = c[2] if from_file else c[1]
        return ast.MessageField(
            key=self.ident(c[0]), value=value, from_file=from_file, span=self.span(c)
        )

    # ------------------------------------------------------------ flows

    def flow_decl(self, c: list[Any]) -> ast.FlowDecl:
        header: list[ast.HeaderClause] = []
        steps: list[ast.Step] = []
        for item in c[3:]:
            if isinstance(item, Token):
                continue
            if isinstance(item, _HEADER_TYPES):
                if steps:
                    self.error(
                        "S001",
                        f"`{_header_word(item)}` must come before the first step of the flow",
                        item.span,
                        help="move the trigger and other header clauses to the top of the flow",
                    )
                header.append(item)
            else:
                steps.append(item)
        return ast.FlowDecl(
            name=self.ident(c[1]), header=tuple(header), steps=tuple(steps), span=self.span(c)
        )

    def _one_line(self, c: list[Any], header: ast.HeaderClause) -> ast.FlowDecl:
        span = self.span(c)
        then = next(i for i, x in enumerate(c) if isinstance(x, Token) and x.value == "then")
        steps = tuple(x for x in c[then + 1 :] if not isinstance(x, Token))
        name = ast.Ident(name=f"{self.stem}:{span.line}", span=self.tspan(c[0]))
        return ast.FlowDecl(name=name, header=(header,), steps=steps, span=span, one_line=True)

    def when_line(self, c: list[Any]) -> ast.FlowDecl:
        trigger = ast.WhenTrigger(cond=c[1], span=self.span(c[:2]))
        return self._one_line(c, trigger)

    def on_line(self, c: list[Any]) -> ast.FlowDecl:
        then = next(i for i, x in enumerate(c) if isinstance(x, Token) and x.value == "then")
        trigger = ast.OnTrigger(event=c[1], where=self.where_of(c[:then]), span=self.span(c[:then]))
        return self._one_line(c, trigger)

    def on_trigger(self, c: list[Any]) -> ast.OnTrigger:
        return ast.OnTrigger(event=c[1], where=self.where_of(c), span=self.span(c))

    def when_trigger(self, c: list[Any]) -> ast.WhenTrigger:
        return ast.WhenTrigger(cond=c[1], span=self.span(c))

    def exit_on(self, c: list[Any]) -> ast.ExitOn:
        return ast.ExitOn(event=c[2], where=self.where_of(c), span=self.span(c))

    def exit_when(self, c: list[Any]) -> ast.ExitWhen:
        return ast.ExitWhen(cond=c[2], span=self.span(c))

    def goal(self, c: list[Any]) -> ast.Goal:
        return ast.Goal(
            event=c[1], where=self.where_of(c), within=self.after(c, "within"), span=self.span(c)
        )

    def reenter(self, c: list[Any]) -> ast.Reenter:
        mode = str(c[1].value)
        after = c[2] if mode == "after" else None
        return ast.Reenter(mode=mode, after=after, span=self.span(c))  # type: ignore[arg-type]

    def edits(self, c: list[Any]) -> ast.Edits:
        return ast.Edits(mode=str(c[1].value), span=self.span(c))  # type: ignore[arg-type]

    def event_ref(self, c: list[Any]) -> ast.EventRef:
        tok = c[0]
        self.reserved(
            tok,
            "event",
            help=f'rename the event; if the event log spells it so, quote it: `"{tok.value}"`',
        )
        if tok.type == "STRING":
            name = normalize_event_name(self.decode_string(tok))
            if not name:  # (no event has this name: incoming names need a letter or digit)
                self.error(
                    "S005",
                    "an event name needs at least one letter or digit",
                    self.tspan(tok),
                    help='e.g. `on "Order Completed"`',
                )
            return ast.EventRef(name=name, span=self.tspan(tok), quoted=True)
        return ast.EventRef(name=normalize_event_name(str(tok.value)), span=self.tspan(tok))

    def block(self, c: list[Any]) -> list[Any]:
        return [x for x in c if not isinstance(x, Token)]

    def send(self, c: list[Any]) -> ast.Send:
        names = [x for x in c[1:] if isinstance(x, Token) and x.type in ("NAME", "STRING")]
        channel = self.ident(names[0]) if len(names) == 2 else None
        if channel is not None:
            self.reserved(names[0], "channel")
        self.reserved(names[-1], "message")
        with_ = self.after(c, "with")
        return ast.Send(
            channel=channel, message=self.ident(names[-1]), with_=with_, span=self.span(c)
        )

    def wait(self, c: list[Any]) -> ast.Wait:
        return ast.Wait(duration=c[1], span=self.span(c))

    def wait_until(self, c: list[Any]) -> ast.WaitUntil:
        return ast.WaitUntil(target=c[2], span=self.span(c))

    def wait_for(self, c: list[Any]) -> ast.WaitFor:
        else_ = self.after(c, "else")
        if else_ is not None:
            else_ = tuple(else_) if isinstance(else_, list) else (else_,)
        return ast.WaitFor(
            event=c[2],
            where=self.where_of(c),
            up_to=self.after(c, "to"),
            else_=else_,
            span=self.span(c),
        )

    wait_for_block = wait_for

    def check(self, c: list[Any]) -> ast.Check:
        else_ = self.after(c, "else")
        if else_ is not None:
            else_ = tuple(else_) if isinstance(else_, list) else (else_,)
        return ast.Check(cond=c[1], within=self.after(c, "within"), else_=else_, span=self.span(c))

    check_block = check

    def tag(self, c: list[Any]) -> ast.Tag:
        return ast.Tag(tag=c[1], span=self.span(c))

    def untag(self, c: list[Any]) -> ast.Untag:
        return ast.Untag(tag=c[1], span=self.span(c))

    def set_trait(self, c: list[Any]) -> ast.SetTrait:
        if c[1].value not in EXPRESSION_KEYWORDS:  # (`set score`: the checker explains)
            self.reserved(c[1], "trait")
        return ast.SetTrait(trait=self.ident(c[1]), value=c[3], span=self.span(c))

    def score_adjust(self, c: list[Any]) -> ast.ScoreAdjust:
        return ast.ScoreAdjust(points=self.signed(c), span=self.span(c))

    def enroll(self, c: list[Any]) -> ast.Enroll:
        self.reserved(c[1], "flow")
        return ast.Enroll(flow=self.ident(c[1]), span=self.span(c))

    def exit_step(self, c: list[Any]) -> ast.ExitStep:
        return ast.ExitStep(span=self.span(c))

    def if_step(self, c: list[Any]) -> ast.If:
        first = ast.Branch(cond=c[1], steps=tuple(c[2]), span=self.span(c[:3]))
        branches = [first] + [x for x in c[3:] if isinstance(x, ast.Branch)]
        else_ = next((x[1] for x in c[3:] if isinstance(x, tuple)), None)
        return ast.If(branches=tuple(branches), else_=else_, span=self.span(c))

    def elif_clause(self, c: list[Any]) -> ast.Branch:
        return ast.Branch(cond=c[1], steps=tuple(c[2]), span=self.span(c))

    def else_clause(self, c: list[Any]) -> tuple[str, tuple[Any, ...]]:
        return ("else", tuple(c[1]))

    def split_step(self, c: list[Any]) -> ast.Split:
        self.reserved(c[1], "split")
        arms = tuple(x for x in c if isinstance(x, ast.SplitArm))
        return ast.Split(name=self.ident(c[1]), arms=arms, span=self.span(c))

    def split_arm(self, c: list[Any]) -> ast.SplitArm:
        name = self.ident(c[1]) if isinstance(c[1], Token) else None
        if name is not None:
            self.reserved(c[1], "split arm")
        return ast.SplitArm(
            percent=self.percent([c[0]]), name=name, steps=tuple(c[-1]), span=self.span(c)
        )

    # ------------------------------------------------------------ expressions

    def nested(self, node: Any, parts: Sequence[Any]) -> Any:
        """Record `node`'s depth from its sub-expressions; too deep is S007."""
        get = self.depths.get
        deepest = 1
        for part in parts:  # a plain loop: this runs for every operator in the file
            d = get(id(part), 1)
            if d > deepest:
                deepest = d
        depth = deepest + 1
        if depth > MAX_EXPR_DEPTH:
            raise SyntaxProblem(
                "S007",
                f"nesting too deep (an expression more than {MAX_EXPR_DEPTH} levels deep)",
                _span_token(node.span, self),
                help="split the expression with a `metric` or a `segment`",
            )
        self.depths[id(node)] = depth
        return node

    def expr(self, c: list[Any]) -> Any:
        """Operands and operators in a row (prefix `not`/`-` included) to a tree, by precedence."""
        return _Precedence(self, c).parse()

    def binary(self, left: Any, ops: list[Token], right: Any) -> ast.Binary:
        op = " ".join(str(t.value) for t in ops)
        op_span = self.tspan(ops[0]).to(self.tspan(ops[-1]))
        node = ast.Binary(
            op=op,  # type: ignore[arg-type]
            left=left,
            right=right,
            span=left.span.to(right.span),
            op_span=op_span,
        )
        return self.nested(node, (left, right))

    def unary(self, op: Token, operand: Any) -> ast.Unary:
        node = ast.Unary(
            op=str(op.value),  # type: ignore[arg-type]
            operand=operand,
            span=self.tspan(op).to(operand.span),
        )
        return self.nested(node, (operand,))

    def attr(self, c: list[Any]) -> ast.Attr:
        return self.nested(ast.Attr(obj=c[0], name=self.ident(c[2]), span=self.span(c)), (c[0],))

    def call(self, c: list[Any]) -> ast.Call:
        args: list[Any] = []
        where = within = None
        i = 2
        while i < len(c) - 1:
            x = c[i]
            if isinstance(x, Token) and x.type not in _VALUE_TOKENS:
                if x.value == "where":
                    where = c[i + 1]
                    i += 2
                    continue
                if x.value == "within":
                    within = c[i + 1]
                    i += 2
                    continue
                i += 1
                continue
            args.append(x)
            i += 1
        node = ast.Call(
            func=self.ident(c[0]), args=tuple(args), where=where, within=within, span=self.span(c)
        )
        return self.nested(node, (*args, where, within))

    def paren(self, c: list[Any]) -> Any:
        return c[1]

    def number(self, c: list[Any]) -> ast.Number:
        return ast.Number(value=self.number_value(c[0]), span=self.tspan(c[0]))

    def percent(self, c: list[Any]) -> ast.Number:
        tok = c[0]
        value = self.number_value(tok)
        # Round so that 60% is exactly 0.6, not 0.6000000000000001.
        return ast.Number(value=round(value / 100, 12), span=self.tspan(tok), percent=True)

    def duration(self, c: list[Any]) -> ast.Duration:
        tok = c[0]
        text = str(tok.value)
        seconds = duration_seconds(text)
        if seconds is None:
            self.error(
                "S005",
                f"invalid duration `{text}`",
                self.tspan(tok),
                help=duration_help(text),
            )
            return ast.Duration(seconds=0, text=text, span=self.tspan(tok), valid=False)
        if not limits.duration_ok(seconds):
            self.error(
                "S008",
                _out_of_range(f"the duration `{_shorten(text)}`"),
                self.tspan(tok),
                help=_RANGE_HELP["duration"],
            )
            return ast.Duration(seconds=1, text=text, span=self.tspan(tok), valid=False)
        return ast.Duration(seconds=seconds, text=text, span=self.tspan(tok))

    def date(self, c: list[Any]) -> ast.Date:
        tok = c[0]
        try:
            day = dt.date.fromisoformat(str(tok.value))
        except ValueError:
            self.error(
                "S005", f"invalid date `{tok.value}`", self.tspan(tok), help="dates are YYYY-MM-DD"
            )
        else:
            # (a date is local to the script's time zone, judged here as if in UTC: the
            # range's margins hold any zone's offset)
            self._check_instant(dt.datetime(day.year, day.month, day.day), tok, "date")
        return ast.Date(text=str(tok.value), span=self.tspan(tok))

    def _check_instant(self, moment: dt.datetime, tok: Token, what: str) -> None:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        if not limits.moment_ok(moment):
            self.error(
                "S008",
                _out_of_range(f"the {what} `{tok.value}`"),
                self.tspan(tok),
                help=_RANGE_HELP["instant"],
            )

    def datetime(self, c: list[Any]) -> ast.DateTime:
        tok = c[0]
        text = str(tok.value)
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.error(
                "S005",
                f"invalid datetime `{text}`",
                self.tspan(tok),
                help="datetimes are like `2025-10-01T09:00`, `...:00Z` or `...+02:00`",
            )
        else:
            self._check_instant(moment, tok, "datetime")
        return ast.DateTime(text=text, span=self.tspan(tok))

    def time(self, c: list[Any]) -> ast.Time:
        tok = c[0]
        parts = [int(p) for p in str(tok.value).split(":")]
        hour, minute = parts[0], parts[1]
        second = parts[2] if len(parts) > 2 else 0
        if hour > 23 or minute > 59 or second > 59:
            self.error(
                "S005",
                f"invalid time of day `{tok.value}`",
                self.tspan(tok),
                help="times of day run from `00:00` to `23:59`",
            )
            hour, minute, second = min(hour, 23), min(minute, 59), min(second, 59)
        return ast.Time(hour=hour, minute=minute, second=second, span=self.tspan(tok))

    def string(self, c: list[Any]) -> ast.String:
        return ast.String(value=self.decode_string(c[0]), span=self.tspan(c[0]))

    def true(self, c: list[Any]) -> ast.Bool:
        return ast.Bool(value=True, span=self.tspan(c[0]))

    def false(self, c: list[Any]) -> ast.Bool:
        return ast.Bool(value=False, span=self.tspan(c[0]))

    def none(self, c: list[Any]) -> ast.NoneLit:
        return ast.NoneLit(span=self.tspan(c[0]))

    def name(self, c: list[Any]) -> ast.Name:
        if c[0].value in KEYWORDS and c[0].value not in EXPRESSION_KEYWORDS:
            self.reserved(
                c[0],
                "value",
                message=f"`{c[0].value}` is a keyword and cannot be used as a name",
                help="keywords are reserved: choose another name; an event the log spells "
                f'so can be quoted, e.g. `count("{c[0].value}")`',
            )
        return ast.Name(name=str(c[0].value), span=self.tspan(c[0]))

    def list_lit(self, c: list[Any]) -> ast.ListLit:
        items = tuple(x for x in c if not isinstance(x, Token))
        return self.nested(ast.ListLit(items=items, span=self.span(c)), items)

    def object_lit(self, c: list[Any]) -> ast.ObjectLit:
        entries = tuple(x for x in c if isinstance(x, ast.ObjectEntry))
        node = ast.ObjectLit(entries=entries, span=self.span(c))
        return self.nested(node, [e.value for e in entries])

    def object_entry(self, c: list[Any]) -> ast.ObjectEntry:
        key_tok = c[0]
        key = self.decode_string(key_tok) if key_tok.type == "STRING" else str(key_tok.value)
        return ast.ObjectEntry(key=key, value=c[2], span=self.span(c), key_span=self.tspan(key_tok))


# Binding strength of binary operators, by their first word (`starts with` -> `starts`,
# `not in` after an operand -> `not`).
_BINARY_PRECEDENCE = {op.split()[0]: prec for op, prec in ast.BINARY_PRECEDENCE.items()}
_NOT_OPERAND_PRECEDENCE = ast.NOT_PRECEDENCE
_TWO_WORD_OPS = frozenset({"starts", "ends", "not"})


class _Precedence:
    """Precedence climbing over the flat children of the `expr` rule."""

    def __init__(self, builder: AstBuilder, items: list[Any]) -> None:
        self.builder = builder
        self.items = items
        self.i = 0

    def parse(self) -> Any:
        return self.binary(1)

    def binary(self, min_prec: int) -> Any:
        left = self.prefixed()
        items = self.items
        while self.i < len(items):
            tok = items[self.i]
            prec = _BINARY_PRECEDENCE[str(tok.value)]
            if prec < min_prec:
                break
            ops = [tok]
            self.i += 1
            if tok.value in _TWO_WORD_OPS:  # `starts with`, `ends with`, `not in`
                ops.append(items[self.i])
                self.i += 1
            right = self.binary(prec + 1)
            left = self.builder.binary(left, ops, right)
        return left

    def prefixed(self) -> Any:
        items = self.items
        start = self.i
        while isinstance(items[self.i], Token) and items[self.i].type in ("NOT", "MINUS"):
            self.i += 1
        if self.i - start > MAX_EXPR_DEPTH:
            raise SyntaxProblem(
                "S007",
                f"nesting too deep (more than {MAX_EXPR_DEPTH} `not` or `-` in a row)",
                items[start],
                help="remove the repeated operators",
            )
        if self.i == start:
            operand = items[self.i]
            self.i += 1
            return operand
        op = items[start]
        self.i = start + 1
        if op.type == "NOT":
            return self.builder.unary(op, self.binary(_NOT_OPERAND_PRECEDENCE + 1))
        return self.builder.unary(op, self.prefixed())


_VALUE_TOKENS = frozenset(
    {"NAME", "STRING", "NUMBER", "PERCENT_LIT", "DURATION", "DATE", "DATETIME", "TIME", "FILE"}
)
_HEADER_TYPES = (
    ast.OnTrigger,
    ast.WhenTrigger,
    ast.ExitOn,
    ast.ExitWhen,
    ast.Goal,
    ast.Reenter,
    ast.Edits,
)


def _span_token(span: Span, builder: AstBuilder) -> Token:
    """A token at `span`, un-shifted so that `builder.tspan` maps it back to `span`."""
    lo, po = builder.line_offset, builder.pos_offset
    return Token(
        "SPAN",
        "",
        span.start - po,
        span.line - lo,
        span.column,
        span.end_line - lo,
        span.end_column,
        span.end - po,
    )


def _header_word(clause: ast.HeaderClause) -> str:
    return {
        ast.OnTrigger: "on",
        ast.WhenTrigger: "when",
        ast.ExitOn: "exit on",
        ast.ExitWhen: "exit when",
        ast.Goal: "goal",
        ast.Reenter: "reenter",
        ast.Edits: "edits",
    }[type(clause)]
