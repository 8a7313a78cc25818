"""Flow lints: mistakes in the shape of a flow rather than in its names or types.

- F001 split percents that do not sum to exactly 100% (to the hundredth of a percent, so
  `33.33% + 33.33% + 33.33%` = 99.99% is an error: the normative arm choice would then
  leave 0.01% of contacts in no arm; write `33.34%` for one of them);
- F002 steps after `exit` (or after an `if`/`split` whose every path exits): an error, since
  such a step is certainly a mistake (a step meant for another branch, or a stray `exit`);
- F011 two sends on the same path with nothing between them that lets time pass (`wait`,
  `wait until`, `wait for`, `check ... within`), also across `if`/`split` rejoins: a warning;
- F012 a flow with no trigger that no flow ever `enroll`s: a warning;
- F013 split arm names given twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from leadlang import ast
from leadlang.diagnostics import Diagnostic, Label
from leadlang.interpreter.resolve import Symbols

_TRIGGERS = (ast.OnTrigger, ast.WhenTrigger)


def lint_flows(symbols: Symbols, diagnostics: list[Diagnostic]) -> None:
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
        what = "`exit`" if isinstance(ender, ast.ExitStep) else "a block whose every path exits"
        self.diagnostics.append(
            Diagnostic(
                code="F002",
                severity="error",
                message="unreachable step",
                span=first.span.to(last.span) if first.span.line == last.span.line else first.span,
                labels=(Label(span=ender.span, message=f"the flow always ends at this {what}"),),
                help="remove the steps after it, or move the `exit` into a branch",
            )
        )

    def _split(self, split: ast.Split) -> None:
        hundredths = 0
        for arm in split.arms:
            hundredths += round(arm.percent.value * 10_000)
        if hundredths != 10_000:
            total = f"{hundredths / 100:.2f}".rstrip("0").rstrip(".")
            self.diagnostics.append(
                Diagnostic(
                    code="F001",
                    severity="error",
                    message=f"split `{split.name.name}` percents sum to {total}%, not 100%",
                    span=split.name.span,
                    help=_split_help(split, hundredths),
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


def _split_help(split: ast.Split, hundredths: int) -> str:
    diff = 10_000 - hundredths
    amount = f"{abs(diff) / 100:.2f}".rstrip("0").rstrip(".")
    how = "add" if diff > 0 else "remove"
    return (
        f"{how} {amount}% so every contact falls in exactly one arm "
        "(percents are exact to 0.01%: for thirds write 33.34%, 33.33%, 33.33%)"
    )


def _rejoin(results: list[tuple[_Pending, bool]]) -> tuple[_Pending, bool]:
    """Paths rejoin after an `if`/`split`: pending if any live path ends with a send."""
    live = [pending for pending, ends in results if not ends]
    if not live:
        return None, True
    return next((p for p in live if p is not None), None), False
