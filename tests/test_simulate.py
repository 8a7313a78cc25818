"""`leadlang simulate` as a user runs it (LANGUAGE.md section 9)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from unittest import mock

from bounded import bounded
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from leadlang.cli import main
from leadlang.runtime import simulate
from leadlang.runtime.engine import Event
from leadlang.runtime.server.ingest import parse_message
from leadlang.runtime.simulate import parse_line, read_events

SCRIPT = """
message hello:
  channel email
  subject "hi"
  text "hi"

flow welcome:
  on signed_up
  send hello
  wait 1d
  send hello
"""


def _files(tmp_path: Path, lines: list[str], script: str = SCRIPT) -> tuple[str, str]:
    lead = tmp_path / "welcome.lead"
    lead.write_text(script)
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    return str(lead), str(events)


GOOD = [
    '{"type": "identify", "userId": "ann", "traits": {"email": "ann@x"}, "timestamp": "2025-01-01T00:00:00Z"}',
    '{"type": "track", "userId": "ann", "event": "Signed Up", "timestamp": "2025-01-01T10:00:00Z"}',
]


def _simulate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["simulate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_effects_in_order(tmp_path: Path) -> None:
    lead, events = _files(tmp_path, GOOD)
    code, out, _ = _simulate(lead, "--events", events)
    assert code == 0
    effects = [json.loads(line) for line in out.splitlines()]
    assert effects == [
        {"at": "2025-01-01T10:00:00Z", "contact": "ann", "action": "enter", "flow": "welcome"},
        {
            "at": "2025-01-01T10:00:00Z",
            "contact": "ann",
            "action": "send",
            "flow": "welcome",
            "step": "s0",
            "channel": "email",
            "message": "hello",
        },
        {
            "at": "2025-01-02T10:00:00Z",
            "contact": "ann",
            "action": "send",
            "flow": "welcome",
            "step": "s2",
            "channel": "email",
            "message": "hello",
        },
        {
            "at": "2025-01-02T10:00:00Z",
            "contact": "ann",
            "action": "exit",
            "flow": "welcome",
            "reason": "done",
        },
    ]


def test_until_stops_the_clock(tmp_path: Path) -> None:
    lead, events = _files(tmp_path, GOOD)
    code, out, _ = _simulate(lead, "--events", events, "--until", "+12h")
    assert code == 0
    assert [json.loads(line)["action"] for line in out.splitlines()] == ["enter", "send"]
    code, out, _ = _simulate(lead, "--events", events, "--until", "2025-01-02T10:00:00Z")
    assert [json.loads(line)["action"] for line in out.splitlines()][-1] == "exit"


def test_text_format_is_readable(tmp_path: Path) -> None:
    lead, events = _files(tmp_path, GOOD)
    code, out, _ = _simulate(lead, "--events", events, "--format", "text")
    assert code == 0
    # One line per effect: time, contact and action in columns, then the fields as key=value.
    assert out.splitlines() == [
        "2025-01-01T10:00:00Z  ann              enter   flow=welcome",
        "2025-01-01T10:00:00Z  ann              send    flow=welcome step=s0 channel=email message=hello",
        "2025-01-02T10:00:00Z  ann              send    flow=welcome step=s2 channel=email message=hello",
        "2025-01-02T10:00:00Z  ann              exit    flow=welcome reason=done",
    ]


def test_expect_passes_and_fails_with_a_diff(tmp_path: Path) -> None:
    lead, events = _files(tmp_path, GOOD)
    _, out, _ = _simulate(lead, "--events", events)
    expected = tmp_path / "expected.jsonl"
    expected.write_text(out)
    assert _simulate(lead, "--events", events, "--expect", str(expected))[0] == 0
    expected.write_text(out.replace('"hello"', '"goodbye"', 1))
    code, out2, _ = _simulate(lead, "--events", events, "--expect", str(expected))
    assert code == 1
    assert '-{"action":"send"' in out2 and '+{"action":"send"' in out2


def test_expect_takes_back_what_simulate_wrote_whatever_the_ids_hold(tmp_path: Path) -> None:
    # simulate writes U+2028, U+0085 and \x1c as they are: none of them ends a line there
    ann = "ann\u2028a\x85b\x1cc"
    lines = [json.dumps(json.loads(line) | {"userId": ann}) for line in GOOD]
    lead, events = _files(tmp_path, lines)
    _, out, _ = _simulate(lead, "--events", events)
    assert "\u2028" in out
    expected = tmp_path / "expected.jsonl"
    expected.write_text(out, encoding="utf-8")
    assert _simulate(lead, "--events", events, "--expect", str(expected)) == (0, "", "")
    expected.write_text(out.replace("\n", "\r\n"), encoding="utf-8")  # (as a Windows checkout)
    assert _simulate(lead, "--events", events, "--expect", str(expected))[0] == 0


def test_bad_lines_are_named_and_exit_2_unless_skipped(tmp_path: Path) -> None:
    bad = [
        *GOOD,
        "{not json",
        '{"type": "batch", "userId": "ann", "timestamp": "2025-01-01T00:00:00Z"}',
        '{"type": "track", "event": "x", "timestamp": "2025-01-01T00:00:00Z"}',
        '{"type": "track", "userId": "ann", "event": "x", "timestamp": "yesterday"}',
        '{"type": "track", "userId": "ann", "timestamp": "2025-01-01T00:00:00Z"}',
    ]
    lead, events = _files(tmp_path, bad)
    code, out, err = _simulate(lead, "--events", events)
    assert code == 2
    for number in (3, 4, 5, 6, 7):
        assert f"line {number}:" in err
    assert "Traceback" not in err
    code, out, err = _simulate(lead, "--events", events, "--skip-bad")
    assert code == 0
    assert len(out.splitlines()) == 4


def test_a_line_over_1_mb_is_a_bad_line_and_the_lines_after_it_are_read(tmp_path: Path) -> None:
    huge = '{"type": "track", "userId": "ann", "event": "' + "x" * (1 << 20) + '"}'
    lead, events = _files(tmp_path, [GOOD[0], huge, *GOOD[1:]])
    with open(events, "a") as log:
        log.write(huge[:-2])  # (the last line, cut off without its newline)
    code, _, err = _simulate(lead, "--events", events)
    assert code == 2
    assert "line 2: longer than 1 MB" in err
    assert f"line {len(GOOD) + 2}: longer than 1 MB" in err
    code, out, _ = _simulate(lead, "--events", events, "--skip-bad")
    assert code == 0
    (tmp_path / "good").mkdir()
    good = _files(tmp_path / "good", GOOD)
    assert out == _simulate(good[0], "--events", good[1])[1]
    assert '"action":"send"' in out


def test_script_errors_and_missing_files_exit_2(tmp_path: Path) -> None:
    lead, events = _files(tmp_path, GOOD, script="flow broken:\n  on signed_up\n  send nowhere\n")
    code, _, err = _simulate(lead, "--events", events)
    assert code == 2 and "nowhere" in err
    lead, _ = _files(tmp_path, GOOD)
    code, _, err = _simulate(lead, "--events", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "missing.jsonl" in err


def test_compile_prints_the_ir_with_versions(tmp_path: Path) -> None:
    lead, _ = _files(tmp_path, GOOD)
    result = CliRunner().invoke(main, ["compile", lead, "--format", "json"])
    assert result.exit_code == 0
    program = json.loads(result.output)
    flow = program["flows"][0]
    assert flow["name"] == "welcome" and len(flow["version"]) == 64
    assert [flow["states"][s]["kind"] for s in ("s0", "s1", "s2")] == ["send", "wait", "send"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
line_dicts = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["track", "identify", "page", "screen", "alias", "group"])
        | json_values,
        "userId": st.text(max_size=4) | json_values,
        "event": st.text(max_size=6) | json_values,
        "timestamp": st.sampled_from(["2025-01-01T00:00:00Z", "2025-01-01", "nope"]) | json_values,
        "properties": json_values,
        "traits": json_values,
    },
)


@settings(max_examples=200, deadline=None)
@given(line_dicts)
def test_any_json_line_parses_to_an_event_or_a_named_problem(data: dict[str, object]) -> None:
    parsed = parse_line(json.dumps(data).encode(), 7)
    if isinstance(parsed, str):  # a call simulate ignores, by its type
        assert parsed == data["type"] and parsed in ("alias", "group")
        return
    assert parsed is None or isinstance(parsed, Event) or str(parsed).startswith("line 7: ")
    if isinstance(parsed, Event):  # a contact id is always text
        assert isinstance(parsed.contact, str) and parsed.contact


def test_workers_print_the_same_effects_in_the_same_order(tmp_path: Path) -> None:
    lines = []
    for i in range(40):
        user = f"user{i}"
        at = f"2025-01-01T{i % 24:02d}:00:00Z"
        lines.append(
            f'{{"type": "identify", "userId": "{user}", "traits": {{"email": "{user}@x"}}, '
            f'"timestamp": "{at}"}}'
        )
        lines.append(
            f'{{"type": "track", "userId": "{user}", "event": "Signed Up", "timestamp": "{at}"}}'
        )
    lead, events = _files(tmp_path, lines)
    code, one, _ = _simulate(lead, "--events", events, "--workers", "1")
    assert code == 0 and one.count('"send"') == 80
    assert _simulate(lead, "--events", events, "--workers", "3") == (0, one, "")
    assert _simulate(lead, "--events", events, "--workers", "0")[0] == 2


raw_lines = (
    line_dicts.map(lambda data: json.dumps(data).encode())
    | st.sampled_from([b"", b"   ", b"{not json", b"[1, 2]", b'{"type": "track"} trailing'])
    | st.sampled_from(
        [
            b'{"type": "alias", "userId": "a", "timestamp": "2025-01-01T00:00:00Z"}',
            b'{"type": "group", "userId": 3, "timestamp": "2025-01-01T00:00:00Z"}',
            b'{"type": "screen", "userId": 0, "timestamp": "2025-01-01T00:00:00Z"}',
        ]
    )
    | st.builds(
        lambda user, event, minute: json.dumps(
            {
                "type": "track",
                "userId": user,
                "event": event,
                "timestamp": f"2025-01-01T00:{minute:02d}:00Z",
            }
        ).encode(),
        st.sampled_from(["ann", "bob"]),
        st.sampled_from(["Signed Up", "order completed", "--"]),
        st.integers(0, 59),
    )
)


@settings(max_examples=200, deadline=None)
@given(st.lists(raw_lines, max_size=30), st.booleans(), st.integers(8, 200))
def test_a_file_reads_as_its_lines_one_by_one(
    lines: list[bytes], final_newline: bool, chunk: int
) -> None:
    """A log file is decoded a chunk of lines at a time, falling back to one line at a time
    for a chunk with a blank or bad line: the same events, numbers and problems as reading
    each line on its own."""
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    with mock.patch.object(simulate, "CHUNK", chunk):
        from_file = read_events(io.BytesIO(data))
    one_by_one = read_events(data.split(b"\n"))
    assert from_file.events == one_by_one.events
    assert from_file.bad == one_by_one.bad
    assert from_file.ignored == one_by_one.ignored


@settings(max_examples=200, deadline=None)
@given(st.lists(raw_lines, max_size=30), st.booleans(), st.integers(8, 100), st.integers(2, 4))
def test_a_line_over_the_limit_is_a_bad_line_wherever_the_chunks_cut(
    lines: list[bytes], final_newline: bool, chunk: int, times: int
) -> None:
    """With the limit on a line's length made small (at least two chunks, as 1 MB is to
    64 KB): each line over it is a bad line of its own number, and every other line reads as
    on its own, however the chunks fall."""
    limit = chunk * times
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    with (
        mock.patch.object(simulate, "CHUNK", chunk),
        mock.patch.object(simulate, "MAX_LINE", limit),
    ):
        from_file = read_events(io.BytesIO(data))
    short = [line if len(line) <= limit else b"" for line in data.split(b"\n")]
    expected = read_events(short)
    too_long = [
        simulate.BadLine(number, simulate.TOO_LONG)
        for number, line in enumerate(data.split(b"\n"), start=1)
        if len(line) > limit
    ]
    assert from_file.events == expected.events
    assert from_file.bad == sorted([*expected.bad, *too_long], key=lambda bad: bad.line)
    assert from_file.ignored == expected.ignored


def test_a_bad_json_line_is_named_with_its_column(tmp_path: Path) -> None:
    lead, events = _files(tmp_path, [*GOOD, '{"type": "track", "userId": "é", x}'])
    code, _, err = _simulate(lead, "--events", events)
    assert code == 2
    assert "line 3: not valid JSON (object keys must be strings at column 34)" in err


def _event_of(line: dict[str, object]) -> Event:
    parsed = parse_line(json.dumps(line).encode(), 1)
    assert isinstance(parsed, Event), parsed
    return parsed


AT = "2025-01-01T00:00:00Z"


def test_segment_view_calls_are_tracks_of_their_view_events() -> None:
    for kind, name in (("page", "page_viewed"), ("screen", "screen_viewed")):
        event = _event_of({"type": kind, "userId": "a", "name": "Home", "timestamp": AT})
        assert event.name == name and event.traits is None


def test_an_identify_reads_its_context_traits_as_serves_ingest_does() -> None:
    """RudderStack's client sends an identify's traits only as `context.traits`; serve's ingest
    takes them (under the message's own `traits`), so simulate must too, or the same log
    gives the two different answers (a send skipped for want of an email)."""
    lines: list[dict[str, object]] = [
        {"context": {"traits": {"email": "ann@x", "plan": "free"}, "ip": "10.0.0.1"}},
        {"context": {"traits": {"email": "ann@x", "plan": "free"}}, "traits": {"plan": "pro"}},
        {"context": {"ip": "10.0.0.1"}, "traits": {"plan": "pro"}},
        {"context": {"traits": None}, "traits": {"plan": "pro"}},
        {"context": None},
    ]
    for extra in lines:
        line = {"type": "identify", "userId": "ann", "timestamp": AT, **extra}
        served = parse_message(line, None, 1.8e9, None)
        assert served is not None
        traits = json.loads(served.body)["tr"]
        assert _event_of(line).traits == traits, extra
        (event,) = read_events(io.BytesIO(json.dumps(line).encode() + b"\n")).events
        assert event.traits == traits, extra
    # a `context.traits` that is not an object is refused by both
    line = {"type": "identify", "userId": "ann", "timestamp": AT, "context": {"traits": [1]}}
    assert str(parse_line(json.dumps(line).encode(), 2)) == (
        "line 2: context.traits must be an object"
    )
    log = read_events(io.BytesIO(json.dumps(line).encode() + b"\n"))
    assert not log.events and len(log.bad) == 1
    # a track's `context.traits` says nothing (analytics.js copies the user's traits there)
    track = {"type": "track", "userId": "ann", "event": "x", "timestamp": AT}
    assert _event_of({**track, "context": {"traits": {"email": "b@x"}}}).traits is None


def test_contact_ids_of_any_json_type_are_their_text() -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"userId": 0}, "0"),
        ({"userId": 12345}, "12345"),
        ({"userId": 1.5}, "1.5"),
        ({"userId": False, "anonymousId": "x"}, "x"),
        ({"userId": {"id": 1}, "anonymousId": 2}, "2"),
        ({"userId": 10**30}, str(10**30)),
        # (a long one whole: two ids differing in their last digit are two contacts)
        ({"userId": 10**90}, str(10**90)),
        ({"userId": 10**90 + 1}, str(10**90 + 1)),
        # (a float with an exponent as serve's ingest names it, so both see one contact)
        ({"userId": 2.5e16}, "2.5e+16"),
        ({"userId": None, "anonymousId": 0}, "0"),
        ({"userId": "", "anonymousId": "anon"}, "anon"),
        ({"userId": "ann", "anonymousId": "anon"}, "ann"),
    ]
    for ids, contact in cases:
        line = {"type": "track", "event": "x", "timestamp": AT, **ids}
        assert _event_of(line).contact == contact, ids
        # the fast, chunked reader agrees
        (event,) = read_events(io.BytesIO(json.dumps(line).encode() + b"\n")).events
        assert event.contact == contact, ids
    for ids in ({}, {"userId": ""}, {"userId": None}, {"userId": True}, {"anonymousId": []}):
        line = {"type": "track", "event": "x", "timestamp": AT, **ids}
        missing = parse_line(json.dumps(line).encode(), 4)
        assert str(missing) == "line 4: missing userId or anonymousId", ids


def test_properties_or_traits_that_are_no_object_make_a_bad_line() -> None:
    """As serve's ingest answers 400: a list or a text is no set of properties (simulate
    ran them as no properties at all, so the same log gave different results)."""
    cases: list[tuple[dict[str, object], str]] = [
        ({"type": "track", "event": "x", "properties": [1]}, "properties must be an object"),
        ({"type": "page", "properties": "home"}, "properties must be an object"),
        ({"type": "identify", "properties": 7}, "properties must be an object"),
        ({"type": "track", "event": "x", "traits": ["vip"]}, "traits must be an object"),
    ]
    for fields, problem in cases:
        line = json.dumps({"userId": "a", "timestamp": AT, **fields}).encode()
        assert str(parse_line(line, 2)) == f"line 2: {problem}", fields
        read = read_events(io.BytesIO(line + b"\n"))
        assert not read.events and [str(bad) for bad in read.bad] == [f"line 1: {problem}"]
    # null is no properties, as it always was
    line = {"type": "track", "userId": "a", "event": "x", "timestamp": AT, "properties": None}
    assert _event_of(line).props == {}


def test_alias_and_group_calls_are_counted_and_ignored(tmp_path: Path) -> None:
    lines = [
        *GOOD,
        '{"type": "alias", "userId": "ann", "previousId": "x", "timestamp": "2025-01-01T00:00:00Z"}',
        '{"type": "group", "userId": "ann", "groupId": "g", "timestamp": "2025-01-01T00:00:00Z"}',
        '{"type": "group", "userId": "bob", "groupId": "g", "timestamp": "2025-01-01T00:00:00Z"}',
    ]
    lead, events = _files(tmp_path, lines)
    code, out, err = _simulate(lead, "--events", events)
    assert code == 0
    assert len(out.splitlines()) == 4  # the same effects as without those calls
    assert "ignored 3 calls (1 alias, 2 group)" in err


def test_text_format_escapes_control_characters(tmp_path: Path) -> None:
    script = "flow f:\n  on signed_up\n  tag event.label\n"
    nasty = "a\nb\x1b[2J\u2028"
    line = {
        "type": "track",
        "userId": nasty,
        "event": "signed_up",
        "timestamp": AT,
        "properties": {"label": nasty},
    }
    lead, events = _files(tmp_path, [json.dumps(line)], script=script)
    code, out, _ = _simulate(lead, "--events", events, "--format", "text")
    assert code == 0
    lines = out.split("\n")[:-1]
    assert len(lines) == 3  # enter, tag, exit: nothing broke a line
    assert all("\x1b" not in text and "\u2028" not in text for text in lines)
    assert "a\\nb\\x1b[2J\\u2028" in lines[0]
    assert "tag=a\\nb\\x1b[2J\\u2028" in lines[1]
    # JSON keeps the exact text.
    code, out, _ = _simulate(lead, "--events", events)
    assert json.loads(out.split("\n")[0])["contact"] == nasty


TYPED = """
event order_completed(total: number, completed_on: datetime, note: text)
flow big:
  on order_completed where total > 50
  tag "big"
flow dated:
  on order_completed where completed_on >= 2025-01-01
  tag "dated"
"""


def test_text_values_of_declared_numbers_and_datetimes(tmp_path: Path) -> None:
    def order(user: str, **props: object) -> str:
        return json.dumps(
            {
                "type": "track",
                "userId": user,
                "event": "Order Completed",
                "timestamp": AT,
                "properties": props,
            }
        )

    lines = [
        order("text", total="99.5", completed_on="2025-02-01T10:00:00Z"),
        order("spaces", total=" 60 "),
        order("small", total="12"),
        order("number", total=70),
        order("words", total="a lot", completed_on="yesterday"),
        order("bool", total=True),
        order("inf", total="inf", note="1"),
    ]
    lead, events = _files(tmp_path, lines, script=TYPED)
    code, out, err = _simulate(lead, "--events", events)
    assert code == 0
    tagged = {(e["contact"], e["tag"]) for e in map(json.loads, out.splitlines()) if "tag" in e}
    assert tagged == {("text", "big"), ("text", "dated"), ("spaces", "big"), ("number", "big")}
    warnings = [text for text in err.splitlines() if text.startswith("warning")]
    assert warnings == [
        f'warning: {events}: line 5: order_completed: `total` is "a lot", expected a number;'
        ' `completed_on` is "yesterday", expected an ISO 8601 datetime',
        f"warning: {events}: line 6: order_completed: `total` is true, expected a number",
        f'warning: {events}: line 7: order_completed: `total` is "inf", expected a number',
    ]


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text())
def test_a_text_line_is_one_printable_line_whatever_the_ids(contact: str, tag: str) -> None:
    from leadlang.runtime.effects import format_text

    effect = {"at": AT, "contact": contact, "action": "tag", "flow": "f", "tag": tag}
    line = format_text(effect)
    assert line.isprintable()  # no control, separator or other unprintable character
    assert len(line.splitlines()) == 1


CYCLE = """
flow a:
  on signed_up
  reenter always
  enroll b

flow b:
  reenter always
  enroll a
"""

# The same chain through tags and `when` triggers: a cycle `check` cannot see.
TAG_CYCLE = """
flow a:
  on signed_up
  when "a" in tags
  reenter always
  untag "a"
  tag "b"

flow b:
  when "b" in tags
  reenter always
  untag "b"
  tag "a"
"""


def test_an_enroll_cycle_check_can_see_is_refused(tmp_path: Path) -> None:
    lead, events = _files(tmp_path, GOOD, CYCLE)
    with bounded(seconds=20):
        code, out, err = _simulate(lead, "--events", events)
    assert code == 2 and out == ""
    assert "error[F020]: flows enroll each other in a cycle that never settles" in err


def test_a_chain_that_never_settles_is_reported_not_a_hang(tmp_path: Path) -> None:
    lead, events = _files(tmp_path, GOOD, TAG_CYCLE)
    with bounded(seconds=20):
        code, out, err = _simulate(lead, "--events", events)
        text_code, text, _ = _simulate(lead, "--events", events, "--format", "text")
    assert code == 0 and text_code == 0
    stops = [e for e in map(json.loads, out.splitlines()) if e["action"] == "stop"]
    assert stops == [
        {
            "at": "2025-01-01T10:00:00Z",
            "contact": "ann",
            "action": "stop",
            "flow": "a",
            "reason": "never_settles",
            "cycle": ["a", "b", "a"],
        }
    ]
    assert "warning: a chain of flows that never settles was stopped" in err
    assert "cycle=a -> b -> a" in text
