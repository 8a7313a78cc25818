"""Checked Program -> machine IR (plain JSON data, see `leadlang.ir`).

Each flow becomes a state machine. A state's id is the path of its step in the flow
(`s0`, `s3.then.1`, `s4.else.0`, `s5.b.0` for split arm `b`), so editing one branch does
not renumber the others. Every state names its successor in `next` (None: the flow is
done); branches point back to the step after them, so `if` and `split` rejoin.
"""

from __future__ import annotations

from typing import Any

from leadlang import ast, ir
from leadlang.interpreter.codegen import ExprCompiler, Scope, literal_value
from leadlang.interpreter.program import Program
from leadlang.interpreter.scope import normalize_event_name
from leadlang.interpreter.types import constant_seconds
from leadlang.limits import MAX_DURATION


def _fixed_seconds(expr: ast.Expr) -> float:
    """A header clause's constant duration (`goal ... within`, `reenter after`) in seconds,
    held to the representable range: a longer one (`99999999 * 521722w`, which no float or
    64-bit integer of the IR may carry) is as long as any span can be, so `within` it always
    holds and `reenter after` it never comes. A program is compiled only when `check` found
    no error, and `check` makes these durations constants (T012 "needs a fixed duration")
    longer than zero (T012: not zero, negative, or with no sign, NaN)."""
    found = constant_seconds(expr)
    assert found is not None and found > 0, "check (T012) lets only positive constants through"
    return min(MAX_DURATION, found)


def compile_program(program: Program) -> ir.JSON:
    exprs = ExprCompiler(program)
    flows = [_FlowCompiler(program, exprs, flow).compile() for flow in program.flows.values()]
    result: ir.JSON = {
        "settings": _settings(program),
        "score": _score(program, exprs),
        "traits": {
            name: literal_value(decl.default)
            for name, decl in program.traits.items()
            if decl.default is not None
        },
        "metrics": {name: exprs.compile(decl.expr) for name, decl in program.metrics.items()},
        "segments": {name: exprs.compile(decl.expr) for name, decl in program.segments.items()},
        "messages": {
            name: _message(program, decl, exprs) for name, decl in program.messages.items()
        },
        "flows": flows,
    }
    result["version"] = ir.content_hash(result)
    return result


def _settings(program: Program) -> ir.JSON:
    quiet = None
    if program.quiet_hours is not None:
        start, end = program.quiet_hours
        quiet = [_time_seconds(start), _time_seconds(end)]
    return {
        "timezone": program.timezone or "UTC",
        "quiet_hours": quiet,
        "caps": [
            {"channel": cap.channel, "count": cap.count, "per": cap.per_seconds}
            for cap in program.caps
        ],
    }


def _time_seconds(t: ast.Time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def _score(program: Program, exprs: ExprCompiler) -> ir.JSON:
    decay = None
    if program.decay is not None:
        decay = {
            "amount": program.decay.amount.value,
            "percent": program.decay.amount.percent,
            "every": program.decay.every.seconds,
        }
    return {
        "rules": [
            {
                "event": rule.event.name,
                "points": rule.points.value,
                "where": exprs.compile_where(rule.event.name, rule.where, in_flow=False),
            }
            for rule in program.score_rules
        ],
        "decay": decay,
        "max": program.score_max,
    }


def _message(program: Program, decl: ast.MessageDecl, exprs: ExprCompiler) -> ir.JSON:
    fields: dict[str, Any] = {}
    secrets: set[str] = set()
    for field in decl.fields:
        if field.key.name == "channel":
            continue
        value = field.value
        if (
            isinstance(value, ast.ObjectLit) or _secret_name(value) is not None
        ):  # headers, json: values may be expressions
            fields[field.key.name] = {"file": False, "value": _data(value, exprs, secrets)}
        else:
            fields[field.key.name] = {"file": field.from_file, "value": literal_value(value)}
    message: ir.JSON = {
        "channel": program.message_channels.get(decl.name.name, "email"),
        "dir": program.message_dirs.get(decl.name.name, "."),
        "fields": fields,
    }
    if secrets:
        message["secrets"] = sorted(secrets)
    return message


def _data(expr: ast.Expr, exprs: ExprCompiler, secrets: set[str]) -> Any:
    """A message's `headers` or `json` value: literals as JSON; `secret("NAME")` as the
    placeholder the delivery drivers fill in at each attempt (`{{secret:NAME}}`, kept from
    the template engine by a raw block: it is never rendered, stored resolved or shown); any
    other expression (`customer_id: id`) as `{"$expr": compiled}`, evaluated for the contact
    at the send."""
    if isinstance(expr, ast.ObjectLit):
        return {entry.key: _data(entry.value, exprs, secrets) for entry in expr.entries}
    if isinstance(expr, ast.ListLit):
        return [_data(item, exprs, secrets) for item in expr.items]
    if isinstance(expr, ast.Number | ast.String | ast.Bool):
        return expr.value
    name = _secret_name(expr)
    if name is not None:
        secrets.add(name)
        return "{% raw %}{{secret:" + name + "}}{% endraw %}"
    return {"$expr": exprs.compile(expr)}


def _secret_name(expr: ast.Expr) -> str | None:
    if isinstance(expr, ast.Call) and expr.func.name == "secret" and len(expr.args) == 1:
        arg = expr.args[0]
        if isinstance(arg, ast.String):
            return arg.value
    return None


class _FlowCompiler:
    def __init__(self, program: Program, exprs: ExprCompiler, flow: ast.FlowDecl) -> None:
        self.program = program
        self.exprs = exprs
        self.flow = flow
        self.states: dict[str, ir.JSON] = {}
        self.in_flow = Scope(in_flow=True)

    def compile(self) -> ir.JSON:
        triggers: list[ir.JSON] = []
        exits: list[ir.JSON] = []
        goals: list[ir.JSON] = []
        reenter: ir.JSON = {"mode": "never", "after": None}
        edits = "keep"
        for clause in self.flow.header:
            if isinstance(clause, ast.OnTrigger):
                triggers.append({"kind": "on", **self._event_match(clause.event, clause.where)})
            elif isinstance(clause, ast.WhenTrigger):
                triggers.append({"kind": "when", "cond": self._cond(clause.cond)})
            elif isinstance(clause, ast.ExitOn):
                exits.append({"kind": "on", **self._event_match(clause.event, clause.where)})
            elif isinstance(clause, ast.ExitWhen):
                exits.append({"kind": "when", "cond": self._cond(clause.cond)})
            elif isinstance(clause, ast.Goal):
                within = _fixed_seconds(clause.within) if clause.within is not None else None
                goals.append({**self._event_match(clause.event, clause.where), "within": within})
            elif isinstance(clause, ast.Reenter):
                after = _fixed_seconds(clause.after) if clause.after is not None else None
                reenter = {"mode": clause.mode, "after": after}
            elif isinstance(clause, ast.Edits):
                edits = clause.mode
        start = self._block(self.flow.steps, "s", None)
        body: ir.JSON = {
            "name": self.flow.name.name,
            "triggers": triggers,
            "exits": exits,
            "goals": goals,
            "reenter": reenter,
            "start": start,
            "states": self.states,
        }
        if edits != "keep":  # only then, so that the versions of existing flows stay as they were
            body["edits"] = edits
        return {**body, "version": ir.content_hash(body)}

    def _event_match(self, event: ast.EventRef, where: ast.Expr | None) -> ir.JSON:
        name = normalize_event_name(event.name)
        return {"event": name, "where": self.exprs.compile_where(name, where, in_flow=True)}

    def _cond(self, expr: ast.Expr) -> ir.JSON:
        return self.exprs.compile(expr, self.in_flow)

    def _block(
        self, steps: tuple[ast.Step, ...] | None, prefix: str, cont: str | None
    ) -> str | None:
        """Compile steps whose ids start with `prefix`; returns the first id (or `cont`)."""
        if not steps:
            return cont
        ids = [f"{prefix}{i}" if prefix == "s" else f"{prefix}.{i}" for i in range(len(steps))]
        for i, step in enumerate(steps):
            nxt = ids[i + 1] if i + 1 < len(steps) else cont
            self.states[ids[i]] = {"id": ids[i], "next": nxt, **self._step(step, ids[i], nxt)}
        return ids[0]

    def _step(self, step: ast.Step, sid: str, nxt: str | None) -> ir.JSON:
        if isinstance(step, ast.Send):
            message = step.message.name
            channel = self.program.message_channels.get(message)
            if channel is None:
                channel = step.channel.name if step.channel is not None else "email"
            with_ = None
            if step.with_ is not None:
                with_ = {e.key: self._cond(e.value) for e in step.with_.entries}
            return {"kind": "send", "message": message, "channel": channel, "with": with_}
        if isinstance(step, ast.Wait):
            return {"kind": "wait", "duration": self._cond(step.duration)}
        if isinstance(step, ast.WaitUntil):
            return {"kind": "wait_until", "target": self._cond(step.target)}
        if isinstance(step, ast.WaitFor):
            match = self._event_match(step.event, step.where)
            return {
                "kind": "wait_for",
                **match,
                "up_to": self._cond(step.up_to),
                "on_timeout": self._block(step.else_, f"{sid}.else", None),
            }
        if isinstance(step, ast.Check):
            return {
                "kind": "check",
                "cond": self._cond(step.cond),
                "within": self._cond(step.within) if step.within is not None else None,
                "on_else": self._block(step.else_, f"{sid}.else", None),
            }
        if isinstance(step, ast.If):
            cases = []
            for i, branch in enumerate(step.branches):
                label = "then" if i == 0 else f"elif{i}"
                target = self._block(branch.steps, f"{sid}.{label}", nxt)
                cases.append({"cond": self._cond(branch.cond), "target": target})
            otherwise = self._block(step.else_, f"{sid}.else", nxt)
            return {"kind": "branch", "cases": cases, "otherwise": otherwise}
        if isinstance(step, ast.Split):
            arms = []
            for i, arm in enumerate(step.arms):
                name = arm.name.name if arm.name is not None else chr(ord("a") + i)
                arms.append(
                    {
                        "name": name,
                        # `50%` is 0.5 already; a bare `50` is read as percent too.
                        "percent": float(
                            arm.percent.value if arm.percent.percent else arm.percent.value / 100
                        ),
                        "target": self._block(arm.steps, f"{sid}.{name}", nxt),
                    }
                )
            return {"kind": "split", "name": step.name.name, "arms": arms}
        if isinstance(step, ast.Tag):
            return {"kind": "tag", "tag": self._cond(step.tag)}
        if isinstance(step, ast.Untag):
            return {"kind": "untag", "tag": self._cond(step.tag)}
        if isinstance(step, ast.SetTrait):
            return {"kind": "set", "trait": step.trait.name, "value": self._cond(step.value)}
        if isinstance(step, ast.ScoreAdjust):
            return {"kind": "score", "points": step.points.value}
        if isinstance(step, ast.Enroll):
            return {"kind": "enroll", "flow": step.flow.name}
        return {"kind": "exit"}
