"""The module loader: command-line paths and `use` lines to parsed modules, in dependency order.

`load(paths)` reads every file named (folders: every `.lead` under them, sorted), follows
`use std.NAME` (the standard library folder) and `use "rel/path.lead"` (relative to the using
file), parses each file once, and returns the modules with dependencies before dependents.
Missing modules (N010), `use` cycles (N011) and unreadable files (S006) are diagnostics;
a missing command-line path is a usage error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

import leadlang
from leadlang import ast
from leadlang.diagnostics import Diagnostic
from leadlang.source import Source, Span, read_file
from leadlang.syntax import parse


@attrs.define
class LoadResult:
    modules: list[ast.Module] = attrs.field(factory=list)  # dependencies first
    sources: dict[str, Source] = attrs.field(factory=dict)  # keyed by the span file name
    diagnostics: list[Diagnostic] = attrs.field(factory=list)
    usage_error: str | None = None


def stdlib_dir() -> Path:
    """The standard library folder: inside the package (wheel) or next to it (editable)."""
    package = Path(leadlang.__file__).resolve().parent
    inside = package / "stdlib"
    if inside.is_dir():
        return inside
    return package.parent / "stdlib"


def stdlib_modules() -> list[str]:
    folder = stdlib_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.lead"))


def display_path(path: Path) -> str:
    """The path relative to the current directory when it is below it, for diagnostics."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    if rel.startswith(".."):
        return str(path)
    return rel


class _Loader:
    def __init__(self) -> None:
        self.result = LoadResult()
        self.done: dict[Path, str] = {}  # resolved path -> display name, once loaded
        self.active: list[Path] = []  # the `use` chain being loaded, for cycles

    def load_file(self, path: Path, used_at: Span | None = None) -> None:
        """Load `path` and what it uses, depth first, dependencies before their users; with
        a stack rather than recursion, so a chain of thousands of `use` lines is fine."""
        first = self._open(path, used_at)
        stack = [first] if first is not None else []
        while stack:
            resolved, name, module, uses = stack[-1]
            use = next(uses, None)
            if use is None:
                stack.pop()
                self.active.pop()
                self.done[resolved] = name
                self.result.modules.append(module)
                continue
            target = self.follow(use, resolved)
            if target is not None:
                opened = self._open(target, use.span)
                if opened is not None:
                    stack.append(opened)

    def _open(
        self, path: Path, used_at: Span | None
    ) -> tuple[Path, str, ast.Module, Iterator[ast.Use]] | None:
        """Read and parse a file not loaded yet (made active); None when it is loaded, being
        loaded, or unreadable (reported)."""
        resolved = path.resolve()
        if resolved in self.done:
            return None
        if resolved in self.active:
            return None  # reported by the caller, which knows the `use` span
        # (`/dev/fd/63`, a pipe from `<(...)`, resolves to `/proc/PID/fd/pipe:[N]`, which is
        # no path: named and read as given)
        name = display_path(resolved if resolved.exists() else path)
        try:
            # `utf-8-sig`: an editor's byte-order mark is not text (it would shift columns).
            text = read_file(path).decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            span = used_at or Span(name, 1, 1, 1, 1, 0, 0)
            if isinstance(error, UnicodeDecodeError):
                line, column = _position(error.object, error.start)
                reason = (
                    f"it is not UTF-8 text (invalid byte at offset {error.start}: "
                    f"line {line}, column {column})"
                )
                if used_at is None:  # the file given itself: point at the byte
                    span = Span(name, line, column, line, column + 1, 0, 0)
            else:
                reason = error.strerror or "it cannot be read"
            self.result.diagnostics.append(
                Diagnostic(
                    code="S006",
                    severity="error",
                    message=f"cannot read `{name}`: {reason}",
                    span=span,
                )
            )
            self.done[resolved] = name
            return None
        source = Source(name, text)
        self.result.sources[name] = source
        module, diagnostics = parse(source)
        self.result.diagnostics.extend(diagnostics)
        self.active.append(resolved)
        uses = (decl for decl in module.decls if isinstance(decl, ast.Use))
        return resolved, name, module, uses

    def follow(self, use: ast.Use, from_file: Path) -> Path | None:
        """The file a `use` line names, when it exists and closes no cycle (else reported)."""
        if use.is_path:
            try:
                # (a name too long for the system, or with a NUL, names no file either)
                target = (from_file.parent / use.target).resolve()
                found = target.is_file()
            except (OSError, ValueError):
                found = False
            if not found:
                self.missing(
                    use,
                    f"file `{use.target}` not found (relative to `{display_path(from_file.parent)}`)",
                    None,
                )
                return None
        else:
            parts = use.target.split(".")
            if len(parts) != 2 or parts[0] != "std":
                self.missing(
                    use,
                    f"unknown module `{use.target}`",
                    "standard modules are written `use std.NAME`",
                )
                return None
            target = (stdlib_dir() / f"{parts[1]}.lead").resolve()
            if not target.is_file():
                import difflib  # only needed on this error path

                known = stdlib_modules()
                close = difflib.get_close_matches(parts[1], known, n=1)
                help = (
                    f"did you mean `std.{close[0]}`?"
                    if close
                    else (
                        "standard modules: " + ", ".join(f"`std.{m}`" for m in known)
                        if known
                        else None
                    )
                )
                self.missing(use, f"no standard module `{use.target}`", help)
                return None
        if target in self.active:
            start = self.active.index(target)
            chain = [display_path(p) for p in self.active[start:]] + [display_path(target)]
            self.result.diagnostics.append(
                Diagnostic(
                    code="N011",
                    severity="error",
                    message="use cycle: " + " -> ".join(chain),
                    span=use.span,
                    help="move what both files need into a third file that both `use`",
                )
            )
            return None
        return target

    def missing(self, use: ast.Use, message: str, help: str | None) -> None:
        self.result.diagnostics.append(
            Diagnostic(code="N010", severity="error", message=message, span=use.span, help=help)
        )


def _lead_files(folder: Path) -> list[Path]:
    """Every `.lead` file under `folder`, sorted; folders that are symbolic links are not
    entered (a link to a parent would never end). A walk with a stack, not `rglob`, which
    skipped a folder it could not list without a word (a program checked, or served, without
    its scripts there) and recursed once per level (folders nested 1,000 deep: a
    RecursionError): an `OSError` names a folder that cannot be listed."""
    found: list[Path] = []
    folders = [folder]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
                elif entry.name.endswith(".lead") and Path(entry.path).is_file():
                    found.append(Path(entry.path))
    return sorted(found)


class PathError(Exception):
    """A command-line path that names no script; its text is the usage error."""


def scripts_at(raw: str) -> tuple[bool, list[Path]]:
    """(whether `raw` is a folder, the `.lead` files it names: itself, or every one under the
    folder); PathError when it names none."""
    if not raw:  # (`Path("")` is the current folder: an unset variable would check it)
        raise PathError("an empty path names no file or folder")
    path = Path(raw)
    try:
        if path.is_dir():
            found = _lead_files(path)
            if not found:
                raise PathError(f"no .lead files in folder `{raw}`")
            return True, found
        if path.exists():
            return False, [path]
    except OSError as error:  # a name too long, a folder that cannot be listed
        reason = error.strerror or "it cannot be read"
        where = f" (`{error.filename}`)" if error.filename not in (None, raw) else ""
        raise PathError(f"cannot read `{raw}`{where}: {reason}") from None
    raise PathError(f"no such file or folder: `{raw}`")


def load(paths: Sequence[str]) -> LoadResult:
    """Load the files and folders named on the command line, and everything they `use`."""
    loader = _Loader()
    files: list[Path] = []
    for raw in paths:
        try:
            files.extend(scripts_at(raw)[1])
        except PathError as error:
            loader.result.usage_error = str(error)
            return loader.result
    for file in files:
        loader.load_file(file)
    return loader.result


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """The 1-based line and column (in characters, as diagnostics count them) of a byte."""
    data = re.sub(rb"\r(?!\n)", b"\n", data)  # (line ends as `Source` reads them)
    line_start = data.rfind(b"\n", 0, offset) + 1
    prefix = data[line_start:offset].decode("utf-8", "replace")
    if line_start == 0:
        prefix = prefix.removeprefix("\ufeff")  # (a byte-order mark takes no column)
    return data.count(b"\n", 0, offset) + 1, len(prefix) + 1
