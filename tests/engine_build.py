"""Build checked Programs from AST nodes in tests, without the parser or checker.

Only what the engine tests need: terse constructors with a dummy span.
"""

from __future__ import annotations

from typing import Any

from leadlang import ast
from leadlang.interpreter.program import Cap, Program
from leadlang.source import Span

S = Span("<test>", 1, 1, 1, 1)


def num(value: float, percent: bool = False) -> ast.Number:
    return ast.Number(value=value, span=S, percent=percent)


def s(value: str) -> ast.String:
    return ast.String(value=value, span=S)


def name(value: str) -> ast.Name:
    return ast.Name(name=value, span=S)


def ident(value: str) -> ast.Ident:
    return ast.Ident(name=value, span=S)


def dur(seconds: int) -> ast.Duration:
    return ast.Duration(seconds=seconds, text=f"{seconds}s", span=S)


def time(hour: int, minute: int = 0) -> ast.Time:
    return ast.Time(hour=hour, minute=minute, span=S)


def b(op: Any, left: ast.Expr, right: ast.Expr) -> ast.Binary:
    return ast.Binary(op=op, left=left, right=right, span=S, op_span=S)


def attr(obj: ast.Expr, field: str) -> ast.Attr:
    return ast.Attr(obj=obj, name=ident(field), span=S)


def call(
    func: str, *args: ast.Expr, where: ast.Expr | None = None, within: ast.Expr | None = None
) -> ast.Call:
    return ast.Call(func=ident(func), args=args, span=S, where=where, within=within)


def ev(event: str) -> ast.EventRef:
    return ast.EventRef(name=event, span=S)


def on(event: str, where: ast.Expr | None = None) -> ast.OnTrigger:
    return ast.OnTrigger(event=ev(event), where=where, span=S)


def when(cond: ast.Expr) -> ast.WhenTrigger:
    return ast.WhenTrigger(cond=cond, span=S)


def send(message: str) -> ast.Send:
    return ast.Send(channel=None, message=ident(message), with_=None, span=S)


def wait(seconds: int) -> ast.Wait:
    return ast.Wait(duration=dur(seconds), span=S)


def flow(flow_name: str, header: list[Any], steps: list[Any]) -> ast.FlowDecl:
    return ast.FlowDecl(name=ident(flow_name), header=tuple(header), steps=tuple(steps), span=S)


def message(msg_name: str, channel: str = "email") -> ast.MessageDecl:
    field = ast.MessageField(key=ident("channel"), value=name(channel), from_file=False, span=S)
    return ast.MessageDecl(name=ident(msg_name), fields=(field,), span=S)


def rule(event: str, points: float, where: ast.Expr | None = None) -> ast.ScoreRule:
    return ast.ScoreRule(event=ev(event), points=num(points), where=where, span=S)


def program(
    *,
    flows: list[ast.FlowDecl] = (),  # type: ignore[assignment]
    messages: dict[str, str] | None = None,
    rules: list[ast.ScoreRule] = (),  # type: ignore[assignment]
    decay: tuple[float, int, bool] | None = None,
    score_max: float | None = None,
    metrics: dict[str, ast.Expr] | None = None,
    segments: dict[str, ast.Expr] | None = None,
    timezone: str = "UTC",
    quiet_hours: tuple[ast.Time, ast.Time] | None = None,
    caps: list[Cap] = (),  # type: ignore[assignment]
    events: dict[str, dict[str, str]] | None = None,
) -> Program:
    messages = messages or {}
    decay_node = None
    if decay is not None:
        amount, every, percent = decay
        decay_node = ast.Decay(amount=num(amount, percent), every=dur(every), span=S)
    return Program(
        modules=(),
        timezone=timezone,
        quiet_hours=quiet_hours,
        caps=tuple(caps),
        events={
            n: ast.EventDecl(
                name=ident(n),
                params=tuple(
                    ast.Param(name=ident(p), type=ast.TypeRef(name=t, span=S), span=S)
                    for p, t in params.items()
                ),
                span=S,
            )
            for n, params in (events or {}).items()
        },
        score_rules=tuple(rules),
        decay=decay_node,
        score_max=score_max,
        metrics={
            n: ast.MetricDecl(name=ident(n), expr=e, span=S) for n, e in (metrics or {}).items()
        },
        segments={
            n: ast.SegmentDecl(name=ident(n), expr=e, span=S) for n, e in (segments or {}).items()
        },
        messages={n: message(n, ch) for n, ch in messages.items()},
        flows={f.name.name: f for f in flows},
        message_channels=dict(messages),
    )
