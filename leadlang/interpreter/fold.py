"""Prove that a `when` trigger can never be true (F009) or is always true (F010).

A small abstract interpretation, sound rather than clever: a condition folds to a constant,
or to the set of values of one numeric quantity for which it holds, or to "unknown".
The quantities with a known range are `score` (0 to its `max`, never missing), metrics
defined as `sigmoid(...)` (0 to 1, closed: floating point rounds large inputs to exactly 1)
and `count(...)` (0 or more). A metric may be missing (`none`), where every ordering
comparison is false: so for metrics we only ever prove "never true", never "always true".
"""

from __future__ import annotations

import math
from typing import TypeAlias

import attrs

from leadlang import ast
from leadlang.diagnostics import Diagnostic
from leadlang.interpreter.resolve import Symbols

INF = math.inf
# An interval: (low, low included, high, high included).
Interval: TypeAlias = tuple[float, bool, float, bool]


@attrs.frozen
class Ranges:
    """A union of intervals of the real line."""

    parts: tuple[Interval, ...]

    @staticmethod
    def of(lo: float, lo_in: bool, hi: float, hi_in: bool) -> Ranges:
        if lo > hi or (lo == hi and not (lo_in and hi_in)):
            return Ranges(())
        return Ranges(((lo, lo_in, hi, hi_in),))

    def empty(self) -> bool:
        return not self.parts

    def intersect(self, other: Ranges) -> Ranges:
        out: list[Interval] = []
        for a in self.parts:
            for b in other.parts:
                lo, lo_in = max((a[0], a[1]), (b[0], b[1]), key=lambda p: (p[0], not p[1]))
                hi, hi_in = min((a[2], a[3]), (b[2], b[3]), key=lambda p: (p[0], p[1]))
                out += Ranges.of(lo, lo_in, hi, hi_in).parts
        return Ranges(tuple(out))

    def complement(self) -> Ranges:
        out: list[Interval] = []
        # The end of what is covered so far: (point, point itself covered).
        end: tuple[float, bool] = (-INF, False)
        for lo, lo_in, hi, hi_in in sorted(self.parts):
            out += Ranges.of(end[0], not end[1], lo, not lo_in).parts
            end = max(end, (hi, hi_in))
        out += Ranges.of(end[0], not end[1], INF, False).parts
        return Ranges(tuple(out))

    def union(self, other: Ranges) -> Ranges:
        return self.complement().intersect(other.complement()).complement()

    def covers(self, other: Ranges) -> bool:
        return other.intersect(self.complement()).empty()


ALL = Ranges(((-INF, False, INF, False),))


@attrs.frozen
class Quantity:
    key: str  # what it is: `score`, a metric name, or a unique id for an aggregate call
    label: str  # for messages
    domain: Ranges
    may_be_none: bool
    why: str


@attrs.frozen
class Atom:
    """The condition holds exactly when `quantity` is in `holds`."""

    quantity: Quantity
    holds: Ranges


Abstract: TypeAlias = bool | Atom | None  # a constant, one quantity's set, or unknown


def _atom(quantity: Quantity, holds: Ranges) -> Abstract:
    holds = holds.intersect(quantity.domain)
    if holds.empty():
        return False
    if not quantity.may_be_none and holds.covers(quantity.domain):
        return True
    return Atom(quantity, holds)


def _compare(op: str, c: float) -> Ranges | None:
    return {
        ">": Ranges.of(c, False, INF, False),
        ">=": Ranges.of(c, True, INF, False),
        "<": Ranges.of(-INF, False, c, False),
        "<=": Ranges.of(-INF, False, c, True),
        "==": Ranges.of(c, True, c, True),
        "!=": Ranges.of(c, True, c, True).complement(),
    }.get(op)


_FLIP = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}


class Folder:
    def __init__(self, symbols: Symbols) -> None:
        self.symbols = symbols
        top = symbols.score_max.value.value if symbols.score_max is not None else INF
        score_why = (
            f"the score is between 0 and its `max` {_number(top)}"
            if top != INF
            else "the score is never negative"
        )
        self.score = Quantity("score", "score", Ranges.of(0, True, top, True), False, score_why)
        self._calls = 0
        self._segments_open: set[str] = set()  # segments being folded (cycles are N014)

    def fold(self, expr: ast.Expr) -> Abstract:
        if isinstance(expr, ast.Bool):
            return expr.value
        if isinstance(expr, ast.Name) and expr.name in self.symbols.segments:
            if expr.name in self._segments_open:
                return None
            self._segments_open.add(expr.name)
            value = self.fold(self.symbols.segments[expr.name].expr)
            self._segments_open.discard(expr.name)
            return value
        if isinstance(expr, ast.Unary) and expr.op == "not":
            inner = self.fold(expr.operand)
            if isinstance(inner, bool):
                return not inner
            if isinstance(inner, Atom) and not inner.quantity.may_be_none:
                return _atom(inner.quantity, inner.holds.complement())
            return None
        if isinstance(expr, ast.Binary):
            if expr.op in ("and", "or"):
                return self._logic(expr.op, self.fold(expr.left), self.fold(expr.right))
            if expr.op in _FLIP:
                return self._comparison(expr)
        return None

    def _logic(self, op: str, left: Abstract, right: Abstract) -> Abstract:
        absorbing = op == "or"  # `true or x` is true; `false and x` is false
        for side in (left, right):
            if side is absorbing:
                return absorbing
        if left is (not absorbing):
            return right
        if right is (not absorbing):
            return left
        if isinstance(left, Atom) and isinstance(right, Atom) and (
            left.quantity == right.quantity
        ):  # fmt: skip
            if op == "and":
                return _atom(left.quantity, left.holds.intersect(right.holds))
            return _atom(left.quantity, left.holds.union(right.holds))
        return None

    def _comparison(self, expr: ast.Binary) -> Abstract:
        left_c, right_c = _constant(expr.left), _constant(expr.right)
        if left_c is not None and right_c is not None:
            return _constant_compare(expr.op, left_c, right_c)
        op: str = expr.op
        if right_c is not None and isinstance(right_c, float | int):
            quantity, c = self.quantity(expr.left), right_c
        elif left_c is not None and isinstance(left_c, float | int):
            quantity, op, c = self.quantity(expr.right), _FLIP[op], left_c
        else:
            return None
        if quantity is None or (quantity.may_be_none and op == "!="):
            return None  # `none != 5` is true: not a set of values
        holds = _compare(op, float(c))
        return None if holds is None else _atom(quantity, holds)

    def quantity(self, expr: ast.Expr) -> Quantity | None:
        if isinstance(expr, ast.Name):
            if expr.name == "score":
                return self.score
            metric = self.symbols.metrics.get(expr.name)
            if metric is not None:
                inner = self._call_quantity(metric.expr, key=expr.name, label=expr.name)
                if inner is not None:
                    return inner
        elif isinstance(expr, ast.Call):
            self._calls += 1
            return self._call_quantity(expr, key=f"call#{self._calls}", label=expr.func.name)
        return None

    def _call_quantity(self, expr: ast.Expr, key: str, label: str) -> Quantity | None:
        if not isinstance(expr, ast.Call):
            return None
        name = expr.func.name
        if name == "sigmoid":
            why = f"`{label}` is a sigmoid, between 0 and 1 (0% and 100%)"
            return Quantity(key, label, Ranges.of(0, True, 1, True), True, why)
        if name == "count":
            why = f"`{label}` counts events, so it is never negative"
            return Quantity(key, label, Ranges.of(0, True, INF, False), False, why)
        if name == "days_since":
            why = f"`{label}` counts days since a past event, so it is never negative"
            return Quantity(key, label, Ranges.of(0, True, INF, False), True, why)
        return None


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _constant(expr: ast.Expr) -> float | int | str | bool | None:
    if isinstance(expr, ast.Number):
        return expr.value
    if isinstance(expr, ast.String):
        return expr.value
    if isinstance(expr, ast.Bool):
        return expr.value
    if isinstance(expr, ast.Unary) and expr.op == "-" and isinstance(expr.operand, ast.Number):
        return -expr.operand.value
    return None


def _constant_compare(op: str, a: object, b: object) -> Abstract:
    if type(a) is not type(b) and not (isinstance(a, int | float) and isinstance(b, int | float)):
        return None  # mixed types are the type checker's business
    try:
        return {
            "==": a == b,
            "!=": a != b,
            "<": a < b,  # type: ignore[operator]
            "<=": a <= b,  # type: ignore[operator]
            ">": a > b,  # type: ignore[operator]
            ">=": a >= b,  # type: ignore[operator]
        }[op]
    except TypeError:
        return None


def _reason(folder: Folder, expr: ast.Expr) -> str | None:
    """The range that makes the condition constant, for the help line."""
    todo = [expr]
    while todo:
        e = todo.pop()
        if isinstance(e, ast.Binary):
            todo += (e.right, e.left)
        elif isinstance(e, ast.Unary):
            todo.append(e.operand)
        else:
            quantity = folder.quantity(e)
            if quantity is not None:
                return quantity.why
    return None


def check_when_triggers(symbols: Symbols, diagnostics: list[Diagnostic]) -> None:
    folder = Folder(symbols)
    for flow in symbols.flows.values():
        for clause in flow.header:
            if not isinstance(clause, ast.WhenTrigger):
                continue
            value = folder.fold(clause.cond)
            if not isinstance(value, bool):
                continue
            why = _reason(folder, clause.cond)
            if value:
                diagnostics.append(
                    Diagnostic(
                        code="F010",
                        severity="error",
                        message="this `when` trigger is always true",
                        span=clause.cond.span,
                        help=(f"{why}; " if why else "")
                        + "a `when` enrolls contacts when its condition turns true, "
                        "so this one would enroll every contact at once",
                    )
                )
            else:
                diagnostics.append(
                    Diagnostic(
                        code="F009",
                        severity="error",
                        message="this `when` trigger can never be true",
                        span=clause.cond.span,
                        help=(f"{why}, " if why else "") + "so the flow would never start from it",
                    )
                )
