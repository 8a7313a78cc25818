"""Flow and message lints: splits, unreachable steps, double sends, constant triggers, templates."""

from __future__ import annotations

from pathlib import Path

import pytest
from checking import MESSAGES, check_files, check_text, codes, only


def flow(*steps: str, header: str = "on signed_up") -> str:
    return MESSAGES + "flow f:\n  " + header + "\n" + "".join(f"  {s}\n" for s in steps)


# ---------------------------------------------------------------- splits


@pytest.mark.parametrize(
    ("percents", "ok"),
    [
        (("50%", "50%"), True),
        (("33.34%", "33.33%", "33.33%"), True),
        (("33.33%", "33.33%", "33.33%"), False),
        (("10%", "20%", "30%", "40%"), True),
        (("60%", "50%"), False),
        (("50.002%", "50.002%"), False),  # 100.004%: exact, not rounded to hundredths
        (("49.999%", "50.001%"), True),
        (("0.1%", "0.2%", "99.7%"), True),  # 0.1 + 0.2 is not 0.3 in floats, but is here
        (("33.333333%", "33.333333%", "33.333334%"), True),
        (("33.333333%", "33.333333%", "33.333333%"), False),
    ],
)
def test_split_percents_must_sum_to_100(
    tmp_path: Path, percents: tuple[str, ...], ok: bool
) -> None:
    arms = "".join(f'    {p}: tag "x{i}"\n' for i, p in enumerate(percents))
    text = MESSAGES + "flow f:\n  on signed_up\n  split t:\n" + arms
    assert codes(check_text(tmp_path, text)) == ([] if ok else ["F001"])


def test_a_sum_off_by_a_thousandth_is_reported_exactly(tmp_path: Path) -> None:
    arms = '    50.002%: tag "a"\n    50.002%: tag "b"\n'
    d = only(check_text(tmp_path, "flow f:\n  on s\n  split t:\n" + arms), "F001")
    assert "100.004%" in d.message and "remove 0.004%" in (d.help or "")


def test_enroll_cycles_that_never_settle_are_errors_with_the_cycle(tmp_path: Path) -> None:
    cycle = (
        'flow a:\n  on s\n  reenter always\n  tag "a"\n  enroll b\n'
        "flow b:\n  reenter always\n  enroll c\n"
        'flow c:\n  reenter always\n  if score > 1:\n    tag "c"\n  enroll a\n'
    )
    result = check_text(tmp_path, cycle)
    d = only(result, "F020")
    assert d.severity == "error" and result.program is None
    assert "`a` -> `b` -> `c` -> `a`" in d.message
    # a wait before one `enroll`, or a flow not entered again at once, breaks the cycle
    waits = cycle.replace("  enroll c\n", "  wait 1h\n  enroll c\n")
    assert codes(check_text(tmp_path, waits)) == []
    once = cycle.replace("flow b:\n  reenter always\n", "flow b:\n  reenter after 1d\n")
    assert codes(check_text(tmp_path, once)) == []
    # a flow still waiting when the next one runs cannot be entered again: no cycle
    stays = cycle.replace('  tag "a"\n  enroll b\n', "  enroll b\n  wait 1d\n")
    assert codes(check_text(tmp_path, stays)) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("  enroll a\n", "  if score > 1:\n    enroll a\n"),  # under a condition
        ("  enroll a\n", "  check score > 1\n  enroll a\n"),  # after a check
        ("  enroll a\n", '  split s:\n    50%: enroll a\n    50%: tag "x"\n'),
        # a path that waits: the flow may still be running when the cycle comes back
        ("  enroll a\n", "  enroll a\n  if score > 1:\n    wait 1d\n"),
    ],
)
def test_enroll_cycles_through_a_condition_are_warned(tmp_path: Path, old: str, new: str) -> None:
    cycle = "flow a:\n  on s\n  reenter always\n  enroll b\nflow b:\n  reenter always\n  enroll a\n"
    result = check_text(tmp_path, cycle.replace(old, new))
    d = only(result, "F022")
    assert d.severity == "warning" and result.program is not None
    assert "`a` -> `b` -> `a`" in d.message or "`b` -> `a` -> `b`" in d.message


def test_thirds_report_the_exact_sum(tmp_path: Path) -> None:
    arms = '    33.33%: tag "a"\n    33.33%: tag "b"\n    33.33%: tag "c"\n'
    d = only(check_text(tmp_path, "flow f:\n  on s\n  split t:\n" + arms), "F001")
    assert "99.99%" in d.message


@pytest.mark.parametrize(
    ("percents", "total", "advice"),
    [
        (("60%", "30%"), "90", "add 10%"),
        (("60%", "50%"), "110", "remove 10%"),
        (("50.5%", "50%"), "100.5", "remove 0.5%"),
        (("33.33%", "33.33%", "33.33%"), "99.99", "add 0.01%"),
    ],
)
def test_a_split_that_misses_100_says_the_sum_and_the_fix(
    tmp_path: Path, percents: tuple[str, ...], total: str, advice: str
) -> None:
    arms = "".join(f'    {p}: tag "x{i}"\n' for i, p in enumerate(percents))
    d = only(check_text(tmp_path, "flow f:\n  on s\n  split t:\n" + arms), "F001")
    assert d.message == f"split `t` percents sum to {total}%, not 100%"
    assert d.help == (
        f"{advice} so every contact falls in exactly one arm "
        "(for thirds write 33.34%, 33.33%, 33.33%)"
    )


def test_duplicate_arm_names(tmp_path: Path) -> None:
    arms = '    50% a: tag "a"\n    50% a: tag "b"\n'
    assert codes(check_text(tmp_path, "flow f:\n  on s\n  split t:\n" + arms)) == ["F013"]
    # unnamed arms (`a`, `b`, ... by position) before the named ones do not hide them
    arms = '    50%: tag "a"\n    25% x: tag "b"\n    25% x: tag "c"\n'
    assert codes(check_text(tmp_path, "flow f:\n  on s\n  split t:\n" + arms)) == ["F013"]


# ---------------------------------------------------------------- unreachable


def test_step_after_exit_is_unreachable(tmp_path: Path) -> None:
    d = only(check_text(tmp_path, flow("exit", 'tag "x"')), "F002")
    assert d.span.line == 17
    assert d.labels[0].span.line == 16


def test_the_unreachable_span_and_label_say_what_ends_the_flow(tmp_path: Path) -> None:
    # one line: the span runs over every unreachable step; the label names the `exit`
    text = 'on signed_up then exit ; tag "x" ; tag "y"\n'
    d = only(check_text(tmp_path, text), "F002")
    assert (d.span.line, d.span.column, d.span.end_line) == (1, 26, 1)
    assert d.span.end_column == len(text)  # through `tag "y"`
    assert d.labels[0].message == "the flow always ends at this `exit`"
    # several lines: the first unreachable step; the label names the block
    text = flow("if score > 5:", "  exit", "else:", "  exit", 'tag "x"', 'tag "y"')
    d = only(check_text(tmp_path, text), "F002")
    assert (d.span.line, d.span.end_line) == (20, 20)
    assert d.labels[0].message == "the flow always ends in this block: every path exits"


def test_steps_after_an_exit_are_still_checked(tmp_path: Path) -> None:
    text = flow("exit", "split t:", '  60%: tag "a"', '  30%: tag "b"')
    assert sorted(codes(check_text(tmp_path, text))) == ["F001", "F002"]


def test_exit_in_one_branch_is_fine(tmp_path: Path) -> None:
    text = flow("if score > 5:", "  exit", 'tag "x"')
    assert codes(check_text(tmp_path, text)) == []


def test_exit_in_every_branch_makes_the_rest_unreachable(tmp_path: Path) -> None:
    text = flow("if score > 5:", "  exit", "else:", "  exit", 'tag "x"')
    assert codes(check_text(tmp_path, text)) == ["F002"]


def test_one_line_flow_exit(tmp_path: Path) -> None:
    assert codes(check_text(tmp_path, 'on signed_up then exit ; tag "x"\n')) == ["F002"]


# ---------------------------------------------------------------- sends with no wait


@pytest.mark.parametrize(
    ("steps", "warned"),
    [
        (("send deal", "send final"), True),
        (("send deal", "wait 1d", "send final"), False),
        (("send deal", "wait until 09:00", "send final"), False),
        (("send deal", "wait for order_completed up to 1d", "send final"), False),
        (("send deal", "check opened within 1d", "send final"), False),
        (("send deal", "check opened else send final"), True),
        (("send deal", "if score > 5:", '  tag "x"', "send final"), True),
        (("send deal", "if score > 5:", "  wait 1d", "else:", "  wait 2d", "send final"), False),
        (("if score > 5:", "  send deal", "send final"), True),
        (("send deal", "if score > 5:", "  send final"), True),
        (("split t:", "  50%: send deal", "  50%: wait 1d", "send final"), True),
        (("send deal", 'tag "x"', "score +5", "send final"), True),
    ],
)
def test_two_sends_with_no_wait(tmp_path: Path, steps: tuple[str, ...], warned: bool) -> None:
    result = check_text(tmp_path, flow(*steps))
    assert codes(result) == (["F011"] if warned else [])
    if warned:
        assert result.diagnostics[0].severity == "warning"
        assert result.program is not None  # warnings do not block


# ---------------------------------------------------------------- constant `when` triggers


@pytest.mark.parametrize(
    ("condition", "code"),
    [
        ("1 > 2", "F009"),
        ("true", "F010"),
        ("false", "F009"),
        ("score < 0", "F009"),
        ("score > 100", "F009"),
        ("score >= 0", "F010"),
        ("score > 50 and score < 10", "F009"),
        ("score > 50 or score <= 50", "F010"),
        ("not (score >= 0)", "F009"),
        ("propensity > 100%", "F009"),
        ("propensity < 0 and vip", "F009"),
        ("count(order_completed) < 0", "F009"),
        ("score > 50 and propensity < 60%", None),
        ("score >= 100", None),
        ("propensity >= 0", None),  # a metric may be missing: not provably true
        ("vip or score >= 0", "F010"),
        ("vip and score >= 0", None),
    ],
)
def test_constant_when_triggers(tmp_path: Path, condition: str, code: str | None) -> None:
    text = (
        "score:\n  page_viewed +1\n  max 100\n"
        'segment vip = "vip" in tags\n'
        "metric propensity = sigmoid(count(order_completed))\n"
        + flow("send deal", header=f"when {condition}")
    )
    assert codes(check_text(tmp_path, text)) == ([code] if code else [])


def test_score_without_max_can_grow(tmp_path: Path) -> None:
    assert codes(check_text(tmp_path, flow("send deal", header="when score > 1000"))) == []


# ---------------------------------------------------------------- flows never entered


def test_flow_never_entered_is_a_warning(tmp_path: Path) -> None:
    d = only(check_text(tmp_path, 'flow lonely:\n  tag "x"\n'), "F012")
    assert d.severity == "warning"


def test_enrolled_flow_is_entered(tmp_path: Path) -> None:
    text = 'flow a:\n  on signed_up\n  enroll b\n\nflow b:\n  tag "x"\n'
    assert codes(check_text(tmp_path, text)) == []


# ---------------------------------------------------------------- messages and templates


def test_message_needs_channel_and_body(tmp_path: Path) -> None:
    text = 'message a:\n  text "x"\n\nmessage b:\n  channel email\n  subject "s"\n'
    assert codes(check_text(tmp_path, text)) == ["F005", "F006"]


def test_inline_template_errors(tmp_path: Path) -> None:
    text = 'message a:\n  channel sms\n  text "Hi {{ nickname }} {{ first | nofilter }}"\n'
    assert codes(check_text(tmp_path, text)) == ["F003"]
    text = 'message a:\n  channel sms\n  text "Hi {{ nickname }}"\n'
    d = only(check_text(tmp_path, text), "F004")
    assert (d.span.column, d.span.end_column) == (15, 23)


@pytest.mark.parametrize(
    "template",
    [
        "Hi {{ nickname | default('there') }}",
        "{% if nickname is defined %}{{ nickname }}{% endif %}",
        "{% for t in tags %}{{ t }}{% endfor %} {{ score }} {{ id }} {{ event.x }}",
        "{% set n = 3 %}{{ n }} {{ range(2) | list }}",
        "Your code is {{ code }}",
    ],
)
def test_template_variables_with_a_source(tmp_path: Path, template: str) -> None:
    text = (
        f'message a:\n  channel sms\n  text "{template}"\n'
        'flow f:\n  on signed_up\n  send a with {code: "X1"}\n'
    )
    assert codes(check_text(tmp_path, text)) == []


def test_template_file_is_relative_to_the_script(tmp_path: Path) -> None:
    script = 'message a:\n  channel email\n  subject "s"\n  html file "t/a.html"\n'
    good = check_files(tmp_path / "ok", {"x/main.lead": script, "x/t/a.html": "<p>{{ email }}</p>"})
    assert codes(good) == []
    bad = check_files(
        tmp_path / "bad", {"x/main.lead": script, "x/t/a.html": "<p>\n{{ email }\n</p>"}
    )
    d = only(bad, "F003")
    assert d.span.file.endswith("t/a.html") and d.span.line == 2
    assert d.span.file in bad.sources  # so the renderer can show the template line
    missing = check_files(tmp_path / "missing", {"x/main.lead": script})
    assert codes(missing) == ["F007"]
    huge = check_files(
        tmp_path / "huge", {"x/main.lead": script, "x/t/a.html": "<p>x</p>\n" * 500_000}
    )
    assert "larger than 4 MB" in only(huge, "F007").message


def test_template_file_variable_points_into_the_file(tmp_path: Path) -> None:
    script = 'message a:\n  channel email\n  subject "s"\n  html file "a.html"\n'
    result = check_files(tmp_path, {"main.lead": script, "a.html": "<p>\n  Hi {{ nick }}\n</p>"})
    d = only(result, "F004")
    assert (d.span.line, d.span.column, d.span.end_column) == (2, 9, 13)


def test_missing_body_after_a_syntax_error_is_not_reported_twice(tmp_path: Path) -> None:
    text = 'message deal:\n    channel email\n  text "Hi"\n'
    assert codes(check_text(tmp_path, text)) == ["S004"]


def test_template_nested_too_deeply_is_a_diagnostic(tmp_path: Path) -> None:
    template = "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}"
    text = f'message a:\n  channel sms\n  text "{template}"\n'
    assert codes(check_text(tmp_path, text)) == ["F003"]


def test_constant_segment_in_a_when_trigger(tmp_path: Path) -> None:
    never = "segment impossible = score < 0\n"
    assert codes(check_text(tmp_path, never + flow("send deal", header="when impossible"))) == [
        "F009"
    ]
    loop = "segment loop = loop\n"  # a cycle is reported once, and folding it terminates
    assert codes(check_text(tmp_path, loop + flow("send deal", header="when loop"))) == ["N014"]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # a wait of any kind on some path: the flow may still run when the cycle comes back
        ("enroll b\nif score > 1:\n  wait for s up to 1h\n", ["F022"]),
        ("enroll b\nif score > 1:\n  wait until now + 1h\n", ["F022"]),
        ("enroll b\nif score > 1:\n  check score > 2 within 1h\n", ["F022"]),
        ("enroll b\ncheck score > 2 else wait 1d\n", ["F022"]),
        ('enroll b\nif score > 1:\n  tag "x"\nelse:\n  wait 1d\n', ["F022"]),
        ('enroll b\nsplit t:\n  50%: wait 1d\n  50%: tag "x"\n', ["F022"]),
        # a `check` without `within` waits for nothing: the enroll before it is certain
        ("enroll b\ncheck score > 2\n", ["F020"]),
        # after something that may end the flow, an enroll is not certain
        ('split t:\n  50%: exit\n  50%: tag "x"\nenroll b\n', ["F022"]),
        ("if score > 1:\n  exit\nenroll b\n", ["F022"]),
        ("if score > 1:\n  check score > 2\nenroll b\n", ["F022"]),
        # an enroll in any branch or arm, or in a check's else, is reached at once
        ("check score > 2 else enroll b\n", ["F022"]),
        ('if score > 1:\n  tag "x"\nelse:\n  enroll b\n', ["F022"]),
        ('split t:\n  50%: tag "x"\n  50%: enroll b\n', ["F022"]),
        # a path that exits at once ends the flow: it can be entered again
        ("enroll b\nif score > 1:\n  wait 1d\nexit\n", ["F022"]),
        # every path waits before the enroll: no cycle at one instant
        ("wait for s up to 1h\nenroll b\n", []),
        ("wait until now + 1h\nenroll b\n", []),
        # every path waits after the enroll: the flow still runs when the cycle comes back
        ("enroll b\nif score > 1:\n  wait 1d\nelse:\n  wait 2d\n", []),
        ("enroll b\nsplit t:\n  50%: wait 1d\n  50%: wait 2d\n", []),
        # an enroll after an `exit` is never reached (F002), not a cycle
        ("exit\nenroll b\n", ["F002"]),
    ],
)
def test_which_enroll_cycles_are_certain_possible_or_none(
    tmp_path: Path, steps: str, expected: list[str]
) -> None:
    """F020 when each flow enrolls the next on every run with no wait anywhere; F022 when
    the enroll is under a condition or some path waits but one runs to its end at once;
    nothing when every path waits before the enroll (docs/diagnostics.md)."""
    body = "".join(f"  {line}\n" for line in steps.splitlines())
    text = f"flow a:\n  on s\n  reenter always\n{body}flow b:\n  reenter always\n  enroll a\n"
    assert codes(check_text(tmp_path, text)) == expected
