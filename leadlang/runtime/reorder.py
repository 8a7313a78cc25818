"""Conjunctions evaluated cheapest operand first.

A condition only reads the contact: `a and b` has no side effects, and as a truth value it is
the same in any order (true when every operand is true; false when one is false, or raises,
since a condition that raises reads none). So where only the truth value counts (segments and
`when` triggers), the engine tests the cheap operands first (the score, a trait,
`days_since`) and the costly ones (metrics, segments, aggregates over windows) last, and skips
those when a cheap operand is already false: `score <= 50 and propensity < 60% and
days_since(page_viewed) >= 7` computes `propensity` only for contacts idle for a week.
"""

from __future__ import annotations

import ast

# What a `c.METHOD(...)` call costs, roughly, in units of a score read.
_COST = {"score": 1, "days_since": 2, "status": 3, "count": 4, "total": 6, "average": 6}
_COSTLY = 8  # metrics, segments, `last` and anything else: a whole expression behind a name


def cheap_first(src: str) -> str:
    """The IR expression source with its top-level conjunction's operands sorted by cost
    (stable); the source unchanged when there is nothing to reorder or it cannot be done
    safely (an operand using a temporary another one binds)."""
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return src
    ret = _returned(tree)
    if (
        ret is None
        or not isinstance(ret.value, ast.BoolOp)
        or not isinstance(ret.value.op, ast.And)
    ):
        return src
    operands = _flatten(ret.value)
    if not _independent(operands):
        return src
    ordered = sorted(operands, key=_cost)
    if ordered == operands:
        return src
    ret.value = ast.BoolOp(op=ast.And(), values=ordered)
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def _returned(tree: ast.Module) -> ast.Return | None:
    """`return EXPR` in `def _f(c, p): try: return EXPR except ...`, as codegen emits it."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "_f":
            body = node.body
            if len(body) == 1 and isinstance(body[0], ast.Try):
                inner = body[0].body
                if len(inner) == 1 and isinstance(inner[0], ast.Return):
                    return inner[0]
    return None


def _flatten(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
        return [leaf for value in node.values for leaf in _flatten(value)]
    return [node]


def _independent(operands: list[ast.expr]) -> bool:
    """No operand reads a name (a walrus temporary) that another operand binds."""
    bound = [{n.target.id for n in ast.walk(op) if isinstance(n, ast.NamedExpr)} for op in operands]
    for i, op in enumerate(operands):
        read = {n.id for n in ast.walk(op) if isinstance(n, ast.Name)}
        if any(read & names for j, names in enumerate(bound) if j != i):
            return False
    return True


def _cost(node: ast.expr) -> int:
    total = 0
    for sub in ast.walk(node):
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and isinstance(sub.func.value, ast.Name)
            and sub.func.value.id == "c"
        ):
            total += _COST.get(sub.func.attr, _COSTLY)
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name):
            total += 1  # a helper
    return total
