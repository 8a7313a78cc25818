"""How deep a metric or segment is, counting the definitions it reads (S007 past the limit).

The type checker, the `when` folder, the code generator and the engine follow a name to its
definition recursively, so a chain of metrics each defined by the one before (or deep
expressions reading deep segments) nests as deeply as one expression that long. The parser
bounds each expression's own depth; this pass bounds the depth through definitions to the
same limit, walking without recursion, before any recursive pass runs.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Iterator

import attrs

from leadlang import ast
from leadlang.diagnostics import Diagnostic
from leadlang.interpreter.resolve import Symbols

Definition = ast.MetricDecl | ast.SegmentDecl
_EXPRESSIONS = typing.get_args(ast.Expr)


def check_depth(
    modules: Iterable[ast.Module], symbols: Symbols, limit: int, diagnostics: list[Diagnostic]
) -> bool:
    """S007 for every metric, segment or other expression (a trigger, a condition, a step's
    value) deeper than `limit` counting the definitions it reads; True when any was."""
    depth = _definition_depths(symbols)
    found = _report_definitions(symbols, depth, limit, diagnostics)
    tables: dict[str, Definition] = {**symbols.metrics, **symbols.segments}
    for module in modules:
        for expr in _expressions(module):
            own, levels = _shape(expr, tables)
            total = max([own, *(at + depth.get(r, 0) for r, at in levels.items())])
            # (deeper on its own, or reading a definition that is: reported already)
            if own <= limit < total and all(depth.get(r, 0) <= limit for r in levels):
                found = True
                diagnostics.append(
                    Diagnostic(
                        code="S007",
                        severity="error",
                        message=f"nesting too deep (this expression nests more than {limit} "
                        "levels deep, counting the metrics and segments it reads)",
                        span=expr.span,
                        help="split it, or define what it reads from fewer layers",
                    )
                )
    return found


def _expressions(module: ast.Module) -> Iterator[ast.Expr]:
    """The outermost expressions of a module's flows, messages and score rules (metrics and
    segments are judged as definitions), found without recursion."""
    todo: list[object] = [module]
    while todo:
        node = todo.pop()
        if isinstance(node, _EXPRESSIONS):
            yield node
        elif isinstance(node, tuple | list):
            todo.extend(node)
        elif attrs.has(type(node)) and not isinstance(node, Definition):
            todo.extend(getattr(node, field.name) for field in attrs.fields(type(node)))  # type: ignore[arg-type]


def _definition_depths(symbols: Symbols) -> dict[str, int]:
    """Each metric's and segment's depth, counting the definitions it reads."""
    tables: dict[str, Definition] = {**symbols.metrics, **symbols.segments}
    shapes = {name: _shape(decl.expr, tables) for name, decl in tables.items()}
    depth: dict[str, int] = {}
    for root in tables:
        if root in depth:
            continue
        # post-order without recursion; a name met again while open is a cycle (N014's to
        # report), counted as nothing here
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(shapes[root][1]))]
        open_: set[str] = {root}
        while stack:
            name, refs = stack[-1]
            ref = next(refs, None)
            if ref is None:
                own, levels = shapes[name]
                depth[name] = max(
                    [own, *(at + depth.get(r, 0) for r, at in levels.items() if r not in open_)]
                )
                open_.discard(name)
                stack.pop()
            elif ref not in depth and ref not in open_:
                open_.add(ref)
                stack.append((ref, iter(shapes[ref][1])))
    return depth


def _report_definitions(
    symbols: Symbols, depth: dict[str, int], limit: int, diagnostics: list[Diagnostic]
) -> bool:
    """S007 for each metric or segment deeper than `limit` whose own definitions are within
    it (one report per chain, where it first goes too deep)."""
    tables: dict[str, Definition] = {**symbols.metrics, **symbols.segments}
    found = False
    for name, decl in tables.items():
        reads = _shape(decl.expr, tables)[1]
        if depth[name] > limit and all(depth.get(r, 0) <= limit for r in reads):
            found = True
            kind = "metric" if isinstance(decl, ast.MetricDecl) else "segment"
            diagnostics.append(
                Diagnostic(
                    code="S007",
                    severity="error",
                    message=f"nesting too deep (the {kind} `{name}` nests more than {limit} "
                    "levels deep, counting the metrics and segments it reads)",
                    span=decl.name.span,
                    help="define it from fewer layers of metrics and segments",
                )
            )
    return found


def _shape(expr: ast.Expr, tables: dict[str, Definition]) -> tuple[int, dict[str, int]]:
    """(the expression's depth, {definition it reads: the deepest level it is read at})."""
    own = 0
    levels: dict[str, int] = {}
    todo: list[tuple[ast.Expr, int]] = [(expr, 1)]
    while todo:
        e, level = todo.pop()
        own = max(own, level)
        if isinstance(e, ast.Name):
            if e.name in tables and levels.get(e.name, 0) < level:
                levels[e.name] = level
            continue
        todo.extend((child, level + 1) for child in _children(e))
    return own, levels


def _children(e: ast.Expr) -> Iterator[ast.Expr]:
    if isinstance(e, ast.Binary):
        yield e.left
        yield e.right
    elif isinstance(e, ast.Unary):
        yield e.operand
    elif isinstance(e, ast.Attr):
        yield e.obj
    elif isinstance(e, ast.Call):
        yield from e.args
        if e.where is not None:
            yield e.where
        if e.within is not None:
            yield e.within
    elif isinstance(e, ast.ListLit):
        yield from e.items
    elif isinstance(e, ast.ObjectLit):
        yield from (entry.value for entry in e.entries)
