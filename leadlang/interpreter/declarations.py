"""Check every declaration: names it refers to and the types of its expressions.

One walk over the program after `resolve.collect`: settings (time zone, cap channels), event
and trait declarations (type names, defaults), score rules, metrics, segments, message fields
and flows (header clauses and steps: messages, channels, flows, events, durations,
conditions). It records what later passes need: event uses (for the event rule), flows
that are `enroll`ed, and the `with` keys of each message's sends (for template checks).
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import Iterator, Sequence
from functools import cache

import attrs

from leadlang import ast
from leadlang.diagnostics import Diagnostic, Label, with_article
from leadlang.interpreter import scope
from leadlang.interpreter.resolve import TYPE_NAMES, Symbols, did_you_mean
from leadlang.interpreter.types import (
    ANY_EVENT,
    BOOL,
    DATETIME,
    DURATION,
    NUMBER,
    TEXT,
    TIME,
    UNKNOWN,
    Context,
    TypeChecker,
    article,
    assignable,
    constant_seconds,
)

MESSAGE_FIELDS: dict[str, str] = {
    # field -> what it holds
    "channel": "the channel: email, sms or push",
    "subject": "email subject (a template)",
    "text": "plain-text body (a template)",
    "html": "HTML body (a template)",
    "from": "sender address",
    "reply_to": "reply-to address",
    "title": "push title (a template)",
    "url": "webhook URL (push)",
    "headers": "webhook HTTP headers (push), an object",
    "json": "webhook JSON body (push), an object",
}
# A header name in a message's `headers`: an HTTP token (RFC 9110), also a valid email field name.
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# The fields that can carry a message body, per channel.
BODY_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("html", "text"),
    "sms": ("text",),
    "push": ("json", "text", "title"),
}
_LITERAL_TYPES: dict[type, str] = {
    ast.Number: NUMBER,
    ast.String: TEXT,
    ast.Bool: BOOL,
    ast.Date: DATETIME,
    ast.DateTime: DATETIME,
    ast.Time: TIME,
    ast.Duration: "duration",
    ast.ListLit: "list",
    ast.ObjectLit: "object",
}


@cache
def valid_timezone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def check_declarations(
    modules: Sequence[ast.Module], symbols: Symbols, diagnostics: list[Diagnostic]
) -> TypeChecker:
    checker = _DeclarationChecker(symbols, diagnostics)
    checker.check(modules)
    return checker.types


class _DeclarationChecker:
    def __init__(self, symbols: Symbols, diagnostics: list[Diagnostic]) -> None:
        self.symbols = symbols
        self.diagnostics = diagnostics
        self.types = TypeChecker(symbols, diagnostics)

    def error(self, code: str, message: str, span: ast.Span, help: str | None = None) -> None:
        help = help or f"`leadlang explain {code}` explains this error with an example"
        self.diagnostics.append(
            Diagnostic(code=code, severity="error", message=message, span=span, help=help)
        )

    def check(self, modules: Sequence[ast.Module]) -> None:
        self._trait_types()
        self._messages_channels()
        for module in modules:
            for decl in module.decls:
                if isinstance(decl, ast.Settings):
                    self._settings(decl)
                elif isinstance(decl, ast.EventDecl):
                    for param in decl.params:
                        self._type_name(param.type)
                elif isinstance(decl, ast.ScoreBlock):
                    self._score(decl)
                elif isinstance(decl, ast.MetricDecl):
                    if self.symbols.metrics.get(decl.name.name) is decl:
                        self.types.metric_type(decl.name.name)
                elif isinstance(decl, ast.SegmentDecl):
                    self.types.condition(decl.expr, Context(), "a segment")
                elif isinstance(decl, ast.MessageDecl):
                    self._message(decl)
                elif isinstance(decl, ast.FlowDecl):
                    self._flow(decl)
        self._value_cycles()

    # ------------------------------------------------------------------ declarations

    def _type_name(self, ref: ast.TypeRef) -> str:
        if ref.name in TYPE_NAMES:
            return ref.name
        self.error(
            "T009",
            f"unknown type `{ref.name}`",
            ref.span,
            help=did_you_mean(ref.name, TYPE_NAMES)
            or "the types are: " + ", ".join(f"`{t}`" for t in TYPE_NAMES),
        )
        return UNKNOWN

    def _trait_types(self) -> None:
        for name, decl in self.symbols.traits.items():
            declared = self._type_name(decl.type) if decl.type is not None else UNKNOWN
            if decl.default is not None:
                default = _LITERAL_TYPES.get(type(decl.default))
                if default is None:
                    default = self.types.infer(decl.default)
                elif self.types.object_literals(decl.default):  # a default is no place for one
                    default = UNKNOWN
                if decl.type is not None and not assignable(default, declared):
                    self.error(
                        "T008",
                        f"the default of `{name}` is {article(default)}, "
                        f"but the trait is declared {article(declared)}",
                        decl.default.span,
                        help=f"give a default of type `{declared}`, or change the type",
                    )
                elif decl.type is None and default != "none":
                    declared = default
            self.symbols.trait_types[name] = declared

    def _settings(self, settings: ast.Settings) -> None:
        for item in settings.items:
            if isinstance(item, ast.TimezoneSetting):
                name = item.timezone.value
                if not valid_timezone(name):
                    self.error(
                        "N008",
                        f"unknown time zone `{name}`",
                        item.timezone.span,
                        help=did_you_mean(name, zoneinfo.available_timezones(), 0.7)
                        or 'use an IANA time zone name, e.g. "Europe/Paris" or "UTC"',
                    )
            elif isinstance(item, ast.CapSetting):
                self._channel(item.channel)
                count = item.count.value
                if item.count.percent or count != int(count) or count < 1:
                    self.error(
                        "T012",
                        "a cap counts sends: it needs a whole number of at least 1",
                        item.count.span,
                        help="e.g. `cap email 2 per 1d`",
                    )
                if item.per.valid and item.per.seconds <= 0:
                    self.error(
                        "T012",
                        "a cap needs a period longer than zero",
                        item.per.span,
                        help="e.g. `cap email 2 per 1d`",
                    )

    def _fixed(self, expr: ast.Expr, ctx: Context, what: str) -> None:
        """Header clauses are judged without a contact: their durations are constants. One
        that is not is reported whether its type is known or not (`event.days` of an
        undeclared event is unknown, and no constant either), unless it is no duration (T003)
        or has an error of its own: inferring it again repeats that error (exact repeats are
        dropped later), which `_fixed` notices by the diagnostics growing."""
        if isinstance(expr, ast.Duration):  # a literal (a malformed one is S005 already)
            return
        if constant_seconds(expr) is not None:
            return
        before = len(self.diagnostics)
        t = self.types.infer(expr, ctx)
        if t == DURATION or (t == UNKNOWN and len(self.diagnostics) == before):
            self.error(
                "T012",
                f"{what} needs a fixed duration",
                expr.span,
                help="write a duration such as `30d` (it cannot depend on the contact)",
            )

    def _channel(self, ident: ast.Ident) -> bool:
        if ident.name in scope.CHANNELS:
            return True
        self.error(
            "N006",
            f"unknown channel `{ident.name}`",
            ident.span,
            help=did_you_mean(ident.name, scope.CHANNELS)
            or "the channels are `email`, `sms` and `push`",
        )
        return False

    def _score(self, block: ast.ScoreBlock) -> None:
        for rule in block.rules:
            self.symbols.note_event(rule.event.name, rule.event.span)
            if rule.where is not None:
                event = rule.event.name
                ctx = Context(event=event, bound=event)
                self.types.condition(rule.where, ctx, "a `where` clause")
        for decay in block.decays:
            amount = decay.amount
            if amount.value <= 0 or (amount.percent and amount.value > 1):
                self.error(
                    "T012",
                    "a decay takes a positive number of points, or a percent up to 100%",
                    amount.span,
                    help="e.g. `decay 10 every 7d idle` or `decay 5% every 7d idle`",
                )
            if decay.every.valid and decay.every.seconds <= 0:
                self.error("T012", "a decay needs a period longer than zero", decay.every.span)
        for score_max in block.maxes:
            if score_max.value.value <= 0 or score_max.value.percent:
                self.error("T012", "`max` takes a positive number of points", score_max.value.span)

    def _messages_channels(self) -> None:
        """Record each message's channel first, so `send` can check it in any order."""
        for name, decl in self.symbols.messages.items():
            for field in decl.fields:
                value = field.value
                if field.key.name == "channel" and isinstance(value, ast.Name | ast.String):
                    channel = value.name if isinstance(value, ast.Name) else value.value
                    if channel in scope.CHANNELS:
                        self.symbols.message_channels.setdefault(name, channel)

    def _message(self, decl: ast.MessageDecl) -> None:
        seen: dict[str, ast.MessageField] = {}
        for field in decl.fields:
            key = field.key.name
            if key not in MESSAGE_FIELDS:
                self.diagnostics.append(
                    Diagnostic(
                        code="N016",
                        severity="warning",
                        message=f"unknown message field `{key}` is ignored",
                        span=field.key.span,
                        help=did_you_mean(key, MESSAGE_FIELDS)
                        or "the fields are: " + ", ".join(f"`{k}`" for k in MESSAGE_FIELDS),
                    )
                )
                continue
            if key in seen:
                self.diagnostics.append(
                    Diagnostic(
                        code="N013",
                        severity="error",
                        message=f"`{key}` is set twice in message `{decl.name.name}`",
                        span=field.key.span,
                        labels=(Label(span=seen[key].key.span, message="first set here"),),
                        help=f"keep one `{key}` line",
                    )
                )
                continue
            seen[key] = field
            value = field.value
            if key == "channel":
                if isinstance(value, ast.Name):
                    self._channel(ast.Ident(name=value.name, span=value.span))
                elif isinstance(value, ast.String):
                    self._channel(ast.Ident(name=value.value, span=value.span))
                else:
                    self.error("N006", "a channel is `email`, `sms` or `push`", value.span)
            elif key in ("headers", "json"):
                if not isinstance(value, ast.ObjectLit):
                    self.error(
                        "T012",
                        f"`{key}` takes an object",
                        value.span,
                        help=f'e.g. `{key} {{"key": "value", other: score}}`',
                    )
                else:
                    self.types.infer(value, Context(bound=ANY_EVENT, in_message=True, data=True))
                    if key == "headers":
                        self._header_names(value)
            elif key == "url" and _is_secret(value):
                self.types.infer(value, Context(bound=ANY_EVENT, in_message=True))
            elif not isinstance(value, ast.String):
                self.error(
                    "T012",
                    f"`{key}` takes a quoted string"
                    + (" (a file name after `file`)" if field.from_file else ""),
                    value.span,
                )
        name = decl.name.name
        if "channel" not in seen:
            self.error(
                "F005",
                f"message `{name}` has no channel",
                decl.name.span,
                help="add a line `channel email` (or `sms`, `push`)",
            )
            return
        channel = self.symbols.message_channels.get(name)
        if channel is None:
            return
        bodies = BODY_FIELDS[channel]
        if not any(body in seen for body in bodies):
            self.error(
                "F006",
                f"{channel} message `{name}` has no body",
                decl.name.span,
                help="add " + " or ".join(f"`{b}`" for b in bodies),
            )

    def _header_names(self, headers: ast.ObjectLit) -> None:
        """Each key of a message's `headers` is a header name (an HTTP token, which an email
        header name may be too): a space or a colon in one would make a malformed header
        line, which the channel refuses at every send."""
        for entry in headers.entries:
            if not HEADER_NAME.fullmatch(entry.key):
                self.error(
                    "T012",
                    f"{json.dumps(entry.key, ensure_ascii=False)} is not a header name",
                    entry.key_span,
                    help="a header name is letters, digits and `-`, with no space or colon,"
                    ' e.g. `"X-Campaign"`',
                )

    # ------------------------------------------------------------------ flows

    def _flow(self, flow: ast.FlowDecl) -> None:
        triggers = {c.event.name for c in flow.header if isinstance(c, ast.OnTrigger)}
        bound = next(iter(triggers)) if len(triggers) == 1 else ANY_EVENT
        inside = Context(bound=bound, in_flow=True)
        once: dict[str, ast.Reenter | ast.Edits] = {}  # one `reenter`, one `edits` per flow
        for clause in flow.header:
            if isinstance(clause, ast.Reenter | ast.Edits):
                word = "reenter" if isinstance(clause, ast.Reenter) else "edits"
                if word in once:
                    self.diagnostics.append(
                        Diagnostic(
                            code="N013",
                            severity="error",
                            message=f"`{word}` is set twice in flow `{flow.name.name}`",
                            span=clause.span,
                            labels=(Label(span=once[word].span, message="first set here"),),
                            help=f"a flow has one `{word}` clause: keep one of them",
                        )
                    )
                once.setdefault(word, clause)
            if isinstance(clause, ast.OnTrigger | ast.ExitOn | ast.Goal):
                event = clause.event.name
                self.symbols.note_event(event, clause.event.span)
                if clause.where is not None:
                    where = Context(event=event, bound=event, in_flow=True)
                    self.types.condition(clause.where, where, "a `where` clause")
                if isinstance(clause, ast.Goal) and clause.within is not None:
                    self.types.duration(clause.within, inside, "`within`")
                    self._fixed(clause.within, inside, "a goal's `within`")
            elif isinstance(clause, ast.WhenTrigger):
                self.types.condition(clause.cond, Context(), "a `when` trigger")
            elif isinstance(clause, ast.ExitWhen):
                self.types.condition(clause.cond, inside, "`exit when`")
            elif isinstance(clause, ast.Reenter) and clause.after is not None:
                # `reenter after` with no duration is a syntax error (the parser's S001).
                self.types.duration(clause.after, inside, "`reenter after`")
                self._fixed(clause.after, inside, "`reenter after`")
        self._steps(flow.steps, inside)

    def _steps(self, steps: Sequence[ast.Step], ctx: Context) -> Context:
        """Check a block; returns the context after it (`wait for` binds its event)."""
        for step in steps:
            ctx = self._step(step, ctx)
        return ctx

    def _step(self, step: ast.Step, ctx: Context) -> Context:
        types = self.types
        if isinstance(step, ast.Send):
            self._send(step, ctx)
        elif isinstance(step, ast.Wait):
            types.duration(step.duration, ctx, "`wait`")
        elif isinstance(step, ast.WaitUntil):
            t = types.infer(step.target, ctx)
            if t not in (TIME, DATETIME, UNKNOWN):
                self.error(
                    "T004",
                    f"`wait until` needs a time of day or a datetime, but this is {article(t)}",
                    step.target.span,
                    help="e.g. `wait until 09:00` or `wait until 2025-12-24T18:00`; "
                    "for a delay write `wait 24h`",
                )
        elif isinstance(step, ast.WaitFor):
            event = step.event.name
            self.symbols.note_event(event, step.event.span)
            if step.where is not None:
                where = Context(event=event, bound=event, in_flow=True)
                types.condition(step.where, where, "a `where` clause")
            types.duration(step.up_to, ctx, "`up to`")
            if step.else_ is not None:
                self._steps(step.else_, ctx)
            return Context(bound=event, in_flow=True)
        elif isinstance(step, ast.Check):
            types.condition(step.cond, ctx, "`check`")
            if step.within is not None:
                types.duration(step.within, ctx, "`within`")
            if step.else_ is not None:
                self._steps(step.else_, ctx)
        elif isinstance(step, ast.If):
            after: list[Context] = []
            for branch in step.branches:
                types.condition(branch.cond, ctx, f"`{'if' if not after else 'elif'}`")
                after.append(self._steps(branch.steps, ctx))
            after.append(self._steps(step.else_, ctx) if step.else_ is not None else ctx)
            return _join(after)
        elif isinstance(step, ast.Split):
            return _join([self._steps(arm.steps, ctx) for arm in step.arms])
        elif isinstance(step, ast.Tag | ast.Untag):
            tag = step.tag
            if isinstance(tag, ast.Name) and tag.name not in self.symbols.value_names(True):
                # `tag vip`: a word meant as the tag itself, not a trait to declare.
                word = "tag" if isinstance(step, ast.Tag) else "untag"
                self.error(
                    "N004",
                    f"unknown name `{tag.name}`",
                    tag.span,
                    help=f'a tag is text: write `{word} "{tag.name}"`',
                )
                return ctx
            t = types.infer(tag, ctx)
            if t not in (TEXT, UNKNOWN):
                self.error("T012", f"a tag is text, but this is {article(t)}", step.tag.span)
            elif isinstance(tag, ast.String) and not tag.value.strip():
                self.error(
                    "T012",
                    "a tag is a word or a phrase, and this one is empty",
                    tag.span,
                    help='name the tag, e.g. `tag "vip"`',
                )
        elif isinstance(step, ast.SetTrait):
            self._set(step, ctx)
        elif isinstance(step, ast.Enroll):
            name = step.flow.name
            self.symbols.enrolled.add(name)
            if name not in self.symbols.flows:
                self.error(
                    "N005",
                    f"unknown flow `{name}`",
                    step.flow.span,
                    help=did_you_mean(name, self.symbols.flows)
                    or f"declare it: `flow {name}:` with its steps",
                )
        return ctx

    def _send(self, step: ast.Send, ctx: Context) -> None:
        name = step.message.name
        if name not in self.symbols.messages:
            self.error(
                "N001",
                f"unknown message `{name}`",
                step.message.span,
                help=did_you_mean(name, self.symbols.messages)
                or f"declare it: `message {name}:` with a channel and a body",
            )
        if step.channel is not None and self._channel(step.channel):
            actual = self.symbols.message_channels.get(name)
            if actual is not None and actual != step.channel.name:
                decl = self.symbols.messages[name]
                self.diagnostics.append(
                    Diagnostic(
                        code="F008",
                        severity="error",
                        message=f"`{name}` is {with_article(actual)} message, "
                        f"not {step.channel.name}",
                        span=step.channel.span,
                        labels=(Label(span=decl.name.span, message=f"declared {actual} here"),),
                        help=f"write `send {actual} {name}` or just `send {name}`",
                    )
                )
        if step.with_ is not None:
            self.types.infer(step.with_, attrs.evolve(ctx, data=True))
            keys = self.symbols.send_keys.setdefault(name, set())
            keys.update(entry.key for entry in step.with_.entries)

    def _set(self, step: ast.SetTrait, ctx: Context) -> None:
        name = step.trait.name
        value = self.types.infer(step.value, ctx)
        declared = self.symbols.trait_types.get(name)
        if declared is None:
            if name in scope.BUILTIN_NAMES or name in self.symbols.metrics or (
                name in self.symbols.segments
            ):  # fmt: skip
                what = "computed" if name not in scope.BUILTIN_NAMES else "built in"
                message = f"`{name}` is {what}, not a trait, so it cannot be set"
                help = "use `score +N` to adjust the score" if name == "score" else None
            else:
                message = f"unknown trait `{name}`"
                help = did_you_mean(name, self.symbols.trait_types) or (
                    f"declare it: `trait {name}: {value if value in TYPE_NAMES else 'text'}`"
                )
            self.error("N017", message, step.trait.span, help=help)
            return
        if not assignable(value, declared):
            self.error(
                "T007",
                f"`{name}` is {article(declared)} trait, but this value is {article(value)}",
                step.value.span,
                help=f"set it to {article(declared)}, or change the trait's declared type",
            )

    # ------------------------------------------------------------------ cycles

    def _value_cycles(self) -> None:
        """A metric or segment defined (through others) in terms of itself (N014)."""
        tables: dict[str, ast.MetricDecl | ast.SegmentDecl] = {
            **self.symbols.metrics,
            **self.symbols.segments,
        }
        graph = {
            name: [n for n in _names(decl.expr) if n in tables and n != ""]
            for name, decl in tables.items()
        }
        state: dict[str, int] = {}  # 1 visiting, 2 done
        reported: set[str] = set()
        for root in graph:
            if state.get(root):
                continue
            stack: list[tuple[str, Iterator[str]]] = [(root, iter(graph[root]))]
            path = [root]
            state[root] = 1
            while stack:
                node, edges = stack[-1]
                nxt = next(edges, None)
                if nxt is None:
                    state[node] = 2
                    stack.pop()
                    path.pop()
                elif state.get(nxt) == 1:
                    cycle = [*path[path.index(nxt) :], nxt]
                    if nxt not in reported:
                        reported.update(cycle)
                        self.error(
                            "N014",
                            f"`{nxt}` is defined in terms of itself",
                            tables[nxt].name.span,
                            help="metrics and segments may use each other, "
                            "but not in a circle: " + " -> ".join(cycle),
                        )
                elif not state.get(nxt):
                    state[nxt] = 1
                    path.append(nxt)
                    stack.append((nxt, iter(graph[nxt])))


def _join(contexts: list[Context]) -> Context:
    first = contexts[0]
    if all(c == first for c in contexts):
        return first
    return Context(bound=ANY_EVENT, in_flow=True)


def _is_secret(expr: ast.Expr) -> bool:
    return isinstance(expr, ast.Call) and expr.func.name == "secret"


def _names(expr: ast.Expr) -> Iterator[str]:
    """Every bare name read by an expression (iteratively: expressions may nest deeply)."""
    todo: list[ast.Expr] = [expr]
    while todo:
        e = todo.pop()
        if isinstance(e, ast.Name):
            yield e.name
        elif isinstance(e, ast.Binary):
            todo += (e.left, e.right)
        elif isinstance(e, ast.Unary):
            todo.append(e.operand)
        elif isinstance(e, ast.Attr):
            todo.append(e.obj)
        elif isinstance(e, ast.Call):
            if e.func.name not in scope.AGGREGATES:
                todo += e.args
            if e.where is not None:
                todo.append(e.where)
            if e.within is not None:
                todo.append(e.within)
        elif isinstance(e, ast.ListLit):
            todo += e.items
        elif isinstance(e, ast.ObjectLit):
            todo += (entry.value for entry in e.entries)
