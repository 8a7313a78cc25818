"""Keywords are reserved (LANGUAGE.md section 2): no declaration may be named with one."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadlang.interpreter.check import check_paths
from leadlang.interpreter.scope import CONTEXTUAL_KEYWORDS, KEYWORDS
from leadlang.syntax import get_parser


def test_reserved_and_contextual_words_are_the_grammars() -> None:
    grammar_words = {
        t.pattern.value
        for t in get_parser().terminals
        if type(t.pattern).__name__ == "PatternStr" and t.pattern.value.isalpha()
    }
    assert grammar_words == KEYWORDS | CONTEXTUAL_KEYWORDS
    assert not KEYWORDS & CONTEXTUAL_KEYWORDS


@pytest.mark.parametrize(
    ("script", "what", "word"),
    [
        ("segment send = true\n", "a segment", "send"),
        ("metric wait = 1\n", "a metric", "wait"),
        ("trait when: text\n", "a trait", "when"),
        ('flow exit:\n  on signup\n  tag "new"\n', "a flow", "exit"),
        ('message flow:\n  channel email\n  subject "s"\n  text "t"\n', "a message", "flow"),
        ("event split(amount: number)\n", "an event", "split"),
        ("event split\n", "an event", "split"),
    ],
)
def test_declaring_a_keyword_is_an_error(tmp_path: Path, script: str, what: str, word: str) -> None:
    path = tmp_path / "kw.lead"
    path.write_text(script)
    result = check_paths([str(path)])
    errors = [d for d in result.diagnostics if d.code == "N018"]
    assert len(errors) == 1
    assert errors[0].message == f"`{word}` is a keyword and cannot name {what}"
    assert (errors[0].span.line, errors[0].span.column) == (1, len(script.split()[0]) + 2)
    assert result.program is None


def test_names_containing_keywords_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.lead"
    path.write_text("segment send_ready = score > 10\nmetric waits = 1\n")
    assert check_paths([str(path)]).diagnostics == []


def test_contextual_words_are_free_as_names(tmp_path: Path) -> None:
    path = tmp_path / "ok.lead"
    path.write_text(
        'message after:\n  channel email\n  subject "s"\n  text "t"\n'
        "segment up = score > 10\n"
        "flow to:\n  when up\n  wait 1d\n  send after\n"
    )
    result = check_paths([str(path)])
    assert result.diagnostics == []
    assert result.program is not None
