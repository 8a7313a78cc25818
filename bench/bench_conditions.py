"""Benchmark compiled conditions: generated code vs a hand-written lambda vs rule-engine.

The condition is the design card's `score > 50 and propensity < 60%`, evaluated over the
same 1,000 contacts' values by each runner in the same process. Prints evals/s and the
ratios (targets: generated >= 0.7x hand-written, >= 10x rule_engine).

    python bench/bench_conditions.py
"""

from __future__ import annotations

import random
import time
from typing import Any

import rule_engine

from leadlang import ast
from leadlang.interpreter.codegen import ExprCompiler
from leadlang.interpreter.program import Program
from leadlang.runtime.values import compile_expr
from leadlang.source import NO_SPAN

ROUNDS = 200


class Values:
    """An evaluation context with precomputed values (what the engine's context returns)."""

    __slots__ = ("_metrics", "_score")

    def __init__(self, score: float, propensity: float | None) -> None:
        self._score = score
        self._metrics = {"propensity": propensity}

    def score(self) -> float:
        return self._score

    def metric(self, name: str) -> Any:
        return self._metrics[name]


def card_condition() -> ast.Expr:
    def binary(op: Any, left: ast.Expr, right: ast.Expr) -> ast.Binary:
        return ast.Binary(op=op, left=left, right=right, span=NO_SPAN, op_span=NO_SPAN)

    score = ast.Name(name="score", span=NO_SPAN)
    propensity = ast.Name(name="propensity", span=NO_SPAN)
    return binary(
        "and",
        binary(">", score, ast.Number(value=50, span=NO_SPAN)),
        binary("<", propensity, ast.Number(value=0.6, span=NO_SPAN, percent=True)),
    )


def timed(fn: Any, items: list[Any]) -> float:
    started = time.perf_counter()
    for _ in range(ROUNDS):
        for item in items:
            fn(item)
    return ROUNDS * len(items) / (time.perf_counter() - started)


def main() -> None:
    rng = random.Random(3)
    rows = [(rng.uniform(0, 100), rng.random()) for _ in range(1000)]
    contexts = [Values(s, p) for s, p in rows]
    dicts = [{"score": s, "propensity": p} for s, p in rows]

    metric = ast.MetricDecl(
        name=ast.Ident(name="propensity", span=NO_SPAN),
        expr=ast.Number(value=0, span=NO_SPAN),
        span=NO_SPAN,
    )
    compiled = ExprCompiler(Program(modules=(), metrics={"propensity": metric})).compile(
        card_condition()
    )
    generated = compile_expr(compiled["src"])
    hand = lambda c, p: c.score() > 50 and c.metric("propensity") < 0.6  # noqa: E731
    rule = rule_engine.Rule("score > 50 and propensity < 0.6")

    assert [bool(generated(c, None)) for c in contexts] == [bool(hand(c, None)) for c in contexts]
    assert [bool(generated(c, None)) for c in contexts] == [rule.matches(d) for d in dicts]

    gen_rate = timed(lambda c: generated(c, None), contexts)
    hand_rate = timed(lambda c: hand(c, None), contexts)
    rule_rate = timed(rule.matches, dicts[:100])
    print("condition: score > 50 and propensity < 60%")
    print(f"  generated code : {gen_rate:>12,.0f} evals/s")
    print(f"  hand-written   : {hand_rate:>12,.0f} evals/s")
    print(f"  rule_engine    : {rule_rate:>12,.0f} evals/s")
    print(f"  generated / hand-written = {gen_rate / hand_rate:.2f}x (target >= 0.7x)")
    print(f"  generated / rule_engine  = {gen_rate / rule_rate:.1f}x (target >= 10x)")
    print("generated source:")
    print("  " + compiled["src"].strip().replace("\n", "\n  "))


if __name__ == "__main__":
    main()
