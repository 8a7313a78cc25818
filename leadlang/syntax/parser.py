"""Text to AST: the Lark LALR parser for `.lead` scripts and syntax diagnostics in words.

`parse(source)` returns the `ast.Module` and the syntax diagnostics (S-codes). The Lark
parser is built once per process and its analysis is cached on disk, so start-up stays fast;
the AST is built while parsing (Lark's `transformer=`), without an intermediate tree.
After a syntax error the file is re-parsed one top-level declaration at a time, and inside
a broken declaration the bad line is skipped and the declaration re-parsed, so every bad
line is reported and the rest still reaches the checker. Nodes come from `build.py`,
words from `messages.py`, tokens and layout from `lexer.py`.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
from lark import Lark, Token
from lark.exceptions import LarkError, UnexpectedInput

from leadlang import ast
from leadlang.diagnostics import Diagnostic
from leadlang.source import Source
from leadlang.syntax.build import AstBuilder
from leadlang.syntax.lexer import LeadIndenter, LeadLexer, SyntaxProblem

GRAMMAR_PATH = Path(__file__).parent.parent / "grammar.lark"
MAX_ERRORS_PER_FILE = 100


# ---------------------------------------------------------------- the parser singleton

_PARSER: Lark | None = None
_PARSE_LOCK = threading.RLock()
_BUILDER = AstBuilder()
_INDENTER = LeadIndenter()


def _cache_file(grammar: str) -> str | None:
    """Where Lark keeps the analysed grammar: the user cache dir, else the temp dir, else
    nowhere (a read-only install just builds the parser each time, ~0.3 s slower).
    Lark checks the grammar, options and versions stored in the file and rebuilds on any
    mismatch or a damaged file, so a stale cache is never used."""
    digest = hashlib.sha256(grammar.encode()).hexdigest()[:16]
    name = f"grammar-{digest}-py{sys.version_info[0]}{sys.version_info[1]}.pickle"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for folder in (
        os.path.join(base, "leadlang"),
        os.path.join(tempfile.gettempdir(), "leadlang-cache"),
    ):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and os.access(path, os.R_OK):
            return path
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return path
    return None


def get_parser() -> Lark:
    """The Lark LALR parser, built once per process (analysis cached on disk)."""
    global _PARSER
    if _PARSER is None:
        grammar = GRAMMAR_PATH.read_text(encoding="utf-8")
        options: dict[str, Any] = {
            "parser": "lalr",
            "lexer": LeadLexer,
            "postlex": _INDENTER,
            "transformer": _BUILDER,
            "keep_all_tokens": True,
            "maybe_placeholders": False,
        }
        cache = _cache_file(grammar)
        try:
            _PARSER = Lark(grammar, cache=cache or False, **options)
        except (OSError, EOFError, LarkError, ValueError):
            _PARSER = Lark(grammar, **options)
    return _PARSER


# ---------------------------------------------------------------- parse


def _file_stem(path: str) -> str:
    return Path(path).stem or path


def parse(source: Source) -> tuple[ast.Module, list[Diagnostic]]:
    """Parse one file. Never raises for bad input: problems are returned as diagnostics."""
    # Parsing allocates a token and a node per word but makes no reference cycles, so the
    # cyclic garbage collector's passes over the growing heap are wasted work (~15%).
    with _PARSE_LOCK:  # one parser, builder and indenter per process: parse one file at a time
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return _parse(source)
        finally:
            if gc_was_enabled:
                gc.enable()


def _parse(source: Source) -> tuple[ast.Module, list[Diagnostic]]:
    text = source.text
    diagnostics: list[Diagnostic] = []
    diagnostics.extend(_tab_diagnostics(source))
    decls: list[ast.Decl] = []
    attempt = _parse_chunk(source, text, 0, 0)
    if attempt.ok:
        decls.extend(attempt.decls)
        diagnostics.extend(attempt.diagnostics)
    else:
        errors = 0
        for line_offset, pos_offset, chunk in _top_level_chunks(text):
            if errors >= MAX_ERRORS_PER_FILE:
                break
            chunk_decls, chunk_diags = _parse_recovering(source, chunk, line_offset, pos_offset)
            decls.extend(chunk_decls)
            diagnostics.extend(chunk_diags)
            errors += sum(1 for d in chunk_diags if d.code != "S005")
    end = source.span(len(text), len(text))
    module = ast.Module(path=source.path, decls=tuple(decls), span=source.span(0, 0).to(end))
    return module, diagnostics


MAX_RECOVERIES_PER_DECLARATION = 20


def _parse_recovering(
    source: Source, chunk: str, line_offset: int, pos_offset: int
) -> tuple[list[Any], list[Diagnostic]]:
    """Parse one top-level declaration; after an error inside its block, skip the bad line
    (and the lines indented under it) and try again, so that every bad line is reported
    and the declaration still reaches the checker."""
    errors: list[Diagnostic] = []
    lines = _lines(chunk)
    skipped: set[int] = set()
    for _ in range(MAX_RECOVERIES_PER_DECLARATION):
        attempt = _parse_chunk(source, "".join(lines), line_offset, pos_offset)
        if attempt.ok:
            return attempt.decls, [*errors, *attempt.diagnostics]
        error = attempt.diagnostics[-1]
        # A block left empty by skipping its only line is a consequence, not a new mistake.
        bad = attempt.bad_line
        if errors and "indented block" in error.message:
            bad = _header_above(lines, (bad or 1) - 1)  # skip the emptied block's header too
        elif any(e.span.start == error.span.start for e in errors):
            break  # the same place again (e.g. an unclosed bracket): nothing new to say
        else:
            errors.append(error)
        # The header line itself, or no progress: give the declaration up.
        if bad is None or bad <= 1 or bad in skipped or bad > len(lines):
            break
        skipped.add(bad)
        _blank_statement(lines, bad - 1)
    return [], errors


def _header_above(lines: list[str], index: int) -> int:
    """1-based number of the last non-blank line before line `index` (0-based)."""
    for i in range(min(index, len(lines)) - 1, -1, -1):
        stripped = lines[i].strip()
        if stripped and not stripped.startswith("#"):
            return i + 1
    return 1


def _blank_statement(lines: list[str], index: int) -> None:
    """Turn line `index` and the lines indented deeper under it into blank lines (same
    length, so offsets and line numbers elsewhere do not move)."""

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip(" \t"))

    def blank(line: str) -> str:
        body = line.rstrip("\r\n")
        return " " * len(body) + line[len(body) :]

    depth = indent(lines[index])
    lines[index] = blank(lines[index])
    for i in range(index + 1, len(lines)):
        stripped = lines[i].strip()
        if stripped and not stripped.startswith("#") and indent(lines[i]) <= depth:
            break
        lines[i] = blank(lines[i])


@attrs.define
class _Attempt:
    ok: bool
    decls: list[Any]
    diagnostics: list[Diagnostic]
    bad_line: int | None = None  # 1-based within the chunk: the line to skip to recover


def _parse_chunk(source: Source, text: str, line_offset: int, pos_offset: int) -> _Attempt:
    """Parse `text` (the whole file or one top-level chunk of it)."""
    builder = _BUILDER
    builder.file = source.path
    builder.stem = _file_stem(source.path)
    builder.line_offset = line_offset
    builder.pos_offset = pos_offset
    builder.diagnostics = []
    builder.depths = {}
    if not text.endswith("\n"):
        text += "\n"
    try:
        decls: list[Any] = get_parser().parse(text)  # type: ignore[assignment]
    except SyntaxProblem as problem:
        diag = _problem_diagnostic(builder, problem)
        return _Attempt(False, [], [*builder.diagnostics, diag], problem.token.line)
    except UnexpectedInput as error:
        from leadlang.syntax.messages import describe_unexpected  # only needed on errors

        diag = describe_unexpected(error, builder, _INDENTER, text, get_parser().terminals)
        bad_line = error.line if isinstance(error.line, int) and error.line > 0 else None
        token = getattr(error, "token", None)
        if isinstance(token, Token) and token.type == "_INDENT":
            bad_line = token.end_line  # the wrongly indented line, not the one before
        return _Attempt(False, [], [*builder.diagnostics, diag], bad_line)
    except (LarkError, RecursionError) as error:  # defensive: never a traceback
        span = builder.tspan(Token("X", "", 0, 1, 1, 1, 1, 0))
        diag = Diagnostic(
            code="S001",
            severity="error",
            message=f"cannot parse this file ({type(error).__name__})",
            span=span,
            help="this is a bug in leadlang, not in the script: please report it with the file",
        )
        return _Attempt(False, [], [diag])
    return _Attempt(True, decls, builder.diagnostics)


def _problem_diagnostic(builder: AstBuilder, problem: SyntaxProblem) -> Diagnostic:
    return Diagnostic(
        code=problem.code,
        severity="error",
        message=problem.message,
        span=builder.tspan(problem.token),
        help=problem.help,
    )


def _tab_diagnostics(source: Source) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    if "\t" not in source.text:
        return out
    offset = 0
    depth = 0  # brackets open before the line: its leading blanks are no indentation then
    for line in source.text.split("\n"):
        stripped = line.lstrip(" \t")
        indent = line[: len(line) - len(stripped)]
        if depth <= 0 and "\t" in indent and stripped and not stripped.startswith("#"):
            tab = indent.index("\t")
            out.append(
                Diagnostic(
                    code="S003",
                    severity="error",
                    message="tab in indentation",
                    span=source.span(offset + tab, offset + tab + 1),
                    help="indent with spaces only",
                )
            )
        depth = max(0, depth + _bracket_balance(line))
        offset += len(line) + 1
    return out


def _lines(text: str) -> list[str]:
    """The lines of `text` with their ends, split at `\n` only, as `Source` counts lines
    (`str.splitlines` also splits at U+000B, U+001E, U+2028 and others, which would shift
    every later line number)."""
    lines = text.split("\n")
    last = lines.pop()
    return [line + "\n" for line in lines] + ([last] if last else [])


def _top_level_chunks(text: str) -> Iterator[tuple[int, int, str]]:
    """Split the file before each line that starts a top-level declaration.

    A line starts one when it begins at column 0 with something other than a comment and
    no bracket is open. Yields (lines before the chunk, offset of the chunk, chunk text).
    """
    lines = _lines(text)
    depth = 0
    start_line = 0
    start_pos = 0
    pos = 0
    for index, line in enumerate(lines):
        starts_text = line[:1] not in ("", " ", "\t", "#", "\n", "\r")
        # Inside an unclosed bracket, only a declaration keyword at column 0 starts a new
        # chunk: the bracket was most likely never closed.
        if index > start_line and starts_text and (depth <= 0 or _DECL_START.match(line)):
            yield start_line, start_pos, text[start_pos:pos]
            start_line, start_pos = index, pos
            depth = 0
        depth += _bracket_balance(line)
        pos += len(line)
    yield start_line, start_pos, text[start_pos:]


_DECL_START = re.compile(
    r"(?:use|settings|event|trait|score|metric|segment|message|flow|when|on)\b"
)
_BRACKETS = re.compile(r'"(?:[^"\\\n]|\\.)*+"|#[^\n]*|[(\[{]|[)\]}]')  # (possessive: lexer.py)


def _bracket_balance(line: str) -> int:
    balance = 0
    for match in _BRACKETS.finditer(line):
        ch = match.group()[0]
        if ch in "([{":
            balance += 1
        elif ch in ")]}":
            balance -= 1
    return balance
