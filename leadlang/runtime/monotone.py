"""Which way a compiled condition can move while time passes without an input.

Between two inputs of a contact, time changes only three things a condition reads: the
score (a decay step lowers it), counts over `within` windows (an event leaving the window
lowers them) and `days_since(E) >= N`-like comparisons (they turn true N days after the last
E). For each of these kinds of time-driven instant, `directions` says whether the
condition (as a truth value) can only stay (CONST), only fall (DOWN), only rise (UP), or
either (None: unknown). The engine uses this to skip instants that cannot change anything:
a `when` trigger that is false and can only fall at a decay step cannot fire there, and
re-evaluating it would store the same false (see `Engine._wake`).

The analysis reads the Python source the code generator emitted (the IR stays unchanged)
and is conservative: anything it does not recognise is "either way". `now` and
`days_since(...)` grow with time (the SINCE direction); a condition that reads them other
than as `days_since(E)` compared with a number written in the script changes at instants no
schedule knows, so `time_atoms` gives the engine its leaves that read time, each with the way
time moves it, and the engine finds the instant each changes at by bisection (`Engine._probe`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from typing import Any

import attrs

Dir = int | None  # +1 up, -1 down, 0 constant, None either way
Dirs = tuple[Dir, Dir, Dir]  # (decay step, window expiry, days_since instant)

CONST: Dirs = (0, 0, 0)
ALWAYS: Dirs = (None, None, None)
RISING: Dirs = (0, 0, 1)  # `now`, `days_since(...)`: they grow as time passes
SCORE, WINDOW, SINCE = 0, 1, 2

# `c.` methods whose value does not change with time alone (inputs change them).
_TIMELESS_METHODS = {"status", "tags"}
# Pure helpers that are non-decreasing in every argument.
_MONOTONE = {"min", "max", "_min", "_max", "_sigmoid", "_round"}
_ORDER = {"_lt": ast.Lt, "_le": ast.LtE, "_gt": ast.Gt, "_ge": ast.GtE}


def _join(a: Dir, b: Dir) -> Dir:
    if a is None or b is None:
        return None
    if a == 0:
        return b
    if b == 0 or a == b:
        return a
    return None


def join(*dirs: Dirs) -> Dirs:
    out: Dirs = CONST
    for d in dirs:
        out = (_join(out[0], d[0]), _join(out[1], d[1]), _join(out[2], d[2]))
    return out


def neg(d: Dirs) -> Dirs:
    return (
        None if d[0] is None else -d[0],
        None if d[1] is None else -d[1],
        None if d[2] is None else -d[2],
    )


def _unknown(d: Dirs) -> Dirs:
    """A function of `d` that is not monotone: constant stays constant, else unknown."""
    return tuple(None if x != 0 else 0 for x in d)  # type: ignore[return-value]


class _DaysSince:
    """Marker for the value of `days_since(...)`: it grows with `now`, so only its
    comparison with a number is understood (that comparison flips at a scheduled instant)."""


Resolver = Callable[[str, str], Dirs]  # ("metric" | "segment", name) -> directions


class Analyzer:
    def __init__(self, src: str, resolve: Resolver) -> None:
        self.resolve = resolve
        # Set when the code reads `now` other than as a `days_since(E) OP number` bound
        # (those instants are scheduled): such a condition's changes are found by probing.
        self.uncovered = False
        self.tree = ast.parse(src)
        self.functions: dict[str, ast.FunctionDef] = {
            node.name: node for node in self.tree.body if isinstance(node, ast.FunctionDef)
        }
        # hoisted constants (`_k0 = _td(86400)` for `1d`), for the sign of a divisor
        self.constants: dict[str, ast.expr] = {
            node.targets[0].id: node.value
            for node in self.tree.body
            if isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        }
        self.bound: dict[str, Dirs | _DaysSince] = {}
        # the condition itself: what the compiled `_f` returns (None: not in that form)
        self.body = self._returned(self.functions.get("_f"))

    def run(self) -> Dirs:
        if self.body is None:
            return ALWAYS
        return self._dirs(self.body)

    @staticmethod
    def _returned(fn: ast.FunctionDef | None) -> ast.expr | None:
        """The expression `def _f(c, p): try: return EXPR except ...` returns."""
        if fn is None or len(fn.body) != 1 or not isinstance(fn.body[0], ast.Try):
            return None
        stmt = fn.body[0].body
        if len(stmt) != 1 or not isinstance(stmt[0], ast.Return) or stmt[0].value is None:
            return None
        return stmt[0].value

    def _dirs(self, node: ast.expr) -> Dirs:
        value = self._value(node)
        return self._number(value)

    def _number(self, value: Dirs | _DaysSince) -> Dirs:
        """`days_since(...)` as a number: it grows with time (its instants are probed)."""
        if isinstance(value, _DaysSince):
            self.uncovered = True
            return RISING
        return value

    def _value(self, node: ast.expr) -> Dirs | _DaysSince:
        if isinstance(node, ast.Constant):
            return CONST
        if isinstance(node, ast.Name):
            if node.id in self.bound:
                return self.bound[node.id]
            return CONST  # `p`, hoisted constants, helpers: not time
        if isinstance(node, ast.NamedExpr):
            value = self._value(node.value)
            self.bound[node.target.id] = value
            return value
        if isinstance(node, ast.BoolOp):
            return join(*(self._dirs(v) for v in node.values))
        if isinstance(node, ast.UnaryOp):
            inner = self._dirs(node.operand)
            if isinstance(node.op, ast.Not | ast.USub):
                return neg(inner)
            return inner if isinstance(node.op, ast.UAdd) else _unknown(inner)
        if isinstance(node, ast.BinOp):
            return self._arith(node.op, node.left, node.right)
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                return join(*(_unknown(self._dirs(x)) for x in [node.left, *node.comparators]))
            return self._compare(node.ops[0], node.left, node.comparators[0])
        if isinstance(node, ast.IfExp):
            return self._if(node)
        if isinstance(node, ast.Attribute):
            # `x.__class__`, `c.traits`, `c.id`, `c.event`: none of them moves with time
            # (whether `days_since` is a number or none does not either)
            obj = self._value(node.value)
            return CONST if isinstance(obj, _DaysSince) else _unknown(obj)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.List | ast.Tuple):
            return join(*(_unknown(self._dirs(x)) for x in node.elts))
        return ALWAYS

    def _arith(self, op: ast.operator, left: ast.expr, right: ast.expr) -> Dirs:
        a, b = self._dirs(left), self._dirs(right)
        if isinstance(op, ast.Add):
            return join(a, b)
        if isinstance(op, ast.Sub):
            return join(a, neg(b))
        if isinstance(op, ast.Mult):
            for k, other in ((left, b), (right, a)):
                sign = self._sign(k)
                if sign is not None:
                    return other if sign > 0 else (CONST if sign == 0 else neg(other))
        if isinstance(op, ast.Div):
            # `days_since(E) / 7`, `(now - d) / 1d`: by a constant, the way the dividend
            # goes (by zero: none, whatever the time)
            sign = self._sign(right)
            if sign is not None:
                return a if sign > 0 else (CONST if sign == 0 else neg(a))
        return join(_unknown(a), _unknown(b))

    def _sign(self, node: ast.expr) -> int | None:
        """The sign of a constant the script wrote (a number, `-7`, a hoisted duration such
        as `_td(86400)`), or None when `node` is not one."""
        if isinstance(node, ast.Name) and node.id in self.constants:
            node = self.constants[node.id]
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "_td"
                and len(node.args) == 1
            ):
                node = node.args[0]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self._sign(node.operand)
            return None if inner is None else -inner
        if isinstance(node, ast.Constant) and node.value.__class__ in (int, float):
            value = node.value
            return (value > 0) - (value < 0)
        return None

    def _compare(self, op: ast.cmpop, left: ast.expr, right: ast.expr) -> Dirs:
        a, b = self._value(left), self._value(right)
        if isinstance(a, _DaysSince) != isinstance(b, _DaysSince):
            # `days_since(E) OP number` (a number written in the script) is scheduled (at
            # last E + N days); against anything else (a trait, say) it is probed.
            grows_left = isinstance(a, _DaysSince)
            other = right if grows_left else left
            if (
                isinstance(other, ast.Constant)
                and other.value.__class__ in (int, float)
                and isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE)
            ):
                rises = isinstance(op, ast.Gt | ast.GtE) == grows_left
                return (0, 0, 1 if rises else -1)
        a, b = self._number(a), self._number(b)
        if isinstance(op, ast.Gt | ast.GtE):
            return join(a, neg(b))
        if isinstance(op, ast.Lt | ast.LtE):
            return join(neg(a), b)
        # `x.__class__ in _NUM`: whether a value is a number does not change with time
        # (counts and scores stay numbers, a missing value stays missing until an input).
        if (
            isinstance(op, ast.In | ast.NotIn)
            and isinstance(left, ast.Attribute)
            and left.attr == "__class__"
        ):
            return CONST
        return join(_unknown(a), _unknown(b))

    def _if(self, node: ast.IfExp) -> Dirs | _DaysSince:
        test = node.test
        # The inline fast path `(T OP k) if (T := X).__class__ in _NUM else _op(T, k)`: both
        # arms are the same comparison (the helper handles the values the inline one cannot).
        if (
            isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Attribute)
            and test.left.attr == "__class__"
        ):
            self._value(test.left.value)  # binds the temporary
            return join(self._dirs(node.body), self._dirs(node.orelse))
        return join(*(_unknown(self._dirs(x)) for x in (node.test, node.body, node.orelse)))

    def _call(self, node: ast.Call) -> Dirs | _DaysSince:
        func = node.func
        args = node.args
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner, method = func.value.id, func.attr
            if owner == "c":
                return self._context_call(method, args)
            if owner == "c.traits" or method == "get":
                return join(*(_unknown(self._dirs(a)) for a in args))
            return ALWAYS
        if isinstance(func, ast.Attribute):
            # `c.traits.get(...)`, `p.get(...)`
            if (
                isinstance(func.value, ast.Attribute)
                and isinstance(func.value.value, ast.Name)
                and func.value.value.id == "c"
                and func.value.attr == "traits"
                and func.attr == "get"
            ):
                return join(*(_unknown(self._dirs(a)) for a in args))
            self.uncovered = True
            return ALWAYS
        if not isinstance(func, ast.Name):
            self.uncovered = True
            return ALWAYS
        name = func.id
        if name in _ORDER:
            if len(args) != 2:
                return ALWAYS
            return self._compare(_ORDER[name](), args[0], args[1])
        if name in ("_add", "_sub", "_mul", "_div") and len(args) == 2:
            op: ast.operator = {
                "_add": ast.Add,
                "_sub": ast.Sub,
                "_mul": ast.Mult,
                "_div": ast.Div,
            }[name]()
            return self._arith(op, args[0], args[1])
        if name in ("_neg",) and len(args) == 1:
            return neg(self._dirs(args[0]))
        if name in _MONOTONE:
            return join(*(self._dirs(a) for a in args))
        if name in self.functions:
            return ALWAYS  # a nested `where` called directly: not emitted by codegen
        # any other helper is a pure function of its arguments
        return join(*(_unknown(self._dirs(a)) for a in args))

    def _where_is_timeless(self, node: ast.expr) -> bool:
        """A nested `where` function reads the event's properties; if it reads anything of
        the contact other than traits, id or the bound event, its value may move with time."""
        if isinstance(node, ast.Constant) and node.value is None:
            return True
        if not isinstance(node, ast.Name) or node.id not in self.functions:
            return False
        for sub in ast.walk(self.functions[node.id]):
            if (
                isinstance(sub, ast.Attribute)
                and isinstance(sub.value, ast.Name)
                and sub.value.id == "c"
                and sub.attr not in ("traits", "id", "event")
            ):
                return False
        return True

    def _context_call(self, method: str, args: list[ast.expr]) -> Dirs | _DaysSince:
        if method == "score":
            return (-1, 0, 0)
        if method in _TIMELESS_METHODS:
            return CONST
        if method == "now":
            self.uncovered = True
            return RISING
        if method in ("metric", "segment"):
            if len(args) != 1 or not isinstance(args[0], ast.Constant):
                self.uncovered = True
                return ALWAYS
            name = str(args[0].value)
            uncovered = getattr(self.resolve, "uncovered", None)
            if uncovered is None or uncovered(method, name):
                self.uncovered = True
            return self.resolve(method, name)
        if method in ("count", "total", "average", "last"):
            where = args[-2] if len(args) >= 3 else None
            within = args[-1] if args else None
            if within is not None and not isinstance(within, ast.Constant):
                self.uncovered = True  # a window whose length is computed: not scheduled
            if where is None or within is None or not self._where_is_timeless(where):
                return ALWAYS
            if isinstance(within, ast.Constant) and within.value is None:
                return CONST  # all events ever: only inputs change it
            if method == "count" and isinstance(within, ast.Constant):
                return (0, -1, 0)  # events only leave a fixed window as time passes
            return ALWAYS if not isinstance(within, ast.Constant) else (0, None, 0)
        if method == "days_since":
            # Its instant is scheduled after the last such event of any kind (`Engine`), so
            # only `days_since(E)` without a `where` is a bound; with a `where` that reads
            # only the event, it still grows with time, and its instants are probed.
            if len(args) != 2:
                self.uncovered = True
                return ALWAYS
            if not (isinstance(args[1], ast.Constant) and args[1].value is None):
                self.uncovered = True
                return RISING if self._where_is_timeless(args[1]) else ALWAYS
            return _DaysSince()
        self.uncovered = True
        return ALWAYS  # anything new


def directions(src: str, resolve: Resolver) -> Dirs:
    try:
        return Analyzer(src, resolve).run()
    except (SyntaxError, AttributeError, KeyError, TypeError, ValueError):
        return ALWAYS


class TableResolver:
    """Directions of metrics and segments by name, memoised; a cycle is unknown. Also
    whether one reads `now` other than as a scheduled bound (`uncovered`)."""

    def __init__(self, sources: dict[str, dict[str, Any]]) -> None:
        self.sources = sources
        self.memo: dict[tuple[str, str], tuple[Dirs, bool]] = {}

    def _get(self, kind: str, name: str) -> tuple[Dirs, bool]:
        key = (kind, name)
        found = self.memo.get(key)
        if found is not None:
            return found
        src = self.sources.get(kind, {}).get(name)
        if src is None:
            return CONST, False  # an unknown name evaluates to none / false, constantly
        self.memo[key] = (ALWAYS, True)  # while resolving: a cycle reads as unknown
        try:
            analyzer = Analyzer(src["src"], self)
            found = (analyzer.run(), analyzer.uncovered)
        except _UNREADABLE:
            found = (ALWAYS, True)
        self.memo[key] = found
        return found

    def __call__(self, kind: str, name: str) -> Dirs:
        return self._get(kind, name)[0]

    def uncovered(self, kind: str, name: str) -> bool:
        return self._get(kind, name)[1]


def table_resolver(sources: dict[str, dict[str, Any]]) -> TableResolver:
    return TableResolver(sources)


Guard = Callable[[Any, Any], Any]


Segments = Callable[[str], tuple[str, dict[str, Any]] | None]  # name -> (source, namespace)
_UNREADABLE = (SyntaxError, AttributeError, KeyError, TypeError, ValueError)


def _conjuncts(
    src: str, namespace: dict[str, Any], segment: Segments, resolve: Resolver
) -> Iterator[tuple[Analyzer, ast.expr, dict[str, Any]]]:
    """The conjuncts of a condition, `c.segment(NAME)` conjuncts looked into (each segment
    once): (the analyzer of the code a conjunct is in, the conjunct, that code's namespace)."""
    seen: set[str] = set()

    def visit(
        analyzer: Analyzer, node: ast.expr, ns: dict[str, Any]
    ) -> Iterator[tuple[Analyzer, ast.expr, dict[str, Any]]]:
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
            for value in node.values:
                yield from visit(analyzer, value, ns)
            return
        name = _segment_name(node)
        if name is not None and name not in seen:
            seen.add(name)
            inner = _segment_code(name, segment, resolve)
            if inner is not None:
                yield from visit(*inner)
                return
        yield analyzer, node, ns

    analyzer = Analyzer(src, resolve)
    if analyzer.body is not None:
        yield from visit(analyzer, analyzer.body, namespace)


def _segment_code(
    name: str, segment: Segments, resolve: Resolver
) -> tuple[Analyzer, ast.expr, dict[str, Any]] | None:
    """Segment NAME's code to look into: its analyzer, the condition it returns and its
    namespace (None: not a segment, or its code is not in the compiled form)."""
    found = segment(name)
    if found is None:
        return None
    inner = Analyzer(found[0], resolve)
    return None if inner.body is None else (inner, inner.body, found[1])


_FLIP = {"_lt": "_gt", "_le": "_ge", "_gt": "_lt", "_ge": "_le"}
_OP_NAME = {ast.Lt: "_lt", ast.LtE: "_le", ast.Gt: "_gt", ast.GtE: "_ge"}


def _abs_halves(analyzer: Analyzer, node: ast.expr) -> tuple[ast.expr, ast.expr] | None:
    """`abs(E) OP K` (K constant in time) as the two comparisons its truth is made of,
    `E OP K` and `E OP' -K`: `abs(days_since(E) - 3) < 0.01` rises and falls, but each half
    moves one way when E does, so its instant is found exactly rather than by sampling
    (a change and its undoing within an hour were missed). None: not that form."""
    parts = _comparison(node)
    if parts is None:
        return None
    op, subject, limit = parts
    if not (
        isinstance(subject, ast.Call)
        and isinstance(subject.func, ast.Name)
        and subject.func.id in ("abs", "_abs")
        and len(subject.args) == 1
        and not subject.keywords
    ):
        return None
    uncovered = analyzer.uncovered
    constant = analyzer._dirs(limit) == CONST
    analyzer.uncovered = uncovered
    if not constant:
        return None
    inner = subject.args[0]
    negated = ast.Call(func=ast.Name(id="_neg", ctx=ast.Load()), args=[limit], keywords=[])

    def call(name: str, right: ast.expr) -> ast.expr:
        return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=[inner, right], keywords=[])

    # abs(E) < K is E < K and E > -K; abs(E) > K is the negation of E <= K and E >= -K
    below = op if op in ("_lt", "_le") else {"_gt": "_le", "_ge": "_lt"}[op]
    first = ast.fix_missing_locations(call(below, limit))
    second = ast.fix_missing_locations(call(_FLIP[below], negated))
    return first, second


def _comparison(node: ast.expr) -> tuple[str, ast.expr, ast.expr] | None:
    """(`_lt`|`_le`|`_gt`|`_ge`, left, right) of an ordering comparison in any of the forms
    the code generator writes: `_lt(X, K)`, `X < K`, or the inline fast path
    `(T < K) if (T := X).__class__ in _NUM else _lt(T, K)`."""
    if isinstance(node, ast.IfExp):
        test, orelse = node.test, node.orelse
        if (
            isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Attribute)
            and isinstance(test.left.value, ast.NamedExpr)
            and isinstance(orelse, ast.Call)
            and isinstance(orelse.func, ast.Name)
            and orelse.func.id in _FLIP
            and len(orelse.args) == 2
        ):
            return orelse.func.id, test.left.value.value, orelse.args[1]
        return None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FLIP
        and len(node.args) == 2
    ):
        return node.func.id, node.args[0], node.args[1]
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        name = _OP_NAME.get(type(node.ops[0]))
        if name is not None:
            return name, node.left, node.comparators[0]
    return None


def _leaf_function(node: ast.expr, namespace: dict[str, Any], label: str) -> Guard:
    """A part of a condition's generated code as `lambda c, p: PART`, in that code's namespace
    (so it reads what the condition reads)."""
    code = f"lambda c, p: ({ast.unparse(node)})"
    return eval(compile(code, label, "eval"), namespace)


def falling_guards(
    src: str, namespace: dict[str, Any], segment: Segments, resolve: Resolver
) -> list[Guard]:
    """The conjuncts of a condition that time alone can only lower (or not move), compiled.

    When one of them is false, the whole condition is false and stays false until an input
    arrives, so no time-driven instant can make it rise. `c.segment(NAME)` conjuncts are
    looked into (the segment's own conjuncts, in its own namespace). Each guard is a
    `lambda c, p: CONJUNCT` over the same generated code, so it reads what the condition reads.
    """
    guards: list[Guard] = []
    try:
        for analyzer, node, ns in _conjuncts(src, namespace, segment, resolve):
            if all(d is not None and d <= 0 for d in analyzer._dirs(node)):
                guards.append(_leaf_function(node, ns, "<guard>"))
    except _UNREADABLE:
        return []
    return guards


def segment_only(src: str) -> str | None:
    """NAME when the condition is just `c.segment(NAME)` (`when potential`)."""
    try:
        analyzer = Analyzer(src, lambda kind, name: ALWAYS)
    except SyntaxError:
        return None
    return None if analyzer.body is None else _segment_name(analyzer.body)


def _segment_name(node: ast.expr) -> str | None:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "c"
        and node.func.attr == "segment"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
    ):
        return str(node.args[0].value)
    return None


@attrs.frozen
class ScoreAtMost:
    """A conjunct `score <= limit` (or `< limit` when strict): decay steps raise it."""

    limit: float
    strict: bool


@attrs.frozen
class SinceAtLeast:
    """A conjunct `days_since(event) >= days` (or `>`, `strict`: just after): it turns true
    `days` after the last such event, and never by time alone when there is none."""

    event: str
    seconds: float
    strict: bool = False


Bound = ScoreAtMost | SinceAtLeast


def rising_bounds(src: str, segment: Segments, resolve: Resolver) -> list[Bound]:
    """The conjuncts of a condition whose first instant of truth can be computed.

    While a conjunct is false the whole condition is false, so a false condition cannot turn
    true by time alone before the latest of these conjuncts' instants. `c.segment(NAME)`
    conjuncts are looked into, as in `falling_guards`.
    """
    try:
        found = (_bound(node) for _, node, _ in _conjuncts(src, {}, segment, resolve))
        return [bound for bound in found if bound is not None]
    except _UNREADABLE:
        return []


def _bound(node: ast.expr) -> Bound | None:
    """`c.score() <= N` / `< N`, or `days_since(E) >= N` / `> N` as codegen emits it (a
    direct comparison, or the `(T OP N) if (T := X).__class__ in _NUM else ...` fast path)."""
    if isinstance(node, ast.IfExp):
        test = node.test
        if not (
            isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Attribute)
            and test.left.attr == "__class__"
            and isinstance(test.left.value, ast.NamedExpr)
            and isinstance(node.body, ast.Compare)
            and isinstance(node.body.left, ast.Name)
            and node.body.left.id == test.left.value.target.id
        ):
            return None
        subject: ast.expr = test.left.value.value
        compare = node.body
    elif isinstance(node, ast.Compare):
        subject, compare = node.left, node
    else:
        return None
    if len(compare.ops) != 1 or not isinstance(compare.comparators[0], ast.Constant):
        return None
    limit = compare.comparators[0].value
    if limit.__class__ not in (int, float) or not _context_method(subject):
        return None
    op = compare.ops[0]
    assert isinstance(subject, ast.Call) and isinstance(subject.func, ast.Attribute)
    method = subject.func.attr
    if method == "score" and not subject.args and isinstance(op, ast.Lt | ast.LtE):
        return ScoreAtMost(float(limit), isinstance(op, ast.Lt))
    if (
        method == "days_since"
        and len(subject.args) == 2
        and isinstance(subject.args[0], ast.Constant)
        and isinstance(subject.args[1], ast.Constant)
        and subject.args[1].value is None
        and isinstance(op, ast.Gt | ast.GtE)
    ):
        return SinceAtLeast(
            str(subject.args[0].value), float(limit) * 86400.0, isinstance(op, ast.Gt)
        )
    return None


def _context_method(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "c"
    )


Atom = tuple[Guard, Dir]  # a compiled leaf of a condition, and which way real time moves it


def time_atoms(
    src: str, namespace: dict[str, Any], segment: Segments, resolve: Resolver
) -> list[Atom] | None:
    """The leaves of a condition's `and`/`or`/`not` structure (segments looked into) that
    read `now` other than as a scheduled `days_since` bound, compiled, each with the
    direction time moves it in: +1 (it can only turn true), -1 (only false), None (either:
    not known). The condition can change by time alone only when one of them does, so the
    engine finds the first instant each changes at (see `Engine._probe`). Each direction is
    over real time, all kinds of change joined: the score's decay steps and events leaving
    windows move the leaf the same way as `now`, or the direction is None. None: the code
    cannot be read (the whole condition is then one leaf of unknown direction).
    """
    atoms: list[Atom] = []
    seen: set[str] = set()

    def visit(analyzer: Analyzer, node: ast.expr, ns: dict[str, Any]) -> None:
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                visit(analyzer, value, ns)
            return
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            visit(analyzer, node.operand, ns)
            return
        name = _segment_name(node)
        if name is not None:
            if name in seen:
                return
            seen.add(name)
            inner = _segment_code(name, segment, resolve)
            if inner is not None:
                visit(*inner)
                return
        halves = _abs_halves(analyzer, node)
        if halves is not None:
            for half in halves:
                visit(analyzer, half, ns)
            return
        analyzer.uncovered = False
        dirs = analyzer._dirs(node)
        if not analyzer.uncovered or dirs == CONST:
            return
        total: Dir = 0
        for d in dirs:
            total = _join(total, d)
        atoms.append((_leaf_function(node, ns, "<atom>"), total))

    try:
        analyzer = Analyzer(src, resolve)
        if analyzer.body is not None:
            visit(analyzer, analyzer.body, namespace)
    except _UNREADABLE:
        return None
    return atoms
