"""`leadlang graph`: flows drawn from the IR, and condition text that reads like the script."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from leadlang import ast
from leadlang.cli import main
from leadlang.interpreter.unparse import unparse
from leadlang.source import Source
from leadlang.syntax import parse

CARD = "when score > 50 and propensity < 60% then send deal ; wait 24h ; check opened else send final\n"
DEFS = """
metric propensity = sigmoid(-3 + 1.2 * count(added_to_cart within 30d))
message deal:
  channel email
  subject "deal"
  text "hello"
message final:
  channel email
  subject "final"
  text "bye"
"""


def _segment_expr(condition: str) -> ast.Expr:
    module, diagnostics = parse(Source("t.lead", f"segment s = {condition}\n"))
    assert diagnostics == []
    decl = module.decls[0]
    assert isinstance(decl, ast.SegmentDecl)
    return decl.expr


@pytest.mark.parametrize(
    "condition",
    [
        "score > 50 and propensity < 60%",
        '(score > 50 or score < 10) and not "vip" in tags',
        "count(order_completed where total > 100 within 90d) >= 2",
        "last(order_completed).total * 2 - 1 > 3",
        "a - (b - c) > 0",
        "-(a + b) < 1",
        'products.category contains "Winter"',
        'country not in ["FR", "DE"] and email != none',
        "now - 2025-10-01T09:00 > 1d12h",
    ],
)
def test_unparse_reads_like_the_script_and_reparses_to_the_same_text(condition: str) -> None:
    text = unparse(_segment_expr(condition))
    assert text == condition
    assert unparse(_segment_expr(text)) == text


def _write_card(tmp_path: Path) -> Path:
    path = tmp_path / "card.lead"
    path.write_text(CARD + DEFS)
    return path


def test_mermaid_shows_trigger_steps_and_both_check_paths(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["graph", str(_write_card(tmp_path))])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("flowchart TD")
    assert "when score > 50 and propensity < 60%" in out
    assert '["send email deal"]' in out and '["wait 24h"]' in out
    assert '{"check opened"}' in out
    assert '-->|"else"| n_s2_else_0' in out  # the negative path sends `final`
    assert '-->|"yes"| n___end__' in out


def test_dot_names_every_state_and_edge(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["graph", str(_write_card(tmp_path)), "--format", "dot"])
    assert result.exit_code == 0, result.output
    for state in ("s0", "s1", "s2", "s2.else.0"):
        assert f'"{state}" [shape=' in result.output
    assert '"s2" -> "s2.else.0" [label="else"];' in result.output


def test_unknown_flow_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["graph", str(_write_card(tmp_path)), "--flow", "nope"])
    assert result.exit_code == 1
    assert "no flow named `nope`" in result.output
    assert "`card:1`" in result.output


def test_svg_needs_graphviz_or_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["graph", str(_write_card(tmp_path)), "--format", "svg"])
    if shutil.which("dot") is None:
        assert result.exit_code == 1
        assert "Graphviz" in result.output
    else:
        assert result.exit_code == 0
        assert "<svg" in result.output
