"""The engine evaluates a segment's or `when` trigger's conjunction cheapest operand first
(`runtime/reorder.py`): same truth value for any profile, costly operands last."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from checking import check_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadlang.interpreter.compile import compile_program
from leadlang.runtime.context import Context
from leadlang.runtime.engine import Engine
from leadlang.runtime.reorder import cheap_first
from leadlang.runtime.state import Contact
from leadlang.runtime.values import compile_expr

DAY = 86400.0
T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z

# Operands of every kind: score, windows, days_since, traits, a metric, tags, missing values,
# and one that raises (a division by a zero trait), which makes the whole condition none.
OPERANDS = [
    "score > 30",
    "score <= 50",
    "count(page_viewed within 3d) >= 2",
    "days_since(page_viewed) >= 1",
    'plan == "pro"',
    "trial_end + 7d < now",
    "propensity < 60%",
    '"vip" in tags',
    "spend / visits > 2",
    "not (spend > 100)",
]

HEADER = """trait plan: text
trait spend: number
trait visits: number
trait trial_end: datetime
score:
  page_viewed +10
  decay 5 every 1d idle
metric propensity = sigmoid(-2 + count(page_viewed within 3d))
"""


def _segments(tmp_path: Path, conjunctions: list[list[int]]) -> dict[str, Any]:
    lines = [
        f"segment s{i} = " + " and ".join(OPERANDS[k] for k in picks)
        for i, picks in enumerate(conjunctions)
    ]
    result = check_text(tmp_path, HEADER + "\n".join(lines) + "\n")
    assert result.program is not None, [d.message for d in result.diagnostics]
    return compile_program(result.program)


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # every operand with every other, in both orders, and a few longer chains
    pairs = [[a, b] for a in range(len(OPERANDS)) for b in range(len(OPERANDS)) if a != b]
    chains = [[6, 3, 1], [2, 6, 8, 0], [8, 6, 5, 4, 3], list(range(len(OPERANDS)))]
    return _segments(tmp_path_factory.mktemp("reorder"), pairs + chains)


profiles = st.fixed_dictionaries(
    {
        "plan": st.sampled_from([None, "pro", "free"]),
        "spend": st.sampled_from([None, 0, 50, 150]),
        "visits": st.sampled_from([None, 0, 10]),
        "trial_end": st.sampled_from([None, "2024-12-01T00:00:00Z", "not a date"]),
        "tags": st.lists(st.sampled_from(["vip", "new"]), unique=True),
        "views": st.lists(st.integers(0, 10 * 24), max_size=6),
        "now": st.integers(0, 10 * 24),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profiles)
def test_reordered_conjunctions_have_the_same_truth_value(
    program: dict[str, Any], profile: dict[str, Any]
) -> None:
    engine = Engine(program)
    contact = Contact("u")
    for key in ("plan", "spend", "visits", "trial_end"):
        if profile[key] is not None:
            contact.traits[key] = profile[key]
    contact.tags = dict.fromkeys(profile["tags"])
    views = sorted(T0 + hour * 3600.0 for hour in profile["views"])
    if views:
        contact.history["page_viewed"] = (views, [{} for _ in views])
        contact.last_activity = views[-1]
        contact.score = 10.0 * len(views)
    now = max([T0 + profile["now"] * 3600.0, *views])
    for name, segment in program["segments"].items():
        original = compile_expr(segment["src"], name)
        reordered = compile_expr(cheap_first(segment["src"]), name)
        expected = bool(original(Context(engine, contact, now), None))
        assert bool(reordered(Context(engine, contact, now), None)) == expected, name


def test_costly_operands_go_last_and_cheap_ones_keep_their_order(tmp_path: Path) -> None:
    program = _segments(tmp_path, [[6, 3, 1], [1, 0]])
    src = cheap_first(program["segments"]["s0"]["src"])
    # score, then days_since, then the metric
    assert src.index("c.score()") < src.index("c.days_since(") < src.index("c.metric(")
    # already cheapest first: the source is left as it is
    assert cheap_first(program["segments"]["s1"]["src"]) == program["segments"]["s1"]["src"]
