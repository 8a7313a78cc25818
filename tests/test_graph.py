"""`leadlang graph`: flows drawn from the IR, and condition text that reads like the script."""

from __future__ import annotations

import os
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


SEVERAL = """
message hi:
  channel email
  subject "hi"
  text "hi"
flow first:
  on signed_up
  reenter after 30d
  exit on unsubscribed
  goal order_completed within 2w
  send hi
flow second:
  on "Page Viewed"
  reenter always
  edits migrate
  exit when score > 10
  send hi
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flows.lead"
    path.write_text(text)
    return path


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_header_clauses_that_end_or_repeat_enrollments_are_drawn(tmp_path: Path, fmt: str) -> None:
    result = CliRunner().invoke(main, ["graph", str(_write(tmp_path, SEVERAL)), "--format", fmt])
    assert result.exit_code == 0, result.output
    for text in (
        "exit on unsubscribed",
        "goal order_completed within 2w",
        "reenter after 30d",
        "reenter always",
        "exit when score > 10",
        "edits migrate",
        '"removed"',
        '"goal"',
    ):
        assert text in result.output, text
    # The defaults (`reenter never`, `edits keep`) are not spelled out.
    assert "reenter never" not in result.output and "edits keep" not in result.output


FAKE_DOT = """#!/bin/sh
# Like Graphviz: one SVG document per graph read from standard input.
n=$(grep -c '^digraph' -)
i=0
while [ "$i" -lt "$n" ]; do
  printf '<?xml version="1.0"?>\\n<svg xmlns="http://www.w3.org/2000/svg"></svg>\\n'
  i=$((i + 1))
done
"""


@pytest.mark.parametrize("real", [True, False])
def test_svg_of_several_flows_is_one_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real: bool
) -> None:
    import xml.dom.minidom

    if real and shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed")
    if not real:
        fake = tmp_path / "bin" / "dot"
        fake.parent.mkdir()
        fake.write_text(FAKE_DOT)
        fake.chmod(0o755)
        monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    script = _write(tmp_path, SEVERAL)
    result = CliRunner().invoke(main, ["graph", str(script), "--format", "svg"])
    assert result.exit_code == 0, result.output
    assert result.output.count("<svg") == 1
    document = xml.dom.minidom.parseString(result.output)  # one well-formed document
    assert document.documentElement.tagName == "svg"
    if real:
        assert "first" in result.output and "second" in result.output
