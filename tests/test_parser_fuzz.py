"""Property tests: any text, and any mutation of a valid script, parses to an AST or to
well-formed diagnostics (a known syntax code, a span inside the text), never to an exception."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wellformed import assert_well_formed

from leadlang import ast
from leadlang.source import Source
from leadlang.syntax import parse

VALID = """\
use std.segments
settings:
  timezone "Europe/Paris"
  quiet hours 21:00 to 08:00
  cap email 2 per 1d
event order_completed(total: number, products: list)
trait first_name: text = "there"
score:
  page_viewed +1
  order_completed +25 where total > 100
  decay 10% every 7d idle
  max 100
metric propensity = sigmoid(-3 + 1.2 * count(added_to_cart within 30d))
segment potential = score > 50 and propensity > 60%
message deal:
  channel email
  subject "{{ first_name }}, 20% off"
  html file "deal.html"
flow nurture:
  on order_completed where products.category contains "Winter"
  reenter after 3d
  send deal with {code: "X"}
  wait for service_subscribed up to 1w else:
    send deal
  check opened within 2d else exit
  if event.total >= 20:
    tag "big"
  else:
    untag "big"
  split test:
    50% a: score +5
    50%: wait until 09:00
when score > 50 and propensity < 60% then send "deal" ; wait 24h ; check opened else send "final"
"""
LINES = VALID.splitlines(keepends=True)
TERMINAL_NAME = re.compile(r"(?<!U\+)\b(?:[A-Z][A-Z_]{2,}|_[A-Z]+)\b|\$END")
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_total(text: str) -> None:
    source = Source("fuzz.lead", text)
    module, diagnostics = parse(source)
    assert isinstance(module, ast.Module)
    assert_well_formed(diagnostics, {source.path: source})
    for diagnostic in diagnostics:
        # syntax codes, and N018: a keyword where a name goes is seen while building the
        # tree (`use std.segment`, one letter deleted from `std.segments`)
        assert diagnostic.code.startswith("S") or diagnostic.code == "N018"
        # in words: never a grammar terminal name such as NAME, _NL or $END
        words = re.sub(r"`[^`]*`", "", diagnostic.message)  # quoted user text may be anything
        assert not TERMINAL_NAME.search(words), diagnostic.message


def test_the_valid_script_is_valid() -> None:
    module, diagnostics = parse(Source("fuzz.lead", VALID))
    assert diagnostics == []
    assert len(module.decls) == 10


@FUZZ
@given(st.text())
def test_any_text(text: str) -> None:
    check_total(text)


@FUZZ
@given(st.binary(max_size=300))
def test_binary_ish_text(data: bytes) -> None:
    check_total(data.decode("latin-1"))


@FUZZ
@given(
    st.integers(0, len(VALID) - 1),
    st.sampled_from(["delete", "duplicate", "insert"]),
    st.characters(),
)
def test_character_mutations(index: int, action: str, char: str) -> None:
    if action == "delete":
        text = VALID[:index] + VALID[index + 1 :]
    elif action == "duplicate":
        text = VALID[: index + 1] + VALID[index:]
    else:
        text = VALID[:index] + char + VALID[index:]
    check_total(text)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["delete", "duplicate", "swap", "indent", "dedent"]),
            st.integers(0, len(LINES) - 1),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_line_mutations(edits: list[tuple[str, int]]) -> None:
    lines = list(LINES)
    for action, index in edits:
        index %= max(len(lines), 1)
        if not lines:
            break
        if action == "delete":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "swap" and index + 1 < len(lines):
            lines[index], lines[index + 1] = lines[index + 1], lines[index]
        elif action == "indent":
            lines[index] = "   " + lines[index]
        elif action == "dedent":
            lines[index] = lines[index].lstrip(" ")
    check_total("".join(lines))


def test_every_example_and_stdlib_file_parses_cleanly() -> None:
    root = Path(__file__).resolve().parent.parent
    files = sorted([*root.glob("examples/**/*.lead"), *root.glob("stdlib/*.lead")])
    for path in files:
        _, diagnostics = parse(Source(str(path), path.read_text(encoding="utf-8")))
        assert diagnostics == [], (path, diagnostics)
