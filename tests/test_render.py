"""The four renderings of diagnostics, checked on hand-made diagnostics."""

from __future__ import annotations

import json

from leadlang.codes import CODES
from leadlang.diagnostics import Diagnostic, Label
from leadlang.render import render
from leadlang.source import Source

TEXT = "message deal:\n  channel email\n\nflow f:\n\tsend dael ; wait 1d\n"
SOURCE = Source("x.lead", TEXT)


def unknown_message() -> Diagnostic:
    start = TEXT.index("dael")
    return Diagnostic(
        code="N001",
        severity="error",
        message="unknown message `dael`",
        span=SOURCE.span(start, start + 4),
        help="did you mean `deal`?",
        labels=(Label(span=SOURCE.span(8, 12), message="similar name"),),
    )


def two_sends() -> Diagnostic:
    return Diagnostic(code="F011", severity="warning", message="two sends", span=SOURCE.span(0, 7))


def test_full_shows_line_caret_and_help() -> None:
    out = render([unknown_message()], {"x.lead": SOURCE}, "full", color=False)
    lines = out.splitlines()
    assert lines[0] == "error[N001]: unknown message `dael`"
    assert lines[1] == " --> x.lead:5:7"
    source_line = next(line for line in lines if "send dael" in line)
    caret_line = lines[lines.index(source_line) + 1]
    # The tab is shown as spaces, and the carets sit exactly under `dael`.
    assert caret_line.index("^") == source_line.index("dael")
    assert caret_line.count("^") == 4
    assert "---- similar name" in out
    assert "= help: did you mean `deal`?" in out
    assert lines[-1] == "error: 1 error"
    assert "\x1b[" not in out


def test_the_caret_sits_under_its_span_in_terminal_columns_and_controls_are_escaped() -> None:
    # A wide character takes two columns and a combining mark none; a control character from
    # the script (an escape sequence, a bell) is shown escaped, never sent to the terminal.
    for before, shown, in_line in (
        ("日本語", "日本語", "日本語"),
        ("e\u0301\u0301", "e\u0301\u0301", "e\u0301\u0301"),
        ("\x1b[2J\x07", "\\x1b[2J\\x07", "\\x1b[2J\\x07"),
        ("ab\t", "ab\\t", 'ab   "'),  # in the line, a tab goes to the next multiple of 4
    ):
        text = f'flow f:\n  tag "{before}" oops\n'
        source = Source("w.lead", text)
        start = text.index("oops")
        found = Diagnostic(
            code="S001",
            severity="error",
            message=f"after `{before}`",
            span=source.span(start, start + 4),
            help=f"not `{before}`",
        )
        for out in (
            render([found], {"w.lead": source}, "full", color=False),
            render([found], {}, "concise"),
        ):
            assert "\x1b" not in out and "\x07" not in out
        out = render([found], {"w.lead": source}, "full", color=False)
        assert out.splitlines()[0] == f"error[S001]: after `{shown}`"
        source_line = next(line for line in out.splitlines() if "oops" in line)
        assert in_line in source_line
        caret_line = out.splitlines()[out.splitlines().index(source_line) + 1]
        prefix = source_line[: source_line.index("oops")]
        wide = sum(2 if "\u3040" <= ch <= "\u9fff" else ch != "\u0301" for ch in prefix)
        assert caret_line.index("^") == wide and caret_line.count("^") == 4


def test_full_summary_counts_and_colour() -> None:
    out = render([two_sends(), unknown_message()], {"x.lead": SOURCE}, "full", color=True)
    assert "\x1b[" in out
    plain = render([two_sends(), unknown_message()], {"x.lead": SOURCE}, "full", color=False)
    assert plain.splitlines()[-1] == "error: 1 error, 1 warning"
    assert plain.index("warning[F011]") < plain.index("error[N001]")  # sorted by position


def test_full_multiline_span_underlines_its_first_line() -> None:
    d = Diagnostic(code="N001", severity="error", message="m", span=SOURCE.span(0, 20))
    out = render([d], {"x.lead": SOURCE}, "full", color=False)
    assert "  | " + "^" * len("message deal:") in out


def test_a_span_running_past_the_end_of_its_line_is_underlined_to_its_end() -> None:
    # (the end of a file without a final newline, where more text was expected): one caret
    # per character the span covers, those past the line's end too
    text = 'flow f:\n  tag "x'
    source = Source("w.lead", text)
    start = text.index('"x')
    d = Diagnostic(
        code="S001", severity="error", message="m", span=source.span(start, len(text) + 2)
    )
    out = render([d], {"w.lead": source}, "full", color=False)
    lines = out.splitlines()
    source_line = next(line for line in lines if 'tag "x' in line)
    caret_line = lines[lines.index(source_line) + 1]
    assert caret_line.index("^") == source_line.index('"x')
    assert caret_line.count("^") == 4


def test_concise_is_one_line_each() -> None:
    out = render([unknown_message(), two_sends()], {}, "concise")
    assert out == (
        "x.lead:1:1: warning[F011] two sends\nx.lead:5:7: error[N001] unknown message `dael`\n"
    )


def test_empty_outputs() -> None:
    assert render([], {}, "full") == ""
    assert render([], {}, "concise") == ""
    assert json.loads(render([], {}, "json")) == []
    assert json.loads(render([], {}, "sarif"))["runs"][0]["results"] == []


def test_json_fields() -> None:
    [item] = json.loads(render([unknown_message()], {}, "json"))
    assert item["file"] == "x.lead"
    assert (item["line"], item["column"], item["end_line"], item["end_column"]) == (5, 7, 5, 11)
    assert item["severity"] == "error" and item["code"] == "N001"
    assert item["message"] == "unknown message `dael`"
    assert item["help"] == "did you mean `deal`?"
    assert item["labels"][0]["line"] == 1


def test_sarif_is_what_code_scanning_reads() -> None:
    log = json.loads(render([unknown_message(), two_sends()], {}, "sarif"))
    assert log["version"] == "2.1.0"
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["F011", "N001"]
    assert rules[1]["shortDescription"]["text"] == CODES["N001"].summary
    assert rules[1]["fullDescription"]["text"] == CODES["N001"].explanation
    results = run["results"]
    assert [r["level"] for r in results] == ["warning", "error"]
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"] == "x.lead"
        assert set(location["region"]) == {"startLine", "startColumn", "endLine", "endColumn"}
    assert results[1]["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 5,
        "startColumn": 7,
        "endLine": 5,
        "endColumn": 11,
    }
