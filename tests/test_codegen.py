"""Compiled conditions follow the value semantics of LANGUAGE.md section 4."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from engine_build import attr, b, call, dur, name, num, program, s
from hypothesis import given, settings
from hypothesis import strategies as st

from leadlang import ast
from leadlang.interpreter.codegen import ExprCompiler, Scope
from leadlang.runtime.values import compile_expr
from leadlang.source import Span

S = Span("<test>", 1, 1, 1, 1)


class Ctx:
    """A minimal evaluation context: traits and a bound event."""

    def __init__(
        self, traits: dict[str, Any] | None = None, event: dict[str, Any] | None = None
    ) -> None:
        self.traits = traits or {}
        self.event = event
        self.id = "u"
        self.t = 0.0

    def score(self) -> float:
        return float(self.traits.get("_score", 0))


def evaluate(expr: ast.Expr, props: dict[str, Any] | None = None, **traits: Any) -> Any:
    compiled = ExprCompiler(program()).compile(
        expr, Scope(event="x" if props is not None else None)
    )
    return compile_expr(compiled["src"])(Ctx(traits), props)


def p(prop: str) -> ast.Name:
    return name(prop)


@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "contains", "in", "starts with"])
def test_anything_involving_none_is_false(op: str) -> None:
    assert evaluate(b(op, p("missing"), num(1)), {}) is False
    assert evaluate(b(op, num(1), p("missing")), {}) is False


def test_arithmetic_with_none_is_none_and_presence_tests() -> None:
    assert evaluate(b("+", p("missing"), num(1)), {}) is None
    assert evaluate(b("==", p("missing"), ast.NoneLit(span=S)), {}) is True
    assert evaluate(b("!=", p("total"), ast.NoneLit(span=S)), {"total": 0}) is True


def test_text_equality_is_case_sensitive_but_contains_is_not() -> None:
    assert evaluate(b("==", p("plan"), s("Pro")), {"plan": "pro"}) is False
    assert evaluate(b("contains", p("plan"), s("PRO")), {"plan": "the pro plan"}) is True
    assert evaluate(b("starts with", p("plan"), s("THE")), {"plan": "the pro plan"}) is True
    assert evaluate(b("ends with", p("plan"), s("PLAN")), {"plan": "the pro plan"}) is True


def test_list_contains_and_in() -> None:
    products = [{"category": "Winter Coats"}, {"category": "Shoes"}]
    assert (
        evaluate(
            b("contains", attr(p("products"), "category"), s("winter")), {"products": products}
        )
        is True
    )
    assert evaluate(b("contains", p("ids"), num(3)), {"ids": [1, 2, 3]}) is True
    assert evaluate(b("in", s("vip"), p("labels")), {"labels": ["VIP"]}) is False  # exact
    assert evaluate(b("in", s("vip"), p("labels")), {"labels": ["vip"]}) is True
    assert (
        evaluate(b("in", s("vip"), p("text")), {"text": "a VIP customer"}) is True
    )  # text: contains


def test_matches_is_a_regex_search() -> None:
    assert evaluate(b("matches", p("role"), s("(?i)\\bceo\\b")), {"role": "Founder & CEO"}) is True
    assert evaluate(b("matches", p("role"), s("^ceo$")), {"role": "Founder & CEO"}) is False
    assert evaluate(b("matches", p("role"), s("[")), {"role": "x"}) is False  # bad regex: false


def test_text_against_datetime_parses_iso_or_is_false() -> None:
    date = ast.DateTime(text="2025-10-01T09:00:00Z", span=S)
    assert evaluate(b(">", p("on"), date), {"on": "2025-10-02T00:00:00+00:00"}) is True
    assert evaluate(b("<", p("on"), date), {"on": "2025-10-02T00:00:00Z"}) is False
    assert evaluate(b(">", p("on"), date), {"on": "not a date"}) is False
    assert evaluate(b("<", p("on"), date), {"on": "not a date"}) is False


def test_datetime_and_duration_arithmetic() -> None:
    date = ast.DateTime(text="2025-10-01T00:00:00Z", span=S)
    later = evaluate(b("+", date, dur(86400)), {})
    assert later == datetime(2025, 10, 2, tzinfo=UTC)
    span = evaluate(b("-", ast.DateTime(text="2025-10-02T00:00:00Z", span=S), date), {})
    assert span.total_seconds() == 86400
    assert evaluate(b("*", num(2), dur(3600)), {}).total_seconds() == 7200


def test_percent_is_a_number_and_mixed_types_are_false() -> None:
    assert evaluate(b("<", p("x"), num(0.6, percent=True)), {"x": 0.5}) is True
    assert evaluate(b(">", p("x"), num(5)), {"x": "seven"}) is False


def test_scalar_functions() -> None:
    assert evaluate(call("sigmoid", num(0)), {}) == 0.5
    assert evaluate(call("min", num(3), num(2)), {}) == 2
    assert evaluate(call("round", num(2.6)), {}) == 3
    assert evaluate(call("lower", s("AbC")), {}) == "abc"
    assert evaluate(call("len", p("xs")), {"xs": [1, 2]}) == 2
    assert evaluate(call("abs", p("missing")), {}) is None


@given(
    st.one_of(
        st.none(),
        st.integers(-5, 5),
        st.floats(allow_nan=False),
        st.text(max_size=3),
        st.booleans(),
    )
)
def test_ordering_never_raises(value: Any) -> None:
    result = evaluate(b(">", p("v"), num(1)), {"v": value})
    expected = value.__class__ in (int, float) and value > 1
    assert result is expected


def test_edits_clause_is_recorded_and_keep_changes_no_version(tmp_path: Path) -> None:
    from leadlang.interpreter.check import check_paths
    from leadlang.interpreter.compile import compile_program

    def flow_ir(header: str) -> dict[str, object]:
        path = tmp_path / "f.lead"
        path.write_text(f'flow f:\n  on x\n{header}  tag "a"\n')
        result = check_paths([str(path)])
        assert result.program is not None, result.diagnostics
        (flow,) = compile_program(result.program)["flows"]
        return flow

    plain, keep, migrate = flow_ir(""), flow_ir("  edits keep\n"), flow_ir("  edits migrate\n")
    assert keep == plain and "edits" not in plain  # the default: existing versions unchanged
    assert migrate["edits"] == "migrate" and migrate["version"] != plain["version"]


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(["order_kind", "_k0", "kind_k1", "x_w0k1", "_f"]),
    st.sampled_from(["gift", "_k0", "a_k1b", "def _f("]),
    st.integers(1, 4),
)
def test_aggregate_wheres_count_whatever_their_names_and_nesting(
    prop: str, value: str, depth: int
) -> None:
    """Names and strings that look like generated names are not rewritten, and aggregates
    nested in a `where` (to any depth) each get a function of their own."""
    from engine_build import program as build

    from leadlang.interpreter.compile import compile_program
    from leadlang.runtime.context import Context
    from leadlang.runtime.engine import Engine
    from leadlang.runtime.state import Contact

    where: ast.Expr = b("==", name(prop), s(value))
    for _ in range(depth - 1):  # ... and count(order where PROP == VALUE) >= 1, nested
        where = b("and", where, b(">=", call("count", name("order"), where=where), num(1)))
    metrics = {"n": call("count", name("order"), where=where)}
    engine = Engine(compile_program(build(metrics=metrics, events={"order": {prop: "text"}})))
    contact = Contact("u")
    contact.history["order"] = ([0.0, 0.0], [{prop: value}, {prop: "other"}])
    assert engine.metrics["n"](Context(engine, contact, 1.0), None) == 1
