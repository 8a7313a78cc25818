"""Name resolution: unknown names, the event rule, duplicates, and "did you mean"."""

from __future__ import annotations

from pathlib import Path

import pytest
from checking import MESSAGES, check_files, check_text, codes, only

MESSAGE_DEAL = 'message deal:\n  channel email\n  subject "s"\n  text "t"\n'

DESIGN_CARD = """\
metric propensity = sigmoid(-3 + 1.2 * count(added_to_cart within 30d))

message deal:
  channel email
  subject "20% off"
  text "Hi {{ email }}"

message final:
  channel email
  subject "Last call"
  text "Hi"

when score > 50 and propensity < 60% then send "deal" ; wait 24h ; check opened else send "final"
"""


def test_design_card_one_liner_is_clean(tmp_path: Path) -> None:
    result = check_text(tmp_path, DESIGN_CARD)
    assert result.diagnostics == []
    assert result.program is not None
    assert list(result.program.flows) == ["main:13"]


def test_unknown_message_suggests_the_closest(tmp_path: Path) -> None:
    d = only(check_text(tmp_path, MESSAGES + "when score > 50 then send dael\n"), "N001")
    assert d.message == "unknown message `dael`"
    assert d.help is not None and "did you mean `deal`?" in d.help
    assert (d.span.line, d.span.column) == (14, 27)


def test_undeclared_events_are_open_ended(tmp_path: Path) -> None:
    result = check_text(tmp_path, 'score:\n  signup_done +5 where plan == "pro"\n')
    assert result.diagnostics == []


def test_misspelt_declared_event_is_an_error(tmp_path: Path) -> None:
    text = "event order_completed(total: number)\nscore:\n  order_complete +5\n"
    d = only(check_text(tmp_path, text), "N002")
    assert d.help is not None and "`order_completed`" in d.help


def test_misspelt_builtin_event_is_an_error(tmp_path: Path) -> None:
    d = only(check_text(tmp_path, "score:\n  message_opend +1\n"), "N002")
    assert "message_opened" in (d.help or "")


def test_of_two_undeclared_near_names_the_rarer_is_reported(tmp_path: Path) -> None:
    text = "score:\n  signed_up +1\n  signed_up +2 where x > 1\n  signd_up +3\n"
    d = only(check_text(tmp_path, text), "N002")
    assert d.message == "unknown event `signd_up`"


def test_numbered_events_are_not_misspellings(tmp_path: Path) -> None:
    text = "event step1(n: number)\nscore:\n  step1 +1\n  step2 +1\n  step12 +1\n"
    assert codes(check_text(tmp_path, text)) == []


def test_unknown_property_of_declared_event(tmp_path: Path) -> None:
    text = "event order_completed(total: number)\nscore:\n  order_completed +5 where totl > 1\n"
    d = only(check_text(tmp_path, text), "N003")
    assert "did you mean `total`?" in (d.help or "")


def test_event_dot_property_after_wait_for_uses_that_event(tmp_path: Path) -> None:
    text = (
        "event a(x: number)\nevent b(y: number)\n"
        'flow f:\n  on a\n  if event.x > 1:\n    tag "t"\n'
        '  wait for b up to 1d\n  if event.x > 1:\n    tag "u"\n'
    )
    d = only(check_text(tmp_path, text), "N003")
    assert d.message == "event `b` has no property `x`" and d.span.line == 8


def test_unknown_name_in_condition(tmp_path: Path) -> None:
    text = 'trait first_name: text\nsegment s = frist_name == "A"\n'
    d = only(check_text(tmp_path, text), "N004")
    assert "did you mean `first_name`?" in (d.help or "")


def test_message_status_only_inside_flows(tmp_path: Path) -> None:
    assert codes(check_text(tmp_path, "segment s = opened\n")) == ["N004"]


def test_unknown_flow_channel_function_timezone(tmp_path: Path) -> None:
    text = (
        MESSAGES
        + 'settings:\n  timezone "Mars/Olympus"\n  cap mail 1 per 1d\n'
        + "metric m = cuont(x)\n"
        + "flow f:\n  on signed_up\n  enroll nowhere\n"
    )
    assert codes(check_text(tmp_path, text)) == ["N008", "N006", "N007", "N005"]


def test_valid_timezone_is_accepted(tmp_path: Path) -> None:
    assert codes(check_text(tmp_path, 'settings:\n  timezone "Asia/Ho_Chi_Minh"\n')) == []


def test_duplicate_across_files_points_at_the_first(tmp_path: Path) -> None:
    result = check_files(
        tmp_path,
        {
            "main.lead": 'use "other.lead"\nsegment vip = score > 90\n',
            "other.lead": "segment vip = score > 80\n",
        },
    )
    d = only(result, "N009")
    assert d.span.file.endswith("main.lead")
    assert d.labels and d.labels[0].span.file.endswith("other.lead")


def test_second_decay_and_duplicate_event_property(tmp_path: Path) -> None:
    text = (
        "event e(a: number, a: text)\n"
        "score:\n  e +1\n  decay 1 every 1d idle\n  decay 2 every 1d idle\n"
    )
    assert codes(check_text(tmp_path, text)) == ["N012", "N013"]


def test_every_problem_is_reported_in_one_run(tmp_path: Path) -> None:
    text = MESSAGES + (
        "segment a = scroe > 1\n"
        'segment b = score > "x"\n'
        'flow f:\n  on signed_up\n  send dael\n  wait "abc"\n  enroll nope\n'
    )
    assert codes(check_text(tmp_path, text)) == ["N004", "T001", "N001", "T003", "N005"]


def test_short_undeclared_events_are_not_misspellings(tmp_path: Path) -> None:
    assert codes(check_text(tmp_path, "score:\n  a +1\n  b +1\n  clik +1\n  click +1\n")) == []


def test_settings_given_twice_across_files(tmp_path: Path) -> None:
    result = check_files(
        tmp_path,
        {
            "main.lead": 'use "base.lead"\nsettings:\n  timezone "UTC"\n  quiet hours 21:00 to 08:00\n',
            "base.lead": 'settings:\n  timezone "Europe/Paris"\n  quiet hours 22:00 to 07:00\n',
        },
    )
    assert codes(result) == ["N013", "N013"]
    assert all(d.labels[0].span.file.endswith("base.lead") for d in result.diagnostics)
    # The help says what to do with a setting, not a name ("rename one of them").
    assert all("remove one" in (d.help or "") for d in result.diagnostics)
    assert not any("rename" in (d.help or "") for d in result.diagnostics)


def test_several_caps_on_one_channel_all_count(tmp_path: Path) -> None:
    result = check_files(
        tmp_path,
        {
            "main.lead": 'use "base.lead"\nsettings:\n  cap email 1 per 1d\n  cap email 3 per 7d\n',
            "base.lead": "settings:\n  cap email 10 per 30d\n  cap sms 1 per 1d\n",
        },
    )
    assert codes(result) == []
    assert result.program is not None
    caps = sorted((c.channel, c.count, c.per_seconds) for c in result.program.caps)
    assert caps == [
        ("email", 1, 86400),
        ("email", 3, 7 * 86400),
        ("email", 10, 30 * 86400),
        ("sms", 1, 86400),
    ]


def test_builtin_names_cannot_be_redeclared(tmp_path: Path) -> None:
    text = "trait email: text\nevent unsubscribed(channel: text)\nmetric score = 1\n"
    assert codes(check_text(tmp_path, text)) == ["N009", "N009", "N009"]


def test_message_field_given_twice_and_unknown_field(tmp_path: Path) -> None:
    text = 'message m:\n  channel sms\n  text "a"\n  text "b"\n  txet "c"\n'
    result = check_text(tmp_path, text)
    assert codes(result) == ["N013", "N016"]
    assert [d.severity for d in result.diagnostics] == ["error", "warning"]


@pytest.mark.parametrize(
    ("first", "second"), [("reenter always", "reenter never"), ("edits migrate", "edits keep")]
)
def test_a_flow_clause_given_twice(tmp_path: Path, first: str, second: str) -> None:
    text = MESSAGES + f"flow f:\n  on started\n  {first}\n  {second}\n  send deal\n"
    result = check_text(tmp_path, text)
    assert codes(result) == ["N013"]
    (problem,) = result.diagnostics
    line = text.splitlines().index(f"  {second}") + 1
    assert (problem.span.line, problem.span.column) == (line, 3)
    assert problem.labels[0].span.line == line - 1
    assert f"`{second.split()[0]}` is set twice in flow `f`" == problem.message


@pytest.mark.parametrize("decl", ["event signed_up", "event signed_up()", 'event "Signed Up"'])
def test_an_event_declared_without_properties(tmp_path: Path, decl: str) -> None:
    text = f"{decl}\nscore:\n  signed_up +1\n  signed_upp +1\n"
    # Declared, so a near name is a misspelling of it; nothing about the parentheses.
    d = only(check_text(tmp_path, text), "N002")
    assert "signed_up" in (d.help or "")
    result = check_text(tmp_path, f"{decl}\nscore:\n  signed_up +1 where plan == 1\n")
    assert only(result, "N003").message == "event `signed_up` has no property `plan`"


@pytest.mark.parametrize(
    "name", ['"Added To Wishlist"', '"added to wishlist"', '"Added-To-Wishlist!"']
)
def test_a_quoted_event_name_is_declared_in_its_normalised_form(tmp_path: Path, name: str) -> None:
    decl = f"event {name}(sku: text, price: number)\n"
    ok = decl + 'score:\n  added_to_wishlist +2 where sku == "A1"\n  "Added To Wishlist" +1\n'
    assert codes(check_text(tmp_path, ok)) == []
    # Its properties are known, with their types.
    wrong = decl + "score:\n  added_to_wishlist +2 where sku > price + 1\n"
    assert codes(check_text(tmp_path, wrong)) != []
    twice = decl + "event added_to_wishlist\n"
    assert only(check_text(tmp_path, twice), "N009").message == (
        "event `added_to_wishlist` is defined twice"
    )


def test_a_quoted_event_name_needs_a_letter_or_digit(tmp_path: Path) -> None:
    d = only(check_text(tmp_path, 'event "--"(a: number)\n'), "S005")
    assert d.span.line == 1 and d.span.column == 7


def test_every_quoted_event_name_without_a_letter_or_digit_is_s005_and_only_that(
    tmp_path: Path,
) -> None:
    # Two such declarations are not "defined twice" (that was N009 with no name in it,
    # "event is set twice"), and a reference to one (`on`, `wait for`, `count`) matches no
    # incoming event, so it is S005 too (it was accepted in silence).
    text = (
        'event "--"\nevent ""\n'
        'flow f:\n  on "!!!"\n  wait for "  " up to 1d\n  check count("-") >= 1\n'
    )
    result = check_text(tmp_path, text)
    assert [(d.code, d.span.line, d.span.column) for d in result.diagnostics] == [
        ("S005", 1, 7),
        ("S005", 2, 7),
        ("S005", 4, 6),
        ("S005", 5, 12),
        ("S005", 6, 15),
    ]


@pytest.mark.parametrize("step", ["tag vip", "untag vip", "tag vip_customer"])
def test_a_bare_word_as_a_tag_suggests_quoting_it(tmp_path: Path, step: str) -> None:
    word, name = step.split()
    d = only(check_text(tmp_path, f"flow f:\n  on x\n  {step}\n"), "N004")
    assert d.help == f'a tag is text: write `{word} "{name}"`'
    # A declared text trait is a fine tag.
    assert codes(check_text(tmp_path, f"trait {name}: text\nflow f:\n  on x\n  {step}\n")) == []


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ("segment deal = score > 1\n", MESSAGE_DEAL, "`deal` is already the name of a segment"),
        (
            MESSAGE_DEAL,
            "flow deal:\n  on e\n  send deal\n",
            "`deal` is already the name of a message",
        ),
        (
            "event deal(total: number)\n",
            "metric deal = 1\n",
            "`deal` is already the name of an event",
        ),
        ('flow deal:\n  on e\n  tag "x"\n', "event deal\n", "`deal` is already the name of a flow"),
        ('event "Deal"\n', "trait deal: text\n", "`deal` is already the name of an event"),
    ],
)
def test_a_name_is_defined_once_whatever_its_kind(
    tmp_path: Path, first: str, second: str, message: str
) -> None:
    result = check_files(
        tmp_path, {"main.lead": f'use "other.lead"\n{second}', "other.lead": first}
    )
    d = only(result, "N009")
    assert d.message == message
    assert d.span.file.endswith("main.lead") and d.span.line == 2
    assert d.labels and d.labels[0].span.file.endswith("other.lead")
    assert result.program is None
