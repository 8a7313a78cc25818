"""Expression types: infer the type of every expression, reporting unknown names and misuse.

Types are plain strings: `number text bool datetime duration time list object`, plus `none`
(the literal) and `unknown` (a value we cannot know statically: an undeclared event's
property, an untyped trait). `unknown` is compatible with everything, so a script without
declarations is checked only where it can be proven wrong.

Names are classified with `scope.classify`, the rule the compiler uses as well.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs

from leadlang import ast, regex
from leadlang.diagnostics import Diagnostic, Label, with_article
from leadlang.interpreter import scope
from leadlang.interpreter.resolve import Symbols, did_you_mean
from leadlang.source import Span

NUMBER = "number"
TEXT = "text"
BOOL = "bool"
DATETIME = "datetime"
DURATION = "duration"
TIME = "time"
LIST = "list"
OBJECT = "object"
NONE = "none"
UNKNOWN = "unknown"

ANY_EVENT = "*"  # `Context.bound` when some event is bound but we cannot tell which
# an object with one of these as its only key is, in a compiled message's `headers` and
# `json`, an expression (`$expr`) or its value computed at the send (`$value`)
_MARKERS = frozenset({"$expr", "$value"})

_ORDERED_PAIRS = {
    (NUMBER, NUMBER),
    (DATETIME, DATETIME),
    (DATETIME, TEXT),
    (TEXT, DATETIME),
    (DURATION, DURATION),
    (TIME, TIME),
    (TEXT, TEXT),
}
_EQUAL_PAIRS = {(DATETIME, TEXT), (TEXT, DATETIME)}
_ARITHMETIC: dict[tuple[str, str, str], str] = {
    ("+", NUMBER, NUMBER): NUMBER,
    ("+", DATETIME, DURATION): DATETIME,
    ("+", DURATION, DATETIME): DATETIME,
    ("+", DURATION, DURATION): DURATION,
    ("+", TEXT, TEXT): TEXT,
    ("-", NUMBER, NUMBER): NUMBER,
    ("-", DATETIME, DURATION): DATETIME,
    ("-", DATETIME, DATETIME): DURATION,
    ("-", DURATION, DURATION): DURATION,
    ("*", NUMBER, NUMBER): NUMBER,
    ("*", NUMBER, DURATION): DURATION,
    ("*", DURATION, NUMBER): DURATION,
    ("/", NUMBER, NUMBER): NUMBER,
    ("/", DURATION, NUMBER): DURATION,
    ("/", DURATION, DURATION): NUMBER,
    ("%", NUMBER, NUMBER): NUMBER,
}
# Scalar functions: (minimum args, maximum args or -1, accepted argument types, result).
# A result of "" means "the type of the first argument".
_SCALARS: dict[str, tuple[int, int, tuple[str, ...], str]] = {
    "sigmoid": (1, 1, (NUMBER,), NUMBER),
    "abs": (1, 1, (NUMBER, DURATION), ""),
    "round": (1, 2, (NUMBER,), NUMBER),
    "min": (1, -1, (NUMBER, DURATION, DATETIME), ""),
    "max": (1, -1, (NUMBER, DURATION, DATETIME), ""),
    "lower": (1, 1, (TEXT,), TEXT),
    "upper": (1, 1, (TEXT,), TEXT),
    "len": (1, 1, (TEXT, LIST), NUMBER),
}


def known(t: str) -> bool:
    return t != UNKNOWN


def assignable(value: str, declared: str) -> bool:
    """May a value of type `value` be stored where `declared` is expected?"""
    if value in (UNKNOWN, NONE) or declared == UNKNOWN or value == declared:
        return True
    return value == TEXT and declared == DATETIME  # ISO 8601 text, as in comparisons


def constant_seconds(expr: ast.Expr) -> float | None:
    """The seconds of a duration written with constants only (`-1d`, `2 * 12h`, `1d - 2d`);
    None when it reads anything else (then only the run knows its value)."""
    if isinstance(expr, ast.Duration):
        return expr.seconds if expr.valid else None  # a bad literal is reported once, as S005
    if isinstance(expr, ast.Number):
        return expr.value
    if isinstance(expr, ast.Unary) and expr.op == "-":
        inner = constant_seconds(expr.operand)
        return None if inner is None else -inner
    if isinstance(expr, ast.Binary) and expr.op in ("+", "-", "*", "/"):
        left, right = constant_seconds(expr.left), constant_seconds(expr.right)
        if left is None or right is None:
            return None
        try:  # huge literals overflow floats: then the value is simply not known here
            if expr.op == "+":
                return left + right
            if expr.op == "-":
                return left - right
            if expr.op == "*":
                return left * right
            return left / right if right else None
        except OverflowError:
            return None
    return None


def article(t: str) -> str:
    if t in (UNKNOWN, NONE):
        return f"`{t}`" if t == NONE else "an unknown value"
    return with_article(t)


@attrs.frozen(slots=True)
class Context:
    """Where an expression is: which event's `where` (if any), which event is bound."""

    event: str | None = None  # names are first this event's properties (inside its `where`)
    bound: str | None = None  # the event bound as `event`: a name, ANY_EVENT, or None
    in_flow: bool = False
    in_message: bool = False  # a message's `headers` or `json`: `secret("NAME")` is allowed
    # An object literal may be written here (LANGUAGE.md 2): the object after `send ... with`,
    # a message's `headers` or `json`, and the values and list items nested in those.
    data: bool = False


TOP = Context()
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _duration_type(expr: ast.Expr, context: object) -> str:
    return DURATION if isinstance(expr, ast.Duration) and expr.valid else UNKNOWN


class TypeChecker:
    """Infers expression types once per expression; every problem becomes a Diagnostic."""

    def __init__(self, symbols: Symbols, diagnostics: list[Diagnostic]) -> None:
        self.symbols = symbols
        self.diagnostics = diagnostics
        self._metric_types: dict[str, str] = {}
        self._suggestions: dict[tuple[str, str | None, bool], str | None] = {}
        self._metrics_in_progress: list[str] = []
        self._dispatch: dict[type, Callable[[ast.Expr, Context], str]] = {
            ast.Number: lambda e, c: NUMBER,
            ast.String: lambda e, c: TEXT,
            ast.Bool: lambda e, c: BOOL,
            ast.NoneLit: lambda e, c: NONE,
            # (a malformed literal, `1e3` or `3x`, is S005 already: no type error on top)
            ast.Duration: _duration_type,
            ast.Date: lambda e, c: DATETIME,
            ast.DateTime: lambda e, c: DATETIME,
            ast.Time: lambda e, c: TIME,
            ast.ListLit: self._list,  # type: ignore[dict-item]
            ast.ObjectLit: self._object,  # type: ignore[dict-item]
            ast.Name: self._name,  # type: ignore[dict-item]
            ast.Attr: self._attr,  # type: ignore[dict-item]
            ast.Binary: self._binary,  # type: ignore[dict-item]
            ast.Unary: self._unary,  # type: ignore[dict-item]
            ast.Call: self._call,  # type: ignore[dict-item]
        }

    # ------------------------------------------------------------------ entry points

    def infer(self, expr: ast.Expr, ctx: Context = TOP) -> str:
        if ctx.data and not isinstance(expr, ast.ObjectLit | ast.ListLit):
            ctx = attrs.evolve(ctx, data=False)  # `{a: x == {...}}`: an operand is no data
        return self._dispatch[type(expr)](expr, ctx)

    def condition(self, expr: ast.Expr, ctx: Context, what: str = "a condition") -> None:
        """`expr` must be a bool (T002)."""
        t = self.infer(expr, ctx)
        if t not in (BOOL, UNKNOWN):
            self.error(
                "T002",
                f"{what} must be true or false, but this is {article(t)}",
                expr.span,
                help=_condition_help(expr, t),
            )

    def duration(self, expr: ast.Expr, ctx: Context, what: str) -> None:
        """`expr` must be a duration such as `24h` (T003)."""
        t = self.infer(expr, ctx)
        if t not in (DURATION, UNKNOWN):
            self.error(
                "T003",
                f"{what} needs a duration, but this is {article(t)}",
                expr.span,
                help="write a duration such as `30m`, `24h`, `7d` or `1d12h`",
            )
            return
        seconds = constant_seconds(expr)
        if seconds is not None and not seconds > 0:  # (NaN too: no sign, so not longer)
            self.error(
                "T012",
                f"{what} needs a duration longer than zero, but this "
                + ("is zero" if seconds == 0 else "is negative" if seconds < 0 else "has no sign"),
                expr.span,
                help="write a positive duration such as `30m`, `24h` or `7d`",
            )

    def metric_type(self, name: str) -> str:
        """The type of a metric, inferring (and checking) its definition once."""
        cached = self._metric_types.get(name)
        if cached is not None:
            return cached
        decl = self.symbols.metrics[name]
        if name in self._metrics_in_progress:
            return UNKNOWN  # a cycle: reported by `declarations.check_value_cycles`
        self._metrics_in_progress.append(name)
        t = self.infer(decl.expr, TOP)
        self._metrics_in_progress.pop()
        if t == NONE:
            t = UNKNOWN
        self._metric_types.setdefault(name, t)
        return self._metric_types[name]

    def error(self, code: str, message: str, span: Span, help: str | None = None) -> None:
        help = help or f"`leadlang explain {code}` explains this error with an example"
        self.diagnostics.append(
            Diagnostic(code=code, severity="error", message=message, span=span, help=help)
        )

    # ------------------------------------------------------------------ names

    def event_params(self, event: str | None) -> tuple[dict[str, str] | None, bool]:
        if event is None:
            return None, False
        params = self.symbols.event_params.get(event)
        if params is None:
            return {}, False
        return params, True

    def _name(self, expr: ast.Name, ctx: Context) -> str:
        name = expr.name
        params, declared = self.event_params(ctx.event)
        kind = scope.classify(
            name,
            event_params=params,
            event_declared=declared,
            in_flow=ctx.in_flow,
            traits=self.symbols.trait_types,  # type: ignore[arg-type]
            metrics=self.symbols.metrics,  # type: ignore[arg-type]
            segments=self.symbols.segments,  # type: ignore[arg-type]
        )
        if kind is scope.NameKind.PROPERTY:
            return params.get(name, UNKNOWN) if params else UNKNOWN
        if kind is scope.NameKind.BUILTIN:
            return scope.BUILTIN_NAMES[name]
        if kind is scope.NameKind.TRAIT:
            return self.symbols.trait_types.get(name, UNKNOWN)
        if kind is scope.NameKind.METRIC:
            return self.metric_type(name)
        if kind in (scope.NameKind.SEGMENT, scope.NameKind.MESSAGE_STATUS):
            return BOOL
        if kind is scope.NameKind.EVENT:
            if ctx.bound is None and ctx.event is None:
                self._unbound_event(expr.span)
                return UNKNOWN
            return OBJECT
        self._unknown_name(name, expr.span, ctx, params, declared)
        return UNKNOWN

    def _unknown_name(
        self,
        name: str,
        span: Span,
        ctx: Context,
        params: dict[str, str] | None,
        declared: bool,
    ) -> None:
        # One misspelling is often repeated: suggest once per name and place.
        key = (name, ctx.event if params else None, ctx.in_flow)
        if key not in self._suggestions:
            candidates = self.symbols.value_names(ctx.in_flow)
            if params:
                candidates = [*params, *candidates]
            self._suggestions[key] = did_you_mean(name, candidates)
        help = self._suggestions[key]
        if ctx.event is not None and declared:
            self.error(
                "N003",
                f"event `{ctx.event}` has no property `{name}`",
                span,
                help=help or f"its properties are: {_listing(params or {})}",
            )
            return
        if name in self.symbols.event_params or name in self.symbols.messages:
            kind = "an event" if name in self.symbols.event_params else "a message"
            help = help or f"`{name}` is {kind}, not a value: " + (
                f"count it with `count({name})`" if kind == "an event" else f"use `opened({name})`"
            )
        elif not ctx.in_flow and name in scope.MESSAGE_STATUSES:
            help = f"`{name}` is about the last message a flow sent: use it in a flow's steps"
        self.error(
            "N004",
            f"unknown name `{name}`",
            span,
            help=help or "declare it first, e.g. `trait NAME: text`, `metric NAME = ...`",
        )

    def _unbound_event(self, span: Span) -> None:
        self.error(
            "N015",
            "no event is bound here",
            span,
            help="`event` is the event that started the flow (`on ...`) or the one a "
            "`wait for` received; use an aggregate such as `last(EVENT).PROP` elsewhere",
        )

    def _property(self, event: str | None, prop: ast.Ident) -> str:
        """The type of `event.prop` for the event bound (or matched) here."""
        if event is None or event == ANY_EVENT:
            return UNKNOWN
        params, declared = self.event_params(event)
        if not declared or params is None:
            return UNKNOWN
        t = params.get(prop.name)
        if t is None:
            self.error(
                "N003",
                f"event `{event}` has no property `{prop.name}`",
                prop.span,
                help=did_you_mean(prop.name, params) or f"its properties are: {_listing(params)}",
            )
            return UNKNOWN
        return t

    # ------------------------------------------------------------------ compound values

    def _list(self, expr: ast.ListLit, ctx: Context) -> str:
        for item in expr.items:
            self.infer(item, ctx)
        return LIST

    def _object(self, expr: ast.ObjectLit, ctx: Context) -> str:
        seen: dict[str, ast.ObjectEntry] = {}
        for entry in expr.entries:
            first = seen.setdefault(entry.key, entry)
            if first is not entry:
                self.diagnostics.append(
                    Diagnostic(
                        code="N013",
                        severity="error",
                        message=f"key `{entry.key}` is set twice in this object",
                        span=entry.key_span,
                        labels=(Label(span=first.key_span, message="first set here"),),
                        help=f"keep one `{entry.key}`: the second would silently replace the first",
                    )
                )
        if ctx.in_message and len(expr.entries) == 1 and expr.entries[0].key in _MARKERS:
            # the compiled program marks an expression, and the daemon its value, with such an
            # object: one written here would be taken for one (and sent unrendered, or crash)
            key = expr.entries[0].key
            self.error(
                "T012",
                f"an object whose only key is `{key}` cannot be sent in a message",
                expr.entries[0].key_span,
                help=f'`{{"{key}": ...}}` alone is how leadlang marks a computed value: '
                "add another key or rename this one",
            )
        allowed = ctx.data
        if not allowed:
            self._misplaced_object(expr)
            ctx = attrs.evolve(ctx, data=True)  # one error for the whole literal
        for entry in expr.entries:
            self.infer(entry.value, ctx)
        return OBJECT if allowed else UNKNOWN

    def _misplaced_object(self, expr: ast.ObjectLit) -> None:
        self.error(
            "T012",
            "an object literal `{...}` is not allowed here",
            expr.span,
            help="objects are written only after `send MESSAGE with` (the template's variables) "
            'and as a message\'s `headers` or `json`, e.g. `send deal with {code: "X1"}`',
        )

    def object_literals(self, expr: ast.Expr) -> bool:
        """Report the object literals in a literal `expr` (a trait's default), where none is
        allowed; whether there was one."""
        if isinstance(expr, ast.ObjectLit):
            self._misplaced_object(expr)
            return True
        if isinstance(expr, ast.ListLit):
            return any([self.object_literals(item) for item in expr.items])
        return False

    def _attr(self, expr: ast.Attr, ctx: Context) -> str:
        obj = expr.obj
        if isinstance(obj, ast.Name) and obj.name == "event":
            params, _ = self.event_params(ctx.event)
            if not (params and "event" in params):
                if ctx.event is not None:
                    return self._property(ctx.event, expr.name)
                if ctx.bound is None:
                    self._unbound_event(obj.span)
                    return UNKNOWN
                return self._property(ctx.bound, expr.name)
        if isinstance(obj, ast.Call) and obj.func.name == "last":
            self._call(obj, ctx)
            event = _aggregate_event(obj)
            return self._property(event, expr.name) if event else UNKNOWN
        t = self.infer(obj, ctx)
        if t in (OBJECT, UNKNOWN):
            return UNKNOWN
        if t == LIST:
            return LIST  # the list of each element's field
        self.error(
            "T011",
            f"{article(t)} has no fields, so `.{expr.name.name}` cannot be read",
            expr.name.span,
            help="fields can be read on events (`event.total`), objects and lists of objects",
        )
        return UNKNOWN

    # ------------------------------------------------------------------ operators

    def _binary(self, expr: ast.Binary, ctx: Context) -> str:
        op = expr.op
        left = self.infer(expr.left, ctx)
        right = self.infer(expr.right, ctx)
        if op in ("and", "or"):
            for side, t in ((expr.left, left), (expr.right, right)):
                if t not in (BOOL, UNKNOWN):
                    self.error(
                        "T002",
                        f"`{op}` needs conditions on both sides, but this is {article(t)}",
                        side.span,
                        help=_condition_help(side, t),
                    )
            return BOOL
        if op in ("==", "!="):
            if (
                known(left)
                and known(right)
                and NONE not in (left, right)
                and left != right
                and (left, right) not in _EQUAL_PAIRS
            ):
                self._mismatch(expr, left, right, "can never be equal")
            return BOOL
        if op in ("<", "<=", ">", ">="):
            if NONE in (left, right):
                self.error(
                    "T001",
                    f"`{op}` with `none` is always false",
                    expr.op_span,
                    help="test presence with `== none` or `!= none`",
                )
            elif known(left) and known(right) and (left, right) not in _ORDERED_PAIRS:
                self._mismatch(expr, left, right, "cannot be ordered")
            return BOOL
        if op in ("contains", "starts with", "ends with"):
            if left not in (TEXT, LIST, UNKNOWN) or (
                left == TEXT and right not in (TEXT, UNKNOWN)
            ) or (op != "contains" and left == LIST):  # fmt: skip
                self._mismatch(expr, left, right, "do not fit", "text on both sides")
            return BOOL
        if op in ("in", "not in"):
            if right not in (LIST, TEXT, UNKNOWN) or (
                right == TEXT and left not in (TEXT, UNKNOWN)
            ):  # fmt: skip
                self._mismatch(expr, left, right, "do not fit", "a list (or text) on the right")
            return BOOL
        if op == "matches":
            if left not in (TEXT, UNKNOWN) or right not in (TEXT, UNKNOWN):
                self._mismatch(expr, left, right, "do not fit", "text on both sides")
            elif isinstance(expr.right, ast.String):
                self._regex(expr.right)
            return BOOL
        # arithmetic
        if UNKNOWN in (left, right):
            return UNKNOWN
        result = _ARITHMETIC.get((op, left, right))
        if result is None:
            self._mismatch(expr, left, right, "cannot be combined")
            return UNKNOWN
        return result

    def _mismatch(
        self, expr: ast.Binary, left: str, right: str, what: str, needs: str = ""
    ) -> None:
        help = f"`{expr.op}` needs {needs}" if needs else _mismatch_help(expr, left, right)
        self.error(
            "T001",
            f"`{expr.op}`: {article(left)} and {article(right)} {what}",
            expr.op_span,
            help=help,
        )

    def _regex(self, pattern: ast.String) -> None:
        found = regex.problem(pattern.value)
        if found is None:
            return
        code, message = found
        self.error(
            code,
            message,
            pattern.span,
            help="`matches` takes a Python regular expression; "
            "escape a backslash in a string as `\\\\`"
            if code == "T010"
            else "`matches` runs in time linear in the text, without lookaround or "
            'backreferences: match the parts separately (`x matches "a" and not '
            'x matches "b"`)',
        )

    def _unary(self, expr: ast.Unary, ctx: Context) -> str:
        t = self.infer(expr.operand, ctx)
        if expr.op == "not":
            if t not in (BOOL, UNKNOWN):
                self.error(
                    "T002",
                    f"`not` needs a condition, but this is {article(t)}",
                    expr.operand.span,
                    help=_condition_help(expr.operand, t),
                )
            return BOOL
        if t in (NUMBER, DURATION, UNKNOWN):
            return t
        self.error("T001", f"`-` cannot negate {article(t)}", expr.span)
        return UNKNOWN

    # ------------------------------------------------------------------ calls

    def _call(self, expr: ast.Call, ctx: Context) -> str:
        name = expr.func.name
        if name in scope.AGGREGATES:
            return self._aggregate(expr, ctx)
        if name in scope.MESSAGE_STATUSES and ctx.in_flow:
            return self._status(expr)
        if name == "secret":
            return self._secret(expr, ctx)
        spec = _SCALARS.get(name)
        if spec is None:
            functions = [*scope.AGGREGATES, *scope.SCALAR_FUNCTIONS]
            if ctx.in_flow:
                functions += scope.MESSAGE_STATUSES
            self.error(
                "N007",
                f"unknown function `{name}`",
                expr.func.span,
                help=did_you_mean(name, functions)
                or "the functions are: " + ", ".join(f"`{f}`" for f in functions),
            )
            return UNKNOWN  # its arguments may be events or values: nothing more to say
        if expr.where is not None or expr.within is not None:
            clause = expr.where if expr.where is not None else expr.within
            assert clause is not None
            self.error(
                "T005",
                f"`{name}` takes no `where` or `within`",
                clause.span,
                help="only the aggregates take them: " + ", ".join(scope.AGGREGATES),
            )
        low, high, accepted, result = spec
        types = [self.infer(arg, ctx) for arg in expr.args]
        if len(types) < low or (high >= 0 and len(types) > high):
            count = f"{low}" if low == high else f"{low} to {high}" if high > 0 else f"{low}+"
            self.error(
                "T006",
                f"`{name}` takes {count} argument{'s' if count != '1' else ''}, not {len(types)}",
                expr.span,
            )
        for arg, t in zip(expr.args, types, strict=True):
            if t not in (*accepted, UNKNOWN):
                self.error(
                    "T006",
                    f"`{name}` cannot take {article(t)}",
                    arg.span,
                    help=f"`{name}` takes " + " or ".join(article(a) for a in accepted),
                )
        if result:
            return result
        return next((t for t in types if t != UNKNOWN), UNKNOWN)

    def _secret(self, expr: ast.Call, ctx: Context) -> str:
        """`secret("NAME")`: a value from serve's environment, only in a message's `url`,
        `headers` or `json` (it is filled in at delivery, never stored or shown)."""
        if not ctx.in_message:
            self.error(
                "T006",
                "`secret(...)` is allowed only in a message's `url`, `headers` or `json`",
                expr.span,
                help="secrets reach a provider, never a condition, a template or the ledger",
            )
            return TEXT
        arg = expr.args[0] if len(expr.args) == 1 else None
        if not isinstance(arg, ast.String) or not SECRET_NAME.fullmatch(arg.value):
            self.error(
                "T006",
                '`secret` takes the name of one environment variable, e.g. `secret("PUSH_TOKEN")`',
                expr.span,
            )
        return TEXT

    def _status(self, expr: ast.Call) -> str:
        name = expr.func.name
        if len(expr.args) != 1 or not isinstance(expr.args[0], ast.Name | ast.String):
            self.error(
                "T006",
                f"`{name}(...)` takes the name of one message",
                expr.span,
                help=f"write `{name}(MESSAGE)`, or `{name}` alone for the last message sent",
            )
            return BOOL
        arg = expr.args[0]
        message = arg.name if isinstance(arg, ast.Name) else arg.value
        if message not in self.symbols.messages:
            self.error(
                "N001",
                f"unknown message `{message}`",
                arg.span,
                help=did_you_mean(message, self.symbols.messages),
            )
        return BOOL

    def _aggregate(self, expr: ast.Call, ctx: Context) -> str:
        name = expr.func.name
        wants_property = name in ("total", "average")
        shape = f"`{name}(EVENT.PROPERTY ...)`" if wants_property else f"`{name}(EVENT ...)`"
        event: str | None = None
        prop: ast.Ident | None = None
        if len(expr.args) == 1:
            arg = expr.args[0]
            if wants_property and isinstance(arg, ast.Attr) and isinstance(arg.obj, ast.Name):
                event, prop = arg.obj.name, arg.name
                span = arg.obj.span
            elif not wants_property and isinstance(arg, ast.Name):
                event, span = arg.name, arg.span
            elif not wants_property and isinstance(arg, ast.String):
                event, span = scope.normalize_event_name(arg.value), arg.span
                if not event:  # (as `on "--"`: no incoming event has this name)
                    self.error(
                        "S005",
                        "an event name needs at least one letter or digit",
                        span,
                        help=f'e.g. `{name}("Order Completed")`',
                    )
        if event is None:
            self.error(
                "T005",
                f"`{name}` needs an event" + (" property" if wants_property else ""),
                expr.span,
                help=f"write {shape}, e.g. "
                + ("`total(order_completed.total within 30d)`" if wants_property
                   else f"`{name}(order_completed within 30d)`"),
            )  # fmt: skip
        else:
            self.symbols.note_event(event, span)
            if prop is not None:
                t = self._property(event, prop)
                if t not in (NUMBER, UNKNOWN):
                    self.error(
                        "T005",
                        f"`{name}` adds up numbers, but `{event}.{prop.name}` is {article(t)}",
                        prop.span,
                    )
        if expr.where is not None:
            self.condition(
                expr.where,
                Context(event=event, bound=event, in_flow=ctx.in_flow),
                "a `where` clause",
            )
        if expr.within is not None:
            self.duration(expr.within, ctx, "`within`")
        return OBJECT if name == "last" else NUMBER


def _aggregate_event(call: ast.Call) -> str | None:
    if len(call.args) == 1 and isinstance(call.args[0], ast.Name | ast.String):
        arg = call.args[0]
        return scope.normalize_event_name(arg.name if isinstance(arg, ast.Name) else arg.value)
    return None


def _listing(params: dict[str, str]) -> str:
    return ", ".join(f"`{p}`" for p in params) or "none"


def _condition_help(expr: ast.Expr, t: str) -> str:
    if t == NUMBER:
        return "compare it, e.g. `score > 50`"
    if t == TEXT:
        if isinstance(expr, ast.String):
            return "a quoted name is text; write a segment or a comparison"
        return 'compare it, e.g. `role == "owner"` or `role != none`'
    return "use a comparison, a segment, or a bool trait"


def _mismatch_help(expr: ast.Binary, left: str, right: str) -> str | None:
    if TEXT in (left, right) and NUMBER in (left, right):
        return "a quoted value is text; write numbers without quotes"
    if LIST in (left, right) and expr.op in ("==", "!="):
        return 'to test membership, write `"x" in tags` or `tags contains "x"`'
    if DURATION in (left, right) and NUMBER in (left, right):
        return "a duration needs a unit: `24h`, `7d`"
    return None
