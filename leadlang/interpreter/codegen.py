"""Expressions -> Python source: the compiled form of conditions, metrics and values.

`ExprCompiler.compile(expr, scope)` turns an AST expression into IR: source text defining
`def _f(c, p)` (c: the evaluation context of one contact at one instant, p: the
properties of the event being matched, else None) plus the names it reads. Constants
(dates, durations, regexes, nested `where` lambdas) are hoisted to module-level names so
they are built once. Comparisons of two values known to be numbers are emitted inline;
anything that may be missing gets an inline class check with a fallback to the helpers of
`leadlang.runtime.values`, which implement the none/date/text rules of LANGUAGE.md section 4.
"""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, time
from typing import Any

import attrs
import pendulum

from leadlang import ast, ir
from leadlang.interpreter import scope as names
from leadlang.interpreter.program import Program
from leadlang.interpreter.unparse import unparse

NUM, ANY = "num", "any"  # static kinds: `num` is a number that is never missing

_ORDER = {"<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge"}
_ARITH = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod"}
_TEXT_OPS = {
    "contains": "_contains",
    "starts with": "_starts",
    "ends with": "_ends",
    "in": "_in",
    "not in": "_not_in",
}
_SCALARS = {
    "sigmoid": "_sigmoid",
    "min": "_min",
    "max": "_max",
    "abs": "_abs",
    "round": "_round",
    "lower": "_lower",
    "upper": "_upper",
    "len": "_len",
}


@attrs.frozen
class Scope:
    """Where an expression sits: inside an event's `where` (event set), inside a flow."""

    event: str | None = None
    in_flow: bool = False


def literal_value(expr: ast.Expr) -> Any:
    """The JSON value of a literal (trait defaults, message fields); None if not a literal."""
    if isinstance(expr, ast.Number | ast.String | ast.Bool):
        return expr.value
    if isinstance(expr, ast.ListLit):
        return [literal_value(item) for item in expr.items]
    if isinstance(expr, ast.ObjectLit):
        return {entry.key: literal_value(entry.value) for entry in expr.entries}
    if isinstance(expr, ast.Name):
        return expr.name
    if isinstance(expr, ast.Duration):
        return expr.seconds
    return None


class _Unit:
    """State of compiling one expression: hoisted constants and nested `where` functions
    (module-level names, each numbered once, so no two can clash however deeply aggregates
    nest), temporaries, what it reads."""

    def __init__(self) -> None:
        self.consts: list[str] = []
        self.names = 0
        self.temps = 0
        self.deps = ir.empty_deps()

    def hoist(self, code: str) -> str:
        name = f"_k{self.names}"
        self.names += 1
        self.consts.append(f"{name} = {code}")
        return name

    def function(self, body: str) -> str:
        """Define `def _wN(c, p)` returning `body` (after the constants it uses)."""
        name = f"_w{self.names}"
        self.names += 1
        self.consts.extend(_function(name, body))
        return name

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"


class ExprCompiler:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.timezone = program.timezone or "UTC"
        self._metric_deps: dict[str, ir.JSON] = {}
        self._segment_deps: dict[str, ir.JSON] = {}
        self._resolving: set[str] = set()

    # ------------------------------------------------------------------ entry points

    def compile(self, expr: ast.Expr, scope: Scope = Scope()) -> ir.JSON:
        unit = _Unit()
        body, _ = self._gen(expr, scope, unit)
        lines = [*unit.consts, *_function("_f", body)]
        compiled = ir.expr("\n".join(lines) + "\n", unit.deps)
        compiled["text"] = unparse(expr)  # for people: graphs, timelines, the IR dump
        return compiled

    def compile_where(self, event: str, where: ast.Expr | None, in_flow: bool) -> ir.JSON | None:
        if where is None:
            return None
        return self.compile(where, Scope(event=event, in_flow=in_flow))

    # ------------------------------------------------------------------ names

    def _event_params(self, event: str) -> tuple[dict[str, str], bool]:
        decl = self.program.events.get(event)
        if decl is not None:
            return {p.name.name: p.type.name for p in decl.params}, True
        if event in names.BUILTIN_EVENTS:
            return dict(names.BUILTIN_EVENTS[event]), True
        return {}, False

    def _classify(self, name: str, scope: Scope) -> names.NameKind:
        params: dict[str, str] | None = None
        declared = False
        if scope.event is not None:
            params, declared = self._event_params(scope.event)
        return names.classify(
            name,
            event_params=params,
            event_declared=declared,
            in_flow=scope.in_flow,
            traits=dict(self.program.traits),
            metrics=dict(self.program.metrics),
            segments=dict(self.program.segments),
        )

    def metric_deps(self, name: str) -> ir.JSON:
        return self._table_deps(name, self.program.metrics, self._metric_deps)

    def segment_deps(self, name: str) -> ir.JSON:
        return self._table_deps(name, self.program.segments, self._segment_deps)

    def _table_deps(self, name: str, table: Any, cache: dict[str, ir.JSON]) -> ir.JSON:
        if name in cache:
            return cache[name]
        if name in self._resolving or name not in table:
            return ir.empty_deps()  # a cycle is the checker's to report
        self._resolving.add(name)
        try:
            deps = self.compile(table[name].expr)["deps"]
        finally:
            self._resolving.discard(name)
        cache[name] = deps
        return deps

    # ------------------------------------------------------------------ generation

    def _gen(self, e: ast.Expr, scope: Scope, u: _Unit) -> tuple[str, str]:
        if isinstance(e, ast.Number):
            return repr(e.value), NUM
        if isinstance(e, ast.String):
            return repr(e.value), ANY
        if isinstance(e, ast.Bool):
            return repr(e.value), ANY
        if isinstance(e, ast.NoneLit):
            return "None", ANY
        if isinstance(e, ast.Duration):
            return u.hoist(f"_td({e.seconds})"), ANY
        if isinstance(e, ast.Date | ast.DateTime):
            return u.hoist(f"_dt({self._epoch(e.text)!r})"), ANY
        if isinstance(e, ast.Time):
            return u.hoist(f"_tod({e.hour}, {e.minute}, {e.second})"), ANY
        if isinstance(e, ast.ListLit):
            items = ", ".join(self._gen(item, scope, u)[0] for item in e.items)
            return f"[{items}]", ANY
        if isinstance(e, ast.ObjectLit):
            entries = ", ".join(
                f"{entry.key!r}: {self._gen(entry.value, scope, u)[0]}" for entry in e.entries
            )
            return "{" + entries + "}", ANY
        if isinstance(e, ast.Name):
            return self._name(e.name, scope, u)
        if isinstance(e, ast.Attr):
            return self._attr(e, scope, u)
        if isinstance(e, ast.Unary):
            operand, kind = self._gen(e.operand, scope, u)
            if e.op == "not":
                return f"(not {operand})", ANY
            return (f"(-{operand})", NUM) if kind == NUM else (f"_neg({operand})", ANY)
        if isinstance(e, ast.Binary):
            return self._binary(e, scope, u)
        if isinstance(e, ast.Call):
            return self._call(e, scope, u)
        return "None", ANY

    def _epoch(self, text: str) -> float:
        """A date or datetime literal's instant; one without an offset is in the script's
        zone. A local time the clocks show twice (the hour they go back) is its first
        occurrence, so a date is the start of its day even where clocks go back at
        midnight (Havana: `2024-11-03` is 00:00 CDT, not the second 00:00, CST); one they
        skip is read with the offset before the change (`02:30` on the night clocks go
        forward at 02:00 is 03:30 summer time)."""
        parsed = pendulum.parse(text, tz=None, exact=True)
        if isinstance(parsed, datetime) and parsed.tzinfo is not None:
            return float(parsed.timestamp())
        assert isinstance(parsed, date)  # (the lexer lets only dates and datetimes here)
        wall = parsed if isinstance(parsed, datetime) else datetime.combine(parsed, time())
        # (a plain datetime: pendulum's own resolves a skipped time the other way)
        local = datetime(
            *wall.timetuple()[:6], wall.microsecond, zoneinfo.ZoneInfo(self.timezone), fold=0
        )
        return float(local.timestamp())

    def _name(self, name: str, scope: Scope, u: _Unit) -> tuple[str, str]:
        kind = self._classify(name, scope)
        if kind is names.NameKind.PROPERTY:
            return f"p.get({name!r})", ANY
        if kind is names.NameKind.EVENT:
            return "c.event", ANY
        code, code_kind = self._profile_name(kind, name, u)
        undeclared = scope.event is not None and not self._event_params(scope.event)[1]
        if undeclared and kind is not names.NameKind.UNKNOWN:
            # an undeclared event may carry a property of this name, which comes first
            # (LANGUAGE.md section 4); only the event can tell, when it arrives
            return f"(p[{name!r}] if {name!r} in p else {code})", ANY
        return code, code_kind

    def _profile_name(self, kind: names.NameKind, name: str, u: _Unit) -> tuple[str, str]:
        """A name that is not the bound event's property: a built-in, trait, metric, ..."""
        if kind is names.NameKind.BUILTIN:
            if name == "score":
                u.deps["score"] = True
                return "c.score()", NUM
            if name == "tags":
                u.deps["tags"] = True
                return "c.tags()", ANY
            if name == "now":
                u.deps["now"] = True
                return "c.now()", ANY
            return "c.id", ANY
        if kind is names.NameKind.TRAIT:
            u.deps["traits"] = sorted({*u.deps["traits"], name})
            decl = self.program.traits.get(name)
            if decl is not None and decl.default is not None:
                fallback, _ = self._gen(decl.default, Scope(), u)
                return f"_default(c.traits.get({name!r}), {fallback})", ANY
            return f"c.traits.get({name!r})", ANY
        if kind is names.NameKind.METRIC:
            alias = self._days_since_alias(name)
            if alias is not None:
                # `metric idle = days_since(E)`: read as the call itself, so `idle >= 10` gets
                # the instant `days_since(E) >= 10` gets (see `_note_since`)
                return self._gen(alias, Scope(), u)
            ir.merge_deps(u.deps, self.metric_deps(name))
            return f"c.metric({name!r})", ANY
        if kind is names.NameKind.SEGMENT:
            ir.merge_deps(u.deps, self.segment_deps(name))
            return f"c.segment({name!r})", ANY
        if kind is names.NameKind.MESSAGE_STATUS:
            u.deps["status"] = True
            return f"c.status({name!r}, None)", ANY
        return "None", ANY

    def _attr(self, e: ast.Attr, scope: Scope, u: _Unit) -> tuple[str, str]:
        field = e.name.name
        if isinstance(e.obj, ast.Name) and e.obj.name == "event":
            return f"_attr(c.event, {field!r})", ANY
        obj, _ = self._gen(e.obj, scope, u)
        return f"_attr({obj}, {field!r})", ANY

    def _binary(self, e: ast.Binary, scope: Scope, u: _Unit) -> tuple[str, str]:
        op = e.op
        if op in ("and", "or"):
            left, _ = self._gen(e.left, scope, u)
            right, _ = self._gen(e.right, scope, u)
            return f"({left} {op} {right})", ANY
        if op in ("==", "!="):
            if isinstance(e.right, ast.NoneLit) or isinstance(e.left, ast.NoneLit):
                other = e.left if isinstance(e.right, ast.NoneLit) else e.right
                code, _ = self._gen(other, scope, u)
                return f"({code} {'is' if op == '==' else 'is not'} None)", ANY
            left, lk = self._gen(e.left, scope, u)
            right, rk = self._gen(e.right, scope, u)
            plain = (lk == NUM and rk == NUM) or isinstance(e.right, ast.String | ast.Bool)
            if plain:
                return f"({left} {op} {right})", ANY
            return f"{'_eq' if op == '==' else '_ne'}({left}, {right})", ANY
        if op == "matches":
            left, _ = self._gen(e.left, scope, u)
            if isinstance(e.right, ast.String):
                pattern = u.hoist(f"_re({e.right.value!r})")
                return f"_search({pattern}, {left})", ANY
            right, _ = self._gen(e.right, scope, u)
            return f"_matches({left}, {right})", ANY
        left, lk = self._gen(e.left, scope, u)
        right, rk = self._gen(e.right, scope, u)
        if op in _TEXT_OPS:
            return f"{_TEXT_OPS[op]}({left}, {right})", ANY
        if op in _ORDER:
            self._note_since(e, u)
            helper = _ORDER[op]
            if lk == NUM and rk == NUM:
                return f"({left} {op} {right})", ANY
            if rk == NUM and _is_simple(right):
                t = u.temp()
                return (
                    f"(({t} {op} {right}) if ({t} := {left}).__class__ in _NUM "
                    f"else {helper}({t}, {right}))",
                    ANY,
                )
            if lk == NUM and _is_simple(left):
                t = u.temp()
                return (
                    f"(({left} {op} {t}) if ({t} := {right}).__class__ in _NUM "
                    f"else {helper}({left}, {t}))",
                    ANY,
                )
            return f"{helper}({left}, {right})", ANY
        if op in _ARITH:
            if lk == NUM and rk == NUM and op in "+-*":
                return f"({left} {op} {right})", NUM
            return f"{_ARITH[op]}({left}, {right})", ANY
        return "None", ANY

    def _days_since_alias(self, name: str) -> ast.Call | None:
        """The `days_since(...)` call a metric is defined as, if it is just that."""
        decl = self.program.metrics.get(name)
        if decl is None:
            return None
        expr = decl.expr
        if isinstance(expr, ast.Call) and expr.func.name == "days_since":
            return expr
        return None

    def _note_since(self, e: ast.Binary, u: _Unit) -> None:
        """`days_since(E) >= 7` changes 7 days after the last E: an instant to schedule."""
        for call, bound in ((e.left, e.right), (e.right, e.left)):
            if isinstance(call, ast.Name):
                call = self._days_since_alias(call.name) or call
            if (
                isinstance(call, ast.Call)
                and call.func.name == "days_since"
                and isinstance(bound, ast.Number)
                and call.args
            ):
                event = names.normalize_event_name(_name_of(call.args[0]) or "")
                pair = [event, float(bound.value) * 86400]
                if pair not in u.deps["since"]:
                    u.deps["since"] = sorted([*u.deps["since"], pair])

    def _call(self, e: ast.Call, scope: Scope, u: _Unit) -> tuple[str, str]:
        func = e.func.name
        if func in names.AGGREGATES:
            return self._aggregate(e, scope, u)
        if func in names.MESSAGE_STATUSES:
            u.deps["status"] = True
            message = _name_of(e.args[0]) if e.args else None
            return f"c.status({func!r}, {message!r})", ANY
        if func in _SCALARS:
            generated = [self._gen(a, scope, u) for a in e.args]
            args = ", ".join(code for code, _ in generated)
            if generated and all(kind == NUM for _, kind in generated):
                # Numbers that are never missing: Python's own functions, and the result is
                # a number too, so the arithmetic around it stays inline.
                if func in ("min", "max") and len(generated) > 1:
                    return f"{func}({args})", NUM
                if func in ("abs", "sigmoid") and len(generated) == 1:
                    return f"{_SCALARS[func]}({args})" if func == "sigmoid" else f"abs({args})", NUM
            return f"{_SCALARS[func]}({args})", ANY
        return "None", ANY

    def _aggregate(self, e: ast.Call, scope: Scope, u: _Unit) -> tuple[str, str]:
        func = e.func.name
        target = e.args[0] if e.args else None
        prop: str | None = None
        if isinstance(target, ast.Attr):
            prop = target.name.name
            target = target.obj
        event = names.normalize_event_name(_name_of(target) or "")
        u.deps["events"] = sorted({*u.deps["events"], event})
        if func in ("days_since",):
            u.deps["now"] = True
        where = "None"
        if e.where is not None:
            # Generated into this unit: its constants and any aggregate nested in it get
            # names of their own, and what it reads joins this expression's dependencies.
            body, _ = self._gen(e.where, Scope(event=event, in_flow=scope.in_flow), u)
            where = u.function(body)
        within = "None"
        if e.within is not None:
            if isinstance(e.within, ast.Duration):
                within = repr(e.within.seconds)
                u.deps["windows"] = sorted(
                    {*map(tuple, u.deps["windows"]), (event, e.within.seconds)}
                )
                u.deps["windows"] = [list(w) for w in u.deps["windows"]]
            else:
                code, _ = self._gen(e.within, scope, u)
                within = f"_seconds({code})"
                u.deps["now"] = True
        if func == "count":
            return f"c.count({event!r}, {where}, {within})", NUM
        if func in ("total", "average"):
            return f"c.{func}({event!r}, {prop!r}, {where}, {within})", ANY
        if func == "last":
            return f"c.last({event!r}, {where}, {within})", ANY
        return f"c.days_since({event!r}, {where})", ANY


def _function(name: str, body: str) -> list[str]:
    """The lines of `def NAME(c, p)` returning `body`. A value the helpers do not foresee (an
    overflowing date, say) makes it missing rather than a traceback; `try` costs nothing when
    nothing is raised."""
    return [
        f"def {name}(c, p):",
        "    try:",
        f"        return {body}",
        "    except (ArithmeticError, TypeError, ValueError, AttributeError, KeyError):",
        "        return None",
    ]


def _is_simple(code: str) -> bool:
    """A literal or hoisted name: safe to evaluate twice in an inline fast path."""
    return code.replace(".", "", 1).replace("-", "", 1).replace("e", "", 1).isdigit() or (
        code.startswith("_k") and code[2:].isdigit()
    )


def _name_of(expr: ast.Expr | None) -> str | None:
    if isinstance(expr, ast.Name):
        return expr.name
    if isinstance(expr, ast.String):
        return expr.value
    return None
