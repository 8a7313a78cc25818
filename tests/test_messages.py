"""Diagnostic messages read as English: articles agree with the word that follows."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from checking import check_text

from leadlang.diagnostics import with_article
from leadlang.interpreter.check import check_paths
from leadlang.interpreter.scope import CHANNELS

ROOT = Path(__file__).resolve().parent.parent
# Words whose article is not given by their first letter, as they are read aloud.
A_BEFORE_VOWEL = {"one", "unit", "unique", "usage", "user", "url"}
AN_BEFORE_CONSONANT = {"sms", "hour", "html"}
ARTICLE = re.compile(r"\b(a|an) `?([A-Za-z]+)")


def _misused_articles(text: str) -> list[str]:
    wrong = []
    for article, word in ARTICLE.findall(text):
        vowel = word[0].lower() in "aeiou"
        if article == "a" and vowel and word.lower() not in A_BEFORE_VOWEL:
            wrong.append(f"{article} {word}")
        if article == "an" and not vowel and word.lower() not in AN_BEFORE_CONSONANT:
            wrong.append(f"{article} {word}")
    return wrong


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("email", "an email"),
        ("sms", "an sms"),
        ("push", "a push"),
        ("event", "an event"),
        ("number", "a number"),
        ("object", "an object"),
        ("unique", "a unique"),
        ("text", "a text"),
    ],
)
def test_with_article(word: str, expected: str) -> None:
    assert with_article(word) == expected


@pytest.mark.parametrize(("declared", "written"), list(itertools.permutations(sorted(CHANNELS), 2)))
def test_a_send_on_the_wrong_channel_names_the_channel_with_its_article(
    tmp_path: Path, declared: str, written: str
) -> None:
    body = {"email": 'subject "s"\n  text "t"', "sms": 'text "t"', "push": 'url "https://x"'}
    text = f"message m:\n  channel {declared}\n  {body[declared]}\nflow f:\n  on x\n  send {written} m\n"
    messages = [d.message for d in check_text(tmp_path, text).diagnostics if d.code == "F008"]
    assert messages == [f"`m` is {with_article(declared)} message, not {written}"]


@pytest.mark.parametrize(
    "script",
    [
        "event split(a: number)\n",
        "event split\n",
        "trait and: text\n",
        "metric or = 1\n",
        "segment in = true\n",
        'message if:\n  channel sms\n  text "t"\n',
        'flow exit:\n  on x\n  tag "t"\n',
    ],
)
def test_keyword_names_read_as_english(tmp_path: Path, script: str) -> None:
    (diagnostic,) = check_text(tmp_path, script).diagnostics
    assert diagnostic.code == "N018"
    assert not _misused_articles(diagnostic.message), diagnostic.message


def test_no_golden_diagnostic_misuses_an_article() -> None:
    cases = sorted((ROOT / "tests" / "golden" / "diagnostics").glob("*.lead"))
    cases += sorted((ROOT / "tests" / "check_cases").glob("*.lead"))
    for case in cases:
        for diagnostic in check_paths([str(case)]).diagnostics:
            text = f"{diagnostic.message} {diagnostic.help or ''}"
            assert not _misused_articles(text), (case.name, text)
