"""Flow lints: mistakes in the shape of a flow rather than in its names or types.

- F001 split percents that do not sum to exactly 100%, compared as the decimals written
  (`33.33% + 33.33% + 33.33%` = 99.99% is an error: the normative arm choice would then
  leave 0.01% of contacts in no arm; write `33.34%` for one of them; 100.004% is one too);
- F002 steps after `exit` (or after an `if`/`split` whose every path exits): an error, since
  such a step is certainly a mistake (a step meant for another branch, or a stray `exit`);
- F011 two sends on the same path with nothing between them that lets time pass (`wait`,
  `wait until`, `wait for`, `check ... within`), also across `if`/`split` rejoins: a warning;
- F012 a flow with no trigger that no flow ever `enroll`s: a warning;
- F013 split arm names given twice;
- F020 flows that `enroll` each other in a cycle at the same instant, every one of them
  `reenter always`, with no wait and no condition on the way: a chain that certainly never
  settles, an error (LANGUAGE.md section 7); F022 the same cycle through a condition or past
  a path that waits, which may settle: a warning (simulate stops it if it does not);
- F021 `quiet hours A to A`: an empty window, so nothing is ever held back (a warning).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

from leadlang import ast
from leadlang.diagnostics import Diagnostic, Label
from leadlang.interpreter.resolve import Symbols

_TRIGGERS = (ast.OnTrigger, ast.WhenTrigger)


def lint_flows(symbols: Symbols, diagnostics: list[Diagnostic]) -> None:
    _lint_quiet_hours(symbols, diagnostics)
    _lint_enroll_cycles(symbols, diagnostics)
    for flow in symbols.flows.values():
        _FlowLinter(diagnostics).block(flow.steps, None)
        if not any(isinstance(c, _TRIGGERS) for c in flow.header) and (
            flow.name.name not in symbols.enrolled
        ):
            diagnostics.append(
                Diagnostic(
                    code="F012",
                    severity="warning",
                    message=f"flow `{flow.name.name}` is never entered",
                    span=flow.name.span,
                    help="give it a trigger (`on EVENT` or `when COND`), "
                    f"or `enroll {flow.name.name}` from another flow",
                )
            )


# The state carried along a path: the last send with no wait since, or None.
_Pending = ast.Send | None


class _FlowLinter:
    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics

    def block(self, steps: Sequence[ast.Step], pending: _Pending) -> tuple[_Pending, bool]:
        """Lint a block; returns (pending send at its end, does every path end the flow)."""
        for index, step in enumerate(steps):
            pending, ends = self.step(step, pending)
            if ends:
                if index + 1 < len(steps):
                    self._unreachable(steps[index + 1], steps[-1], step)
                    self.block(steps[index + 1 :], None)  # still lint what follows
                return None, True
        return pending, False

    def step(self, step: ast.Step, pending: _Pending) -> tuple[_Pending, bool]:
        if isinstance(step, ast.ExitStep):
            return None, True
        if isinstance(step, ast.Send):
            if pending is not None:
                self.diagnostics.append(
                    Diagnostic(
                        code="F011",
                        severity="warning",
                        message=f"`{step.message.name}` is sent right after "
                        f"`{pending.message.name}`, with no wait between",
                        span=step.span,
                        labels=(Label(span=pending.span, message="previous send"),),
                        help="contacts get both at once: add a `wait` (or `check ... within`) "
                        "between them",
                    )
                )
            return step, False
        if isinstance(step, ast.Wait | ast.WaitUntil):
            return None, False
        if isinstance(step, ast.WaitFor):
            if step.else_ is not None:
                self.block(step.else_, None)
            return None, False
        if isinstance(step, ast.Check):
            after = None if step.within is not None else pending
            if step.else_ is not None:
                self.block(step.else_, after)
            return after, False
        if isinstance(step, ast.If):
            results = [self.block(branch.steps, pending) for branch in step.branches]
            if step.else_ is not None:
                results.append(self.block(step.else_, pending))
            else:
                results.append((pending, False))
            return _rejoin(results)
        if isinstance(step, ast.Split):
            self._split(step)
            return _rejoin([self.block(arm.steps, pending) for arm in step.arms])
        return pending, False

    def _unreachable(self, first: ast.Step, last: ast.Step, ender: ast.Step) -> None:
        if isinstance(ender, ast.ExitStep):
            why = "the flow always ends at this `exit`"
        else:
            why = "the flow always ends in this block: every path exits"
        self.diagnostics.append(
            Diagnostic(
                code="F002",
                severity="error",
                message="unreachable step",
                span=first.span.to(last.span) if first.span.line == last.span.line else first.span,
                labels=(Label(span=ender.span, message=why),),
                help="remove the steps after it, or move the `exit` into a branch",
            )
        )

    def _split(self, split: ast.Split) -> None:
        total = sum((arm_share(arm.percent) for arm in split.arms), Decimal(0))
        if total != 1:
            self.diagnostics.append(
                Diagnostic(
                    code="F001",
                    severity="error",
                    message=f"split `{split.name.name}` percents sum to {_percent(total)}%, "
                    "not 100%",
                    span=split.name.span,
                    help=_split_help(total),
                )
            )
        seen: dict[str, ast.Ident] = {}
        for arm in split.arms:
            if arm.name is None:
                continue
            first = seen.get(arm.name.name)
            if first is not None:
                self.diagnostics.append(
                    Diagnostic(
                        code="F013",
                        severity="error",
                        message=f"split arm `{arm.name.name}` is named twice",
                        span=arm.name.span,
                        labels=(Label(span=first.span, message="first named here"),),
                        help="each arm of a split needs its own name",
                    )
                )
            else:
                seen[arm.name.name] = arm.name


def arm_share(percent: ast.Number) -> Decimal:
    """An arm's share of contacts, exactly as written (`33.34%` is 0.3334, with no float
    rounding; a bare `50` is read as a percent too)."""
    share = Decimal(repr(percent.value))
    return share if percent.percent else share / 100


def _percent(share: Decimal) -> str:
    text = f"{share * 100:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _split_help(total: Decimal) -> str:
    diff = 1 - total
    how = "add" if diff > 0 else "remove"
    return (
        f"{how} {_percent(abs(diff))}% so every contact falls in exactly one arm "
        "(for thirds write 33.34%, 33.33%, 33.33%)"
    )


def _rejoin(results: list[tuple[_Pending, bool]]) -> tuple[_Pending, bool]:
    """Paths rejoin after an `if`/`split`: pending if any live path ends with a send."""
    live = [pending for pending, ends in results if not ends]
    if not live:
        return None, True
    return next((p for p in live if p is not None), None), False


def _lint_quiet_hours(symbols: Symbols, diagnostics: list[Diagnostic]) -> None:
    quiet = symbols.quiet_hours
    if quiet is None:
        return
    start, end = quiet.start, quiet.end
    if (start.hour, start.minute, start.second) != (end.hour, end.minute, end.second):
        return
    diagnostics.append(
        Diagnostic(
            code="F021",
            severity="warning",
            message="quiet hours start and end at the same time: the window is empty",
            span=quiet.span,
            help="no send is ever held back; give the window a length "
            "(e.g. `quiet hours 21:00 to 08:00`), or remove the setting",
        )
    )


# ---------------------------------------------------------------- enroll cycles


def _lint_enroll_cycles(symbols: Symbols, diagnostics: list[Diagnostic]) -> None:
    """F020 (an error): a cycle of flows, each `reenter always`, none with any wait, each
    enrolling the next on every run before anything that may end it (an `exit`, a `check`):
    at one instant it certainly never stops. F022 (a warning): such a cycle through an
    `enroll` under a condition (`if`, a `check`'s `else`, a split arm), or past a path that
    waits, which may settle when the condition turns: each flow enrolls the next with no wait
    before its `enroll`, and some path runs to its end with no wait (so it has ended by the
    time the next one runs, and can be entered again)."""
    certain: dict[str, list[ast.Enroll]] = {}
    possible: dict[str, list[ast.Enroll]] = {}
    for name, flow in symbols.flows.items():
        if not _reenters_always(flow):
            continue
        found: list[ast.Enroll] = []
        if _instant_enrolls(flow.steps, found):
            possible[name] = _to_flows(found, name, symbols)
        if not _waits(flow.steps):
            certain[name] = _to_flows(_certain_enrolls(flow.steps), name, symbols)
    reported: set[frozenset[str]] = set()
    for edges, code in ((certain, "F020"), (possible, "F022")):
        for start in edges:
            for cycle in _cycles_from(start, edges):
                key = frozenset(step.flow.name for step in cycle)
                if key in reported:
                    continue
                reported.add(key)
                diagnostics.append(_cycle_diagnostic(code, start, cycle))


def _to_flows(found: list[ast.Enroll], name: str, symbols: Symbols) -> list[ast.Enroll]:
    return [step for step in found if step.flow.name != name and step.flow.name in symbols.flows]


def _cycle_diagnostic(code: str, start: str, cycle: list[ast.Enroll]) -> Diagnostic:
    path = " -> ".join(f"`{n}`" for n in [start, *(s.flow.name for s in cycle)])
    fix = (
        "put a `wait` before one `enroll`, or give one of these flows `reenter after D` or "
        "`reenter never`"
    )
    if code == "F020":
        message = f"flows enroll each other in a cycle that never settles: {path}"
        help = f"each enters the next at the same instant, forever; {fix}"
    else:
        message = f"flows may enroll each other in a cycle that never settles: {path}"
        help = (
            "unless a condition on the way turns, each enters the next at the same instant, "
            f"forever (simulate stops it and reports a `stop`); {fix}"
        )
    return Diagnostic(
        code=code,
        severity="error" if code == "F020" else "warning",
        message=message,
        span=cycle[0].span,
        labels=tuple(
            Label(span=step.span, message="and this enrolls the next") for step in cycle[1:]
        ),
        help=help,
    )


def _waits(steps: Sequence[ast.Step]) -> bool:
    """Whether some step, at any depth, may let time pass (so the flow may still be running
    when the cycle comes back to it)."""
    return _any_step(
        steps,
        lambda step: (
            isinstance(step, ast.Wait | ast.WaitUntil | ast.WaitFor)
            or (isinstance(step, ast.Check) and step.within is not None)
        ),
    )


def _any_step(steps: Sequence[ast.Step], hit: Callable[[ast.Step], bool]) -> bool:
    """Whether `hit` holds for some step at any depth (in `if` branches, split arms and a
    `check`'s else steps)."""
    todo = list(steps)
    while todo:
        step = todo.pop()
        if hit(step):
            return True
        if isinstance(step, ast.Check):
            todo.extend(step.else_ or ())
        elif isinstance(step, ast.If):
            todo.extend(x for b in step.branches for x in b.steps)
            todo.extend(step.else_ or ())
        elif isinstance(step, ast.Split):
            todo.extend(x for arm in step.arms for x in arm.steps)
    return False


def _certain_enrolls(steps: Sequence[ast.Step]) -> list[ast.Enroll]:
    """The top-level `enroll` steps that every run reaches: those before the first step that
    may end the flow early (an `exit`, a `check`, or an `if` or split that holds one)."""
    found: list[ast.Enroll] = []
    for step in steps:
        if isinstance(step, ast.Enroll):
            found.append(step)
        elif isinstance(step, ast.ExitStep | ast.Check) or (
            isinstance(step, ast.If | ast.Split) and _may_end(step)
        ):
            break
    return found


def _may_end(step: ast.If | ast.Split) -> bool:
    return _any_step([step], lambda node: isinstance(node, ast.ExitStep | ast.Check))


def _reenters_always(flow: ast.FlowDecl) -> bool:
    return any(isinstance(c, ast.Reenter) and c.mode == "always" for c in flow.header)


def _cycles_from(start: str, edges: dict[str, list[ast.Enroll]]) -> list[list[ast.Enroll]]:
    """One shortest cycle back to `start` through `edges` (breadth first), if any."""
    previous: dict[str, tuple[str, ast.Enroll]] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for name in frontier:
            for step in edges.get(name, ()):
                target = step.flow.name
                if target == start:
                    cycle = [step]
                    while name != start:
                        name, back = previous[name]
                        cycle.append(back)
                    return [cycle[::-1]]
                if target not in previous and target in edges:
                    previous[target] = (name, step)
                    following.append(target)
        frontier = following
    return []


def _instant_enrolls(steps: Sequence[ast.Step], found: list[ast.Enroll]) -> bool:
    """Collect the `enroll` steps reached from the start with nothing that lets time pass
    before them; returns whether some path runs through the block that way (to its end, or
    to an `exit`, which ends the flow as well)."""
    for step in steps:
        if isinstance(step, ast.Enroll):
            found.append(step)
        elif isinstance(step, ast.ExitStep):
            return True
        elif isinstance(step, ast.Wait | ast.WaitUntil | ast.WaitFor):
            return False
        elif isinstance(step, ast.Check) and step.else_ is not None:
            # the condition may hold now or not: both paths may run at once
            _instant_enrolls(step.else_, found)
        elif isinstance(step, ast.If):
            blocks = [b.steps for b in step.branches] + [step.else_ or ()]
            if not any([_instant_enrolls(block, found) for block in blocks]):
                return False
        elif isinstance(step, ast.Split) and not any(
            [_instant_enrolls(arm.steps, found) for arm in step.arms]
        ):
            return False
    return True
