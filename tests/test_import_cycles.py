"""Data flows one way: no leadlang module imports a module that imports it back.

The import graph is read with `ast` from the sources (imports inside functions count, since
they run; imports under `if TYPE_CHECKING:` do not). Each module must also import on its own in
a fresh interpreter, whatever order its imports run in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "leadlang"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    _module_name(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if "_grammar_cache" not in path.parts
}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST, here: str, is_package: bool) -> set[str]:
    """The leadlang modules `node` imports when run (TYPE_CHECKING blocks left out)."""
    found: set[str] = set()
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for orelse in child.orelse:
                found |= _imports(orelse, here, is_package)
            continue
        if isinstance(child, ast.Import):
            found |= {alias.name for alias in child.names}
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:
                anchor = here.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (child.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in child.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULES else base)
        found |= _imports(child, here, is_package)
    return {name for name in found if name in MODULES}


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[name] = _imports(tree, name, path.name == "__init__.py") - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_walk_sees_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_graph_covers_the_package() -> None:
    graph = _graph()
    assert "leadlang.syntax" in graph["leadlang.loader"] or any(
        name.startswith("leadlang.syntax") for name in graph["leadlang.loader"]
    )
    assert "leadlang.runtime.context" in graph["leadlang.runtime.engine"]


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    assert _cycles(_graph()) == []


# Scripts other programs run rather than modules to import: `python -m leadlang` and the
# Alembic migration environment (it needs Alembic's running context).
_RUN_NOT_IMPORTED = ("leadlang.__main__", "leadlang.runtime.store.migrations.")


@pytest.mark.parametrize(
    "module", [name for name in sorted(MODULES) if not name.startswith(_RUN_NOT_IMPORTED)]
)
def test_each_module_imports_alone(module: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib, sys; importlib.import_module(sys.argv[1])",
            module,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
