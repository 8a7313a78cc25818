"""Types: every expression gets a type, and misuse is reported where it happens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from checking import MESSAGES, check_text, codes, only


def flow(*steps: str, header: str = "on signed_up") -> str:
    return MESSAGES + "flow f:\n  " + header + "\n" + "".join(f"  {s}\n" for s in steps)


@pytest.mark.parametrize(
    ("condition", "code"),
    [
        ('score > "x"', "T001"),
        ("score == tags", "T001"),
        ("score > none", "T001"),
        ("score", "T002"),
        ('"potential"', "T002"),
        ("score > 1 and 5", "T002"),
        ("total(order_completed) > 1", "T005"),
        ("count(order_completed.total) > 1", "T005"),
        ("sigmoid(1, 2) > 0", "T006"),
        ('lower(score) == "a"', "T006"),
        ('email matches "(a"', "T010"),
        ("score.total > 5", "T011"),
    ],
)
def test_bad_segment_conditions(tmp_path: Path, condition: str, code: str) -> None:
    assert codes(check_text(tmp_path, f"segment s = {condition}\n")) == [code]


@pytest.mark.parametrize(
    "condition",
    [
        "score > 50 and propensity < 60%",
        'email ends with "@example.com" or "vip" in tags',
        "count(order_completed where total > 5 within 30d) >= 2",
        "last(order_completed).completed_on >= 2025-10-01",
        'last(order_completed).completed_on < "2025-10-01"',
        "days_since(page_viewed) > 7 or days_since(page_viewed) == none",
        "now - last(order_completed).completed_on > 7d",
        'last(order_completed).products.category contains "winter"',
        "total(order_completed.total within 90d) / 2 > 10",
    ],
)
def test_good_segment_conditions(tmp_path: Path, condition: str) -> None:
    text = (
        "event order_completed(total: number, products: list, completed_on: datetime)\n"
        "metric propensity = sigmoid(count(order_completed))\n"
        f"segment s = {condition}\n"
    )
    assert codes(check_text(tmp_path, text)) == []


@pytest.mark.parametrize(
    ("step", "code"),
    [
        ('wait "abc"', "T003"),
        ("wait 5", "T003"),
        ("wait until 3d", "T004"),
        ("wait for order_completed up to 5", "T003"),
        ("check opened within 2", "T003"),
        ("if score:\n    send deal", "T002"),
        ("tag 5", "T012"),
        ("set email = 5", "T007"),
        ("set score = 5", "N017"),
        ('set plan = "pro"', "N017"),
    ],
)
def test_bad_steps(tmp_path: Path, step: str, code: str) -> None:
    assert codes(check_text(tmp_path, flow(step))) == [code]


@pytest.mark.parametrize("step", ["wait until 09:00", "wait until 2025-12-24T18:00", "wait 1d12h"])
def test_good_waits(tmp_path: Path, step: str) -> None:
    assert codes(check_text(tmp_path, flow(step, "send deal"))) == []


def test_when_trigger_must_be_a_condition(tmp_path: Path) -> None:
    assert codes(check_text(tmp_path, flow("send deal", header="when score"))) == ["T002"]


def test_trait_default_and_unknown_type(tmp_path: Path) -> None:
    text = 'trait vip: bool = "yes"\ntrait age: nubmer\n'
    result = check_text(tmp_path, text)
    assert codes(result) == ["T008", "T009"]
    assert "did you mean `number`?" in (result.diagnostics[1].help or "")


def test_set_uses_the_declared_trait_type(tmp_path: Path) -> None:
    text = "trait vip: bool\n" + flow("set vip = true", "send deal").replace(MESSAGES, "")
    assert codes(check_text(tmp_path, MESSAGES + text)) == []
    d = only(check_text(tmp_path, MESSAGES + text.replace("= true", '= "yes"')), "T007")
    assert "`vip` is a bool trait" in d.message


def test_send_channel_must_agree_with_the_message(tmp_path: Path) -> None:
    d = only(check_text(tmp_path, flow("send email flash")), "F008")
    assert d.labels and d.labels[0].span.line == 11  # `message flash:`
    assert codes(check_text(tmp_path, flow("send sms flash"))) == []


def test_metric_cycle(tmp_path: Path) -> None:
    text = "metric a = b + 1\nmetric b = a * 2\n"
    d = only(check_text(tmp_path, text), "N014")
    assert "a -> b -> a" in (d.help or "")


def test_event_is_not_bound_in_segments(tmp_path: Path) -> None:
    assert codes(check_text(tmp_path, "segment s = event.total > 1\n")) == ["N015"]


# Every place a duration is written, with `{d}` for the duration.
DURATION_PLACES = [
    "settings:\n  cap email 1 per {d}\n",
    "score:\n  x +1\n  decay 1 every {d} idle\n",
    "metric m = count(x within {d})\n",
    'flow f:\n  on x\n  reenter after {d}\n  tag "a"\n',
    'flow f:\n  on x\n  goal y within {d}\n  tag "a"\n',
    'flow f:\n  on x\n  wait {d}\n  tag "a"\n',
    'flow f:\n  on x\n  wait for y up to {d}\n  tag "a"\n',
    'flow f:\n  on x\n  check score > 1 within {d}\n  tag "a"\n',
    'flow f:\n  on x\n  if count(x within {d}) > 1:\n    tag "a"\n',
]
# Caps and decays take a literal (never signed); the other places take expressions.
LITERAL_ONLY = 2
NOT_POSITIVE = ["0s", "0d0h", "-1d", "-(2h)", "1d - 2d", "2 * -12h"]


@pytest.mark.parametrize(
    ("place", "duration"),
    [
        (place, duration)
        for place in range(len(DURATION_PLACES))
        for duration in NOT_POSITIVE
        if place >= LITERAL_ONLY or (duration[0].isdigit() and " " not in duration)
    ],
)
def test_a_duration_that_is_not_positive_is_an_error(
    tmp_path: Path, place: int, duration: str
) -> None:
    text = DURATION_PLACES[place].format(d=duration)
    d = only(check_text(tmp_path, text), "T012")
    assert "longer than zero" in d.message
    assert d.span.line == text.count("\n", 0, text.index(duration)) + 1
    # The same place with a positive duration is fine.
    assert codes(check_text(tmp_path, DURATION_PLACES[place].format(d="1d12h"))) == []


# A constant with no sign: too long for a float (infinite), times zero.
NO_SIGN = "0.5 * " + " * ".join(["99999999"] * 40) + " * 1w * 0"


@pytest.mark.parametrize("place", range(LITERAL_ONLY, len(DURATION_PLACES)))
def test_a_constant_duration_with_no_sign_is_not_longer_than_zero(
    tmp_path: Path, place: int
) -> None:
    # (it compiled to a goal without a limit, a `reenter after` of none, a `wait` of none)
    d = only(check_text(tmp_path, DURATION_PLACES[place].format(d=NO_SIGN)), "T012")
    assert d.message.endswith("needs a duration longer than zero, but this has no sign")


def test_header_durations_are_fixed(tmp_path: Path) -> None:
    text = 'trait gap: duration\nflow f:\n  on x\n  reenter after gap\n  tag "a"\n'
    assert only(check_text(tmp_path, text), "T012").message == (
        "`reenter after` needs a fixed duration"
    )
    text = 'flow f:\n  on x\n  reenter after 2 * 12h\n  goal y within 1d + 1h\n  tag "a"\n'
    result = check_text(tmp_path, text)
    assert codes(result) == []
    from leadlang.interpreter.compile import compile_program

    assert result.program is not None
    (flow,) = compile_program(result.program)["flows"]
    assert flow["reenter"] == {"mode": "after", "after": 86400}
    assert flow["goals"][0]["within"] == 90000


@pytest.mark.parametrize("clause", ["reenter after {d}", "goal y within {d}"])
@pytest.mark.parametrize("duration", ["event.days", "event.days * 1h", "last(y).days", "m"])
def test_a_header_duration_of_unknown_type_is_fixed_too(
    tmp_path: Path, clause: str, duration: str
) -> None:
    # `x` and `y` declare no properties, so these have no known type: they are still no
    # constant (`reenter after event.days` passed and crashed the run at the next entry).
    text = f'metric m = last(y).days\nflow f:\n  on x\n  {clause.format(d=duration)}\n  tag "a"\n'
    assert only(check_text(tmp_path, text), "T012").message.endswith("needs a fixed duration")
    # an error of its own is reported alone
    text = f'flow f:\n  on x\n  {clause.format(d="gapp * 1h")}\n  tag "a"\n'
    assert codes(check_text(tmp_path, text)) == ["N004"]


@pytest.mark.parametrize(
    "duration", [f"{'9' * 400}d * 1.5", f"1.5 * {'9' * 400}d", f"{'9' * 400}d / 0.5", "1d / 0"]
)
def test_constant_durations_too_big_for_floats_are_judged_without_a_crash(
    tmp_path: Path, duration: str
) -> None:
    result = check_text(tmp_path, f'flow f:\n  on x\n  wait {duration}\n  tag "a"\n')
    # Whatever is reported (the run decides what is out of range), nothing says "not positive".
    assert not any("longer than zero" in d.message for d in result.diagnostics)


@pytest.mark.parametrize(
    "text",
    [
        "segment s = score > 1e3\n",
        "segment s = score > 3x\n",
        "metric m = 2 * 3x + 1\n",
        "flow f:\n  on a\n  wait until 3x\n",
    ],
)
def test_an_invalid_literal_is_one_diagnostic(tmp_path: Path, text: str) -> None:
    assert codes(check_text(tmp_path, text)) == ["S005"]


# ---------------------------------------------------------------- object literals (LANGUAGE.md 2)

PUSH = 'message hook:\n  channel push\n  url "https://example.com/hook"\n'


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("segment s = {a: 1} == none\n", 1, 13),
        ("metric q = {a: 1}\n", 1, 12),
        ("trait prefs: object = {a: 1}\n", 1, 23),
        ("trait prefs: list = [1, {a: 1}]\n", 1, 25),
        ('when {a: 1} == none then tag "x"\n', 1, 6),
        ('on signed_up where len({a: 1}) > 0 then tag "x"\n', 1, 24),
        (flow("if {a: 1}: exit"), 16, 6),
        (flow("tag {a: 1}"), 16, 7),
        (flow("set email = {a: 1}"), 16, 15),
        (flow("wait until {a: 1}"), 16, 14),
        (flow("wait 1d", header="reenter after {a: 1}\n  on signed_up"), 15, 17),
        # in a `with` or a `json`, but as an operand rather than a value
        (flow("send deal with {a: {b: 1} == none}"), 16, 22),
        (PUSH + "  json {a: {b: 1} == none}\n", 4, 12),
    ],
)
def test_object_literal_only_where_a_step_or_message_takes_one(
    tmp_path: Path, text: str, line: int, column: int
) -> None:
    d = only(check_text(tmp_path, text), "T012")
    assert "object literal" in d.message and "not allowed here" in d.message
    assert (d.span.line, d.span.column) == (line, column)
    assert d.help is not None and "send" in d.help and "json" in d.help


@pytest.mark.parametrize(
    ("text", "key", "line", "column"),
    [
        (PUSH + '  json {"$value": "{{ id }}"}\n', "$value", 4, 9),
        (PUSH + '  json {"$expr": "x"}\n', "$expr", 4, 9),
        (PUSH + '  json {a: [1, {"$value": 2}]}\n', "$value", 4, 17),
        (PUSH + '  headers {"$expr": "x"}\n  json {a: 1}\n', "$expr", 4, 12),
    ],
)
def test_a_message_object_whose_only_key_marks_a_computed_value_is_an_error(
    tmp_path: Path, text: str, key: str, line: int, column: int
) -> None:
    # the compiled program marks an expression as {"$expr": ...} and the daemon its value as
    # {"$value": ...}: such an object written in a message was sent unrendered, or crashed
    d = only(check_text(tmp_path, text), "T012")
    assert d.message == f"an object whose only key is `{key}` cannot be sent in a message"
    assert (d.span.line, d.span.column) == (line, column)
    # with another key, or in a `send ... with`, the object is plain data
    assert codes(check_text(tmp_path, PUSH + '  json {"$value": 1, "$expr": 2}\n')) == []
    assert "T012" not in codes(check_text(tmp_path, flow('send deal with {"$value": 1}')))


@pytest.mark.parametrize(
    ("name", "column"),
    [("X Campaign", 12), ("X-A:B", 12), ("", 12), ("Subject\r\nBcc", 12), ("X-Ä", 12)],
)
def test_a_header_name_with_a_space_or_a_colon_is_an_error(
    tmp_path: Path, name: str, column: int
) -> None:
    # such a name made a malformed header line, refused by the channel at every send
    text = PUSH + "  headers {" + json.dumps(name) + ': "1", "X-Ok_1.a": "2"}\n  json {a: 1}\n'
    d = only(check_text(tmp_path, text), "T012")
    assert d.message == f"{json.dumps(name, ensure_ascii=False)} is not a header name"
    assert (d.span.line, d.span.column) == (4, column)
    assert d.help is not None and "no space or colon" in d.help
    found = codes(
        check_text(tmp_path, PUSH + '  headers {Authorization: "x", "X-B": 1}\n  json {a: 1}\n')
    )
    assert found == []


@pytest.mark.parametrize(("step", "column"), [('tag ""', 7), ('tag "  "', 7), ('untag ""', 9)])
def test_an_empty_tag_is_an_error(tmp_path: Path, step: str, column: int) -> None:
    d = only(check_text(tmp_path, flow(step)), "T012")
    assert d.message == "a tag is a word or a phrase, and this one is empty"
    assert d.span.column == column
    assert codes(check_text(tmp_path, flow('tag "vip"', 'untag " a b "'))) == []
    assert (d.span.line, d.span.column) == (16, column)


@pytest.mark.parametrize(
    ("text", "second", "first"),
    [
        # (the nested objects are values of objects a step or a message takes: no T012)
        (flow("send deal with {a: 1, b: {c: [1, {d: 2}]}, a: 3}"), (16, 46), (16, 19)),
        (PUSH + '  headers {"X-Token": secret("TOKEN")}\n  json {a: 1, "a": 2}\n', (5, 15), (5, 9)),
        (PUSH + "  json {x: {c: 1, c: 2}}\n", (4, 19), (4, 13)),
    ],
)
def test_object_key_set_twice_and_objects_where_they_belong(
    tmp_path: Path, text: str, second: tuple[int, int], first: tuple[int, int]
) -> None:
    d = only(check_text(tmp_path, text), "N013")
    assert d.message == "key `" + ("c" if "c: 2" in text else "a") + "` is set twice in this object"
    assert (d.span.line, d.span.column) == second
    assert [(lb.span.line, lb.span.column, lb.message) for lb in d.labels] == [
        (*first, "first set here")
    ]
