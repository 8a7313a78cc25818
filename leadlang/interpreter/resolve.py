"""Name tables for a whole program, duplicate definitions, and the unknown-event rule.

`collect` gathers the declarations of every loaded module into a `Symbols` table (reporting
names defined twice, N009/N012/N013); the type pass then records every event reference
(`note_event`), and `check_event_names` applies the event rule once everything is known:

    Event declarations are optional and events are open-ended (as in Segment), so an
    undeclared event is accepted, unless its name is one edit away (a letter added, missing
    or changed, or two letters swapped) from a declared or built-in event, or from an
    undeclared event used more often: then it is a misspelling (N002). Names that differ
    only in digits (`step1`, `step2`) are a numbered series, and one edit in a name under
    5 letters is too big a change to call it a typo: neither is reported.

Suggestions ("did you mean") use difflib, and only once a problem is found.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from pathlib import PurePath
from typing import Any

import attrs

from leadlang import ast
from leadlang.diagnostics import Diagnostic, Label, with_article
from leadlang.interpreter import scope
from leadlang.source import Span

TYPE_NAMES: tuple[str, ...] = (
    "number",
    "text",
    "bool",
    "datetime",
    "duration",
    "time",
    "list",
    "object",
)


def did_you_mean(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """`did you mean `x`?` for the closest candidate, or None."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=cutoff)
    return f"did you mean `{matches[0]}`?" if matches else None


@attrs.define
class EventUse:
    name: str
    span: Span


@attrs.define
class Symbols:
    """Every name a script defines, across all loaded modules (first definition wins)."""

    events: dict[str, ast.EventDecl] = attrs.field(factory=dict)
    event_params: dict[str, dict[str, str]] = attrs.field(factory=dict)  # declared + built-in
    traits: dict[str, ast.TraitDecl] = attrs.field(factory=dict)
    trait_types: dict[str, str] = attrs.field(factory=dict)  # built-in + declared ("unknown")
    metrics: dict[str, ast.MetricDecl] = attrs.field(factory=dict)
    segments: dict[str, ast.SegmentDecl] = attrs.field(factory=dict)
    messages: dict[str, ast.MessageDecl] = attrs.field(factory=dict)
    message_dirs: dict[str, str] = attrs.field(factory=dict)
    message_channels: dict[str, str] = attrs.field(factory=dict)
    flows: dict[str, ast.FlowDecl] = attrs.field(factory=dict)
    score_rules: list[ast.ScoreRule] = attrs.field(factory=list)
    decay: ast.Decay | None = None
    score_max: ast.ScoreMax | None = None
    timezone: ast.TimezoneSetting | None = None
    quiet_hours: ast.QuietHoursSetting | None = None
    # Several caps on one channel all apply (a daily and a weekly one, typically).
    caps: list[ast.CapSetting] = attrs.field(factory=list)
    # Filled by the type pass.
    event_uses: list[EventUse] = attrs.field(factory=list)
    enrolled: set[str] = attrs.field(factory=set)
    send_keys: dict[str, set[str]] = attrs.field(factory=dict)  # message -> `with` keys

    def note_event(self, name: str, span: Span) -> None:
        self.event_uses.append(EventUse(name, span))

    def value_names(self, in_flow: bool) -> list[str]:
        """Every name a condition may read (for suggestions)."""
        names = [*scope.BUILTIN_NAMES, *self.trait_types, *self.metrics, *self.segments]
        if in_flow:
            names += scope.MESSAGE_STATUSES
        return names


def _duplicate(
    code: str, what: str, name: str, span: Span, first: Span, diagnostics: list[Diagnostic]
) -> None:
    if not name:  # a setting (N013): one value per program, whichever file gives it
        message, label = f"{what} is set twice", "first set here"
        help = f"a program has one {what}, even across files: remove one of them"
    elif code == "N012":  # a property of one event declaration
        message, label = f"{what} `{name}` is declared twice", "first declared here"
        help = "declare each property of an event once: remove or rename one of them"
    else:
        message, label = f"{what} `{name}` is defined twice", "first defined here"
        help = "a name is global across all loaded files: rename one of them or remove it"
    diagnostics.append(
        Diagnostic(
            code=code,
            severity="error",
            message=message,
            span=span,
            labels=(Label(span=first, message=label),),
            help=help,
        )
    )


def _builtin_clash(kind: str, name: str, span: Span, diagnostics: list[Diagnostic]) -> None:
    diagnostics.append(
        Diagnostic(
            code="N009",
            severity="error",
            message=f"`{name}` is already a built-in {kind}",
            span=span,
            help=f"built-in {kind}s exist in every script: use it without declaring it",
        )
    )


def _keyword_name(ident: ast.Ident, what: str, diagnostics: list[Diagnostic]) -> bool:
    """Report a declaration named with a reserved word; True when it was one."""
    if ident.name not in scope.KEYWORDS:
        return False
    diagnostics.append(
        Diagnostic(
            code="N018",
            severity="error",
            message=f"`{ident.name}` is a keyword and cannot name {with_article(what)}",
            span=ident.span,
            help=f"choose another name, e.g. `{ident.name}_{what}`",
        )
    )
    return True


def collect(modules: Iterable[ast.Module], diagnostics: list[Diagnostic]) -> Symbols:
    """Build the name tables, reporting every name or setting defined twice."""
    symbols = Symbols()
    symbols.event_params = {name: dict(props) for name, props in scope.BUILTIN_EVENTS.items()}
    symbols.trait_types = dict(scope.BUILTIN_TRAITS)
    # One namespace for every declared name (LANGUAGE.md section 3), whatever its kind:
    # name -> (kind, where first defined).
    names: dict[str, tuple[str, Span]] = {}

    def fresh(name: str, span: Span, what: str) -> bool:
        """Register `name`; N009 when any declaration has it already."""
        first = names.get(name)
        if first is None:
            names[name] = (what, span)
            return True
        kind, where = first
        if kind == what:
            _duplicate("N009", what, name, span, where, diagnostics)
        else:
            diagnostics.append(
                Diagnostic(
                    code="N009",
                    severity="error",
                    message=f"`{name}` is already the name of {with_article(kind)}",
                    span=span,
                    labels=(Label(span=where, message=f"the {kind} is defined here"),),
                    help=f"a name is global across all kinds and files ({what}s, {kind}s, ...): "
                    f"rename the {what} or the {kind}",
                )
            )
        return False

    def value_name(ident: ast.Ident, what: str) -> bool:
        name = ident.name
        if name in scope.BUILTIN_TRAITS:
            _builtin_clash("trait", name, ident.span, diagnostics)
            return False
        if name in scope.BUILTIN_NAMES or name == "event":
            _builtin_clash("name", name, ident.span, diagnostics)
            return False
        if _keyword_name(ident, what, diagnostics):
            return False
        return fresh(name, ident.span, what)

    def own_name(table: dict[str, Any], decl: ast.MessageDecl | ast.FlowDecl, what: str) -> bool:
        """Register a message or a flow."""
        name = decl.name.name
        if _keyword_name(decl.name, what, diagnostics):
            return False
        if not fresh(name, decl.name.span, what):
            return False
        table[name] = decl
        return True

    for module in modules:
        folder = str(PurePath(module.path).parent)
        for decl in module.decls:
            if isinstance(decl, ast.EventDecl):
                _collect_event(symbols, decl, diagnostics, fresh)
            elif isinstance(decl, ast.TraitDecl):
                if value_name(decl.name, "trait"):
                    symbols.traits[decl.name.name] = decl
            elif isinstance(decl, ast.MetricDecl):
                if value_name(decl.name, "metric"):
                    symbols.metrics[decl.name.name] = decl
            elif isinstance(decl, ast.SegmentDecl):
                if value_name(decl.name, "segment"):
                    symbols.segments[decl.name.name] = decl
            elif isinstance(decl, ast.MessageDecl):
                if own_name(symbols.messages, decl, "message"):
                    symbols.message_dirs[decl.name.name] = folder
            elif isinstance(decl, ast.FlowDecl):
                own_name(symbols.flows, decl, "flow")
            elif isinstance(decl, ast.ScoreBlock):
                _collect_score(symbols, decl, diagnostics)
            elif isinstance(decl, ast.Settings):
                _collect_settings(symbols, decl, diagnostics)
    return symbols


def _collect_event(
    symbols: Symbols,
    decl: ast.EventDecl,
    diagnostics: list[Diagnostic],
    fresh: Callable[[str, Span, str], bool],
) -> None:
    name = scope.normalize_event_name(decl.name.name)
    if not name:  # `event "!!!"`: S005 already, and no name to clash with another such
        return
    if _keyword_name(decl.name, "event", diagnostics):
        return
    if name in scope.BUILTIN_EVENTS:
        _builtin_clash("event", name, decl.name.span, diagnostics)
        return
    if not fresh(name, decl.name.span, "event"):
        return
    params: dict[str, str] = {}
    seen: dict[str, Span] = {}
    for param in decl.params:
        pname = param.name.name
        if pname in seen:
            _duplicate("N012", "property", pname, param.name.span, seen[pname], diagnostics)
            continue
        seen[pname] = param.name.span
        params[pname] = param.type.name if param.type.name in TYPE_NAMES else "unknown"
    symbols.events[name] = decl
    symbols.event_params[name] = params


def _collect_score(symbols: Symbols, block: ast.ScoreBlock, diagnostics: list[Diagnostic]) -> None:
    symbols.score_rules.extend(block.rules)
    for decay in block.decays:
        if symbols.decay is not None:
            _duplicate("N013", "`decay`", "", decay.span, symbols.decay.span, diagnostics)
        else:
            symbols.decay = decay
    for score_max in block.maxes:
        if symbols.score_max is not None:
            _duplicate("N013", "`max`", "", score_max.span, symbols.score_max.span, diagnostics)
        else:
            symbols.score_max = score_max


def _collect_settings(
    symbols: Symbols, settings: ast.Settings, diagnostics: list[Diagnostic]
) -> None:
    for item in settings.items:
        if isinstance(item, ast.TimezoneSetting):
            if symbols.timezone is not None:
                _duplicate("N013", "`timezone`", "", item.span, symbols.timezone.span, diagnostics)
            else:
                symbols.timezone = item
        elif isinstance(item, ast.QuietHoursSetting):
            if symbols.quiet_hours is not None:
                first = symbols.quiet_hours.span
                _duplicate("N013", "`quiet hours`", "", item.span, first, diagnostics)
            else:
                symbols.quiet_hours = item
        elif isinstance(item, ast.CapSetting):
            symbols.caps.append(item)


# ---------------------------------------------------------------- the event rule


def _one_edit_variants(name: str) -> list[str]:
    """The name and every single-letter deletion of it.

    Two names share a variant exactly when they are one insertion, deletion, substitution
    or transposition apart (or two deletions, e.g. `abcd`/`bcde`): close enough for a typo,
    and linear to index, unlike pairwise difflib.
    """
    return [name, *(name[:i] + name[i + 1 :] for i in range(len(name)))]


# One edit in a name shorter than this is too big a change to call it a typo (`ab`, `ac`).
MIN_TYPO_LENGTH = 5


def _without_digits(name: str) -> str:
    """Names that differ only in digits (`ev1`, `ev12`) are numbered series, not typos."""
    return name.translate(_DIGITS)


_DIGITS = str.maketrans("", "", "0123456789")


def check_event_names(symbols: Symbols, diagnostics: list[Diagnostic]) -> None:
    """Report undeclared event names that look like misspellings of better-known ones."""
    known = set(symbols.event_params)
    counts: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    for position, use in enumerate(symbols.event_uses):
        if use.name not in known:
            counts[use.name] = counts.get(use.name, 0) + 1
            first_seen.setdefault(use.name, position)
    if not counts:
        return

    def rank(name: str) -> tuple[int, int]:
        """Higher is better known: declared and built-in events above any used name."""
        if name in known:
            return (1 << 62, 0)
        return (counts[name], -first_seen[name])

    index: dict[str, set[str]] = {}
    for name in (*known, *counts):
        for variant in _one_edit_variants(name):
            index.setdefault(variant, set()).add(name)

    misspelt: dict[str, str] = {}
    for name in counts:
        matches: set[str] = set()
        for variant in _one_edit_variants(name):
            matches |= index.get(variant, set())
        matches.discard(name)
        skeleton = _without_digits(name)
        better = [
            m
            for m in matches
            if rank(m) > rank(name)
            and _without_digits(m) != skeleton
            and min(len(m), len(name)) >= MIN_TYPO_LENGTH
        ]
        if better:
            best = max(
                better,
                key=lambda m: (difflib.SequenceMatcher(None, name, m).ratio(), rank(m), m),
            )
            misspelt[name] = best
    for use in symbols.event_uses:
        target = misspelt.get(use.name)
        if target is None:
            continue
        how = "declared" if target in symbols.events else (
            "built-in" if target in scope.BUILTIN_EVENTS else "used elsewhere"
        )  # fmt: skip
        diagnostics.append(
            Diagnostic(
                code="N002",
                severity="error",
                message=f"unknown event `{use.name}`",
                span=use.span,
                help=f"did you mean `{target}` ({how})? If `{use.name}` is a new event, "
                f"declare it: `event {use.name}(...)`",
            )
        )
