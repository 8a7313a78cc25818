"""Expression AST -> canonical `.lead` text, for labels in the IR, graphs and timelines.

The text is re-parseable leadlang with only the parentheses precedence needs, so a
condition reads the same in `leadlang graph` as in the script.
"""

from __future__ import annotations

import json

from leadlang import ast

_NEG = 7  # prefix minus binds tighter than any binary operator
_ATOM = 8


def _number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _precedence(expr: ast.Expr) -> int:
    if isinstance(expr, ast.Binary):
        return ast.BINARY_PRECEDENCE[expr.op]
    if isinstance(expr, ast.Unary):
        return ast.NOT_PRECEDENCE if expr.op == "not" else _NEG
    return _ATOM


def _wrap(expr: ast.Expr, minimum: int) -> str:
    text = unparse(expr)
    return f"({text})" if _precedence(expr) < minimum else text


def unparse(expr: ast.Expr) -> str:
    if isinstance(expr, ast.Number):
        if expr.percent:
            return f"{_number(round(expr.value * 100, 10))}%"
        return _number(expr.value)
    if isinstance(expr, ast.String):
        return json.dumps(expr.value, ensure_ascii=False)
    if isinstance(expr, ast.Bool):
        return "true" if expr.value else "false"
    if isinstance(expr, ast.NoneLit):
        return "none"
    if isinstance(expr, ast.Duration | ast.Date | ast.DateTime):
        return expr.text
    if isinstance(expr, ast.Time):
        seconds = f":{expr.second:02d}" if expr.second else ""
        return f"{expr.hour:02d}:{expr.minute:02d}{seconds}"
    if isinstance(expr, ast.ListLit):
        return "[" + ", ".join(unparse(item) for item in expr.items) + "]"
    if isinstance(expr, ast.ObjectLit):
        entries = (
            f"{e.key if e.key.isidentifier() else json.dumps(e.key)}: {unparse(e.value)}"
            for e in expr.entries
        )
        return "{" + ", ".join(entries) + "}"
    if isinstance(expr, ast.Name):
        return expr.name
    if isinstance(expr, ast.Attr):
        return f"{_wrap(expr.obj, _ATOM)}.{expr.name.name}"
    if isinstance(expr, ast.Binary):
        strength = ast.BINARY_PRECEDENCE[expr.op]
        # Left-associative: the right operand needs parentheses at equal strength.
        return f"{_wrap(expr.left, strength)} {expr.op} {_wrap(expr.right, strength + 1)}"
    if isinstance(expr, ast.Unary):
        if expr.op == "not":
            return f"not {_wrap(expr.operand, ast.NOT_PRECEDENCE)}"
        return f"-{_wrap(expr.operand, _NEG)}"
    # ast.Call
    parts = ", ".join(unparse(arg) for arg in expr.args)
    if expr.where is not None:
        parts += f" where {unparse(expr.where)}"
    if expr.within is not None:
        parts += f" within {unparse(expr.within)}"
    return f"{expr.func.name}({parts})"
