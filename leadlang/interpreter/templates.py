"""Message template checks: each template compiles, and every variable it reads has a source.

Templates are Jinja2, rendered in a sandbox (`template_environment`, shared with the
engine). A variable has a source when it is a trait (built-in or declared), a built-in name
(`score`, `tags`, `id`, `now`), a metric, a segment, `event`, `contact`, or a key of the
`with {...}` of some `send` of that message; a variable used only under `| default(...)`
(or tested with `is defined`) needs none. `html file "x"` is read relative to the `.lead`
file that declares the message. Problems in a template file point into that file, whose
text is added to the sources so the renderers can show it.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator, MutableMapping
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.meta import TrackingCodeGenerator
from jinja2.sandbox import SandboxedEnvironment

from leadlang import ast
from leadlang.diagnostics import Diagnostic
from leadlang.interpreter import scope
from leadlang.interpreter.resolve import Symbols, did_you_mean
from leadlang.source import Source, Span, read_file

TEMPLATE_FIELDS = ("subject", "text", "html", "title", "url", "from", "reply_to")
EXTRA_SOURCES = ("event", "contact")


@cache
def template_environment() -> SandboxedEnvironment:
    """The one Jinja2 environment templates are compiled and rendered in."""
    return SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)


@cache
def analyse(text: str) -> tuple[tuple[int, str] | None, dict[str, int]]:
    """(compile error as (line, message) or None, {unguarded variable: first line})."""
    env = template_environment()
    try:
        tree = env.parse(text)
    except TemplateSyntaxError as error:
        return (error.lineno or 1, error.message or "invalid template"), {}
    except TemplateError as error:
        return (1, error.message or "invalid template"), {}
    except RecursionError:
        return (1, "the template nests too deeply"), {}
    except (ValueError, OverflowError):  # the lexer converting a 5,000-digit number
        return (1, "a number in the template is out of range"), {}
    unknown = _unknown_filter_or_test(env, tree)
    if unknown is not None:
        return unknown, {}
    try:
        undeclared = _undeclared_variables(tree) - set(env.globals)
    except RecursionError:
        return (1, "the template nests too deeply"), {}
    except TemplateError as error:
        return (getattr(error, "lineno", None) or 1, error.message or "invalid template"), {}
    if not undeclared:
        return None, {}
    # A variable tested with `is defined` anywhere is taken to be guarded where it is used.
    tested = {
        test.node.name
        for test in tree.find_all(nodes.Test)
        if test.name in ("defined", "undefined") and isinstance(test.node, nodes.Name)
    }
    unguarded: dict[str, int] = {}
    for name in _unguarded_names(tree):
        if name.name in undeclared and name.name not in tested:
            unguarded.setdefault(name.name, name.lineno)
    return None, unguarded


class _Reader(TrackingCodeGenerator):
    """Jinja2's own scoping rules (`meta.find_undeclared_variables` walks the code generator)
    without its constant folding: the generator evaluates constant expressions, so checking
    `{{ 'a' * 10**10 }}` would build that string. Here nothing is ever evaluated."""

    def __init__(self, environment: SandboxedEnvironment) -> None:
        CodeGenerator.__init__(self, environment, "<check>", "<check>", optimized=False)
        self.undeclared_identifiers: set[str] = set()

    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        raise nodes.Impossible()  # (the generator then treats the output as not constant)


def _undeclared_variables(tree: nodes.Template) -> set[str]:
    reader = _Reader(template_environment())
    reader.visit(tree)
    return reader.undeclared_identifiers


def _unknown_filter_or_test(env: SandboxedEnvironment, tree: nodes.Node) -> tuple[int, str] | None:
    """What compiling would also reject, found on the tree (compiling costs 5x parsing)."""
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        known = env.filters if isinstance(node, nodes.Filter) else env.tests
        if node.name not in known:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            return node.lineno, f"no {kind} named '{node.name}'"
    return None


def _unguarded_names(tree: nodes.Node) -> Iterator[nodes.Name]:
    """Every variable read that is not under `| default(...)` nor tested `is defined`."""
    todo: list[nodes.Node] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, nodes.Filter) and node.name in ("default", "d"):
            todo += (n for n in node.iter_child_nodes() if n is not node.node)
            continue
        if isinstance(node, nodes.Test) and node.name in ("defined", "undefined"):
            todo += (n for n in node.iter_child_nodes() if n is not node.node)
            continue
        if isinstance(node, nodes.Name) and node.ctx == "load":
            yield node
        todo += node.iter_child_nodes()


def check_templates(
    symbols: Symbols, sources: MutableMapping[str, Source], diagnostics: list[Diagnostic]
) -> None:
    known = {
        *symbols.trait_types,
        *scope.BUILTIN_NAMES,
        *symbols.metrics,
        *symbols.segments,
        *EXTRA_SOURCES,
    }
    for name, decl in symbols.messages.items():
        available = known | symbols.send_keys.get(name, set())
        for field in decl.fields:
            if field.key.name not in TEMPLATE_FIELDS or not isinstance(field.value, ast.String):
                continue
            if field.from_file:
                _check_file(name, field.value, symbols, available, sources, diagnostics)
            else:
                _check_inline(name, field.value, available, sources, diagnostics)


def _check_inline(
    message: str,
    string: ast.String,
    available: set[str],
    sources: MutableMapping[str, Source],
    diagnostics: list[Diagnostic],
) -> None:
    if "{" not in string.value:
        return
    error, unguarded = analyse(string.value)
    if error is not None:
        diagnostics.append(_compile_error(message, error[1], string.span))
        return
    source = sources.get(string.span.file)
    for var in unguarded:
        if var not in available:
            span = string.span
            if source is not None:
                span = _find(source, var, span.start, span.end) or span
            diagnostics.append(_no_source(message, var, span, available))


def _check_file(
    message: str,
    string: ast.String,
    symbols: Symbols,
    available: set[str],
    sources: MutableMapping[str, Source],
    diagnostics: list[Diagnostic],
) -> None:
    folder = Path(symbols.message_dirs.get(message, "."))
    path = folder / string.value
    try:
        text = read_file(path).decode("utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as problem:
        reason = (
            "it is not UTF-8 text"
            if isinstance(problem, UnicodeDecodeError)
            else "it does not exist"  # (a name with a NUL is no file's either: ValueError)
            if isinstance(problem, (FileNotFoundError, ValueError))
            else problem.strerror
            if problem.errno in (errno.EFBIG, errno.ESPIPE)
            else "it cannot be read"
        )
        diagnostics.append(
            Diagnostic(
                code="F007",
                severity="error",
                message=f"cannot read template `{path.as_posix()}`: {reason}",
                span=string.span,
                help="a template file is relative to the `.lead` file that declares the message",
            )
        )
        return
    if "{" not in text:
        return
    error, unguarded = analyse(text)
    if error is None and all(var in available for var in unguarded):
        return
    name = path.as_posix()
    source = sources.setdefault(name, Source(name, text))
    if error is not None:
        line, reason = error
        diagnostics.append(_compile_error(message, reason, _line_span(source, line)))
        return
    for var, line in unguarded.items():
        if var not in available:
            whole = _line_span(source, line)
            span = _find(source, var, whole.start, whole.end) or whole
            diagnostics.append(_no_source(message, var, span, available))


def _line_span(source: Source, line: int) -> Span:
    lines = source.text.split("\n")
    line = max(1, min(line, len(lines)))
    begin = sum(len(text) + 1 for text in lines[: line - 1])
    text = source.line_text(line)
    indent = len(text) - len(text.lstrip())
    return source.span(begin + indent, begin + max(len(text), indent + 1))


def _find(source: Source, var: str, start: int, end: int) -> Span | None:
    match = re.compile(rf"(?<![\w.]){re.escape(var)}(?!\w)").search(source.text, start, end)
    return source.span(match.start(), match.end()) if match else None


def _compile_error(message: str, reason: str, span: Span) -> Diagnostic:
    return Diagnostic(
        code="F003",
        severity="error",
        message=f"template of message `{message}` does not compile: {reason.rstrip('.')}",
        span=span,
        help="templates are Jinja2: `{{ name }}`, `{% if x %}...{% endif %}`, "
        '`{{ name | default("there") }}`',
    )


def _no_source(message: str, var: str, span: Span, available: set[str]) -> Diagnostic:
    suggestion = did_you_mean(var, sorted(available))
    return Diagnostic(
        code="F004",
        severity="error",
        message=f"template of message `{message}` uses `{var}`, which has no value",
        span=span,
        help=(f"{suggestion} " if suggestion else "")
        + f"declare a trait `{var}`, pass it with `send {message} with {{{var}: ...}}`, "
        f'or give a default: `{{{{ {var} | default("...") }}}}`',
    )
