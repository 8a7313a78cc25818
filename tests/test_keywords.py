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


@pytest.mark.parametrize(
    ("line", "word", "column", "what"),
    [
        ('flow f:\n  on within\n  tag "x"\n', "within", 6, "an event"),
        ('flow f:\n  on send\n  tag "x"\n', "send", 6, "an event"),
        ("flow f:\n  on a\n  wait for where up to 1d\n", "where", 12, "an event"),
        ('on when then tag "x"\n', "when", 4, "an event"),
        ('flow f:\n  exit on tag\n  on a\n  tag "x"\n', "tag", 11, "an event"),
        ("score:\n  if +1\n", "if", 3, "an event"),
        ("metric m = count(send)\n", "send", 18, None),
        ("metric m = count(tag within 1d)\n", "tag", 18, None),
        ("metric m = days_since(exit)\n", "exit", 23, None),
        ("metric m = last(when).x\n", "when", 17, None),
        (
            'flow f:\n  on a\n  split when:\n    50%: tag "a"\n    50%: tag "b"\n',
            "when",
            9,
            "a split",
        ),
        (
            'flow f:\n  on a\n  split s:\n    50% then: tag "a"\n    50% b: tag "b"\n',
            "then",
            9,
            "a split arm",
        ),
        ("flow f:\n  on a\n  enroll send\n", "send", 10, "a flow"),
        ("flow f:\n  on a\n  set until = 1\n", "until", 7, "a trait"),
    ],
)
def test_a_keyword_used_as_a_name_is_n018(
    tmp_path: Path, line: str, word: str, column: int, what: str | None
) -> None:
    path = tmp_path / "kw.lead"
    path.write_text(line)
    result = check_paths([str(path)])
    errors = [d for d in result.diagnostics if d.code == "N018"]
    assert len(errors) == 1, result.diagnostics
    expected = f"cannot name {what}" if what else "cannot be used as a name"
    assert errors[0].message == f"`{word}` is a keyword and {expected}"
    assert errors[0].span.column == column
    source_line = line.split("\n")[errors[0].span.line - 1]
    assert source_line[column - 1 :].startswith(word)
    assert result.program is None


def test_keywords_that_read_as_names_in_expressions_still_do(tmp_path: Path) -> None:
    path = tmp_path / "ok.lead"
    path.write_text(
        "event note(message: text)\n"
        'segment hot = score > 10 and last(message_opened).message == "deal"\n'
        'flow f:\n  on message_clicked where message == "deal" and event.message != ""\n'
        '  on "send"\n  tag "clicked"\n'
    )
    result = check_paths([str(path)])
    assert result.diagnostics == []
