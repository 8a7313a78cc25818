"""`leadlang check`: load scripts, run every checking pass, and build the checked Program.

The passes, each collecting all it finds (never stopping at the first problem):
  1. load and parse (loader.py: S-codes, missing modules N010, `use` cycles N011);
  2. collect names (resolve.py: duplicates N009, N012, N013);
  3. check declarations (declarations.py with types.py: unknown names N0xx, types T0xx);
  4. the event rule (resolve.check_event_names: misspelt events N002);
  5. lints (lints.py, fold.py: flow shape, constant `when` triggers) and templates
     (templates.py).
A `Program` is built only when no error was found.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs

from leadlang import ast
from leadlang.diagnostics import Diagnostic, sort_key
from leadlang.interpreter.declarations import check_declarations
from leadlang.interpreter.depth import check_depth
from leadlang.interpreter.fold import check_when_triggers
from leadlang.interpreter.lints import lint_flows
from leadlang.interpreter.program import Cap, Program
from leadlang.interpreter.resolve import Symbols, check_event_names, collect
from leadlang.interpreter.templates import check_templates
from leadlang.limits import MAX_DEFINITION_DEPTH
from leadlang.loader import LoadResult, PathError, load, scripts_at
from leadlang.source import Source


@attrs.define
class CheckResult:
    program: Program | None  # only when there are no errors
    diagnostics: list[Diagnostic]  # sorted by file, line, column
    sources: dict[str, Source]
    usage_error: str | None = None
    # With several programs (folders of a folder): each one's folder, as the user wrote it.
    programs: list[str] = attrs.field(factory=list)
    # Every .lead file read (modules of the standard library included) -> its number of flows.
    checked: dict[str, int] = attrs.field(factory=dict)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)

    def several_programs(self) -> str:
        """Why no program is run when there are no errors but no single program: the paths
        hold several (folders whose subfolders are separate programs)."""
        shown = ", ".join(f"`{name}`" for name in self.programs[:5])
        more = f" and {len(self.programs) - 5} more" if len(self.programs) > 5 else ""
        return (
            "these paths hold several programs (the .lead files of each folder are one"
            f" program): {shown}{more}; name one of them"
        )


def check_paths(paths: Sequence[str]) -> CheckResult:
    """Check the `.lead` files (or folders of them) named on the command line.

    A folder whose `.lead` files sit in several directories (`examples/`, one example per
    subfolder) is checked one directory at a time, as `simulate DIR` runs it: each directory
    is a program, so two examples may each have their own `settings`. Files named one by one
    are checked together, as before.
    """
    groups = _directory_programs(paths)
    if len(groups) <= 1:
        return check_modules(load(list(paths)))
    results = [check_modules(load(group)) for group in groups]
    diagnostics = _unique([d for result in results for d in result.diagnostics])
    diagnostics.sort(key=sort_key)
    sources = {name: src for result in results for name, src in result.sources.items()}
    # A module two programs `use` was checked once as far as the user is concerned.
    checked = {path: flows for result in results for path, flows in result.checked.items()}
    programs = [_program_name(group) for group in groups]
    return CheckResult(None, diagnostics, sources, programs=programs, checked=checked)


def _program_name(group: list[str]) -> str:
    """The folder holding a program's files (its files when they are in several)."""
    folders = {str(Path(file).parent) for file in group}
    return folders.pop() if len(folders) == 1 else " ".join(group)


def _directory_programs(paths: Sequence[str]) -> list[list[str]]:
    """The programs to check: named files together, then one per directory of each folder.

    Returns a single group (the old behaviour) when a path is missing, cannot be read or a
    folder is empty, so `load` reports it as a usage error.
    """
    files: list[str] = []
    by_directory: dict[Path, list[str]] = {}
    for raw in paths:
        try:
            folder, found = scripts_at(raw)
        except PathError:
            return [list(paths)]
        if not folder:
            files.append(raw)
            continue
        for file in found:
            by_directory.setdefault(file.parent, []).append(str(file))
    return ([files] if files else []) + list(by_directory.values())


def check_modules(loaded: LoadResult) -> CheckResult:
    """Run every pass over already loaded modules."""
    diagnostics = list(loaded.diagnostics)
    sources = dict(loaded.sources)
    if loaded.usage_error is not None:
        return CheckResult(None, diagnostics, sources, loaded.usage_error)
    symbols = collect(loaded.modules, diagnostics)
    if check_depth(loaded.modules, symbols, MAX_DEFINITION_DEPTH, diagnostics):
        # (the passes below follow definitions recursively: they are not run on these)
        diagnostics.sort(key=sort_key)
        return CheckResult(None, _unique(diagnostics), sources)
    check_declarations(loaded.modules, symbols, diagnostics)
    check_event_names(symbols, diagnostics)
    lint_flows(symbols, diagnostics)
    check_when_triggers(symbols, diagnostics)
    check_templates(symbols, sources, diagnostics)
    diagnostics = _without_cascades(_unique(diagnostics))
    diagnostics.sort(key=sort_key)
    program = None
    if not any(d.is_error for d in diagnostics):
        program = build_program(loaded, symbols)
    checked = {
        module.path: sum(isinstance(decl, ast.FlowDecl) for decl in module.decls)
        for module in loaded.modules
    }
    return CheckResult(program, diagnostics, sources, checked=checked)


# "Something is missing" lints that a syntax error in the same file usually causes (the
# parser skipped the lines that held the channel, the body or the trigger).
_CASCADES = frozenset({"F005", "F006", "F012"})


def _without_cascades(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    broken = {d.span.file for d in diagnostics if d.code.startswith("S")}
    if not broken:
        return diagnostics
    return [d for d in diagnostics if not (d.code in _CASCADES and d.span.file in broken)]


def _unique(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Drop exact repeats (e.g. one template file used by two messages reads the same)."""
    seen: set[Diagnostic] = set()
    out = []
    for diagnostic in diagnostics:
        if diagnostic not in seen:
            seen.add(diagnostic)
            out.append(diagnostic)
    return out


def build_program(loaded: LoadResult, symbols: Symbols) -> Program:
    quiet = symbols.quiet_hours
    return Program(
        modules=tuple(loaded.modules),
        timezone=symbols.timezone.timezone.value if symbols.timezone is not None else "UTC",
        quiet_hours=(quiet.start, quiet.end) if quiet is not None else None,
        caps=tuple(
            Cap(channel=cap.channel.name, count=int(cap.count.value), per_seconds=cap.per.seconds)
            for cap in symbols.caps
        ),
        events=dict(symbols.events),
        traits=dict(symbols.traits),
        score_rules=tuple(symbols.score_rules),
        decay=symbols.decay,
        score_max=symbols.score_max.value.value if symbols.score_max is not None else None,
        metrics=dict(symbols.metrics),
        segments=dict(symbols.segments),
        messages=dict(symbols.messages),
        flows=dict(symbols.flows),
        message_channels=dict(symbols.message_channels),
        message_dirs=dict(symbols.message_dirs),
        trait_types=dict(symbols.trait_types),
        event_params={name: dict(params) for name, params in symbols.event_params.items()},
    )
