"""The parser: every construct of LANGUAGE.md sections 2-5 to the AST, exact spans, and
syntax errors in words (never a grammar terminal name), several per file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from wellformed import assert_well_formed

from leadlang import ast
from leadlang.diagnostics import Diagnostic
from leadlang.source import Source

ParseText = Callable[..., tuple[ast.Module, list[Diagnostic]]]  # the `parse_text` fixture

CARD = 'when score > 50 and propensity < 60% then send "deal" ; wait 24h ; check opened else send "final"\n'


def only(parse_text: ParseText, text: str, path: str = "t.lead") -> ast.Decl:
    module, diagnostics = parse_text(text, path)
    assert diagnostics == []
    assert len(module.decls) == 1
    return module.decls[0]


def expr_of(parse_text: ParseText, text: str) -> ast.Expr:
    decl = only(parse_text, f"metric m = {text}\n")
    assert isinstance(decl, ast.MetricDecl)
    return decl.expr


def flow_steps(parse_text: ParseText, body: str) -> tuple[ast.Step, ...]:
    text = "flow f:\n" + "".join(f"  {line}\n" for line in body.strip("\n").split("\n"))
    decl = only(parse_text, text)
    assert isinstance(decl, ast.FlowDecl)
    return decl.steps


def errors(parse_text: ParseText, text: str) -> list[Diagnostic]:
    _, diagnostics = parse_text(text)
    assert diagnostics, "expected a syntax error"
    return diagnostics


# ---------------------------------------------------------------- the design card


def test_design_card_one_liner(parse_text: ParseText) -> None:
    flow = only(parse_text, CARD, "examples/card/deal.lead")
    assert isinstance(flow, ast.FlowDecl)
    assert flow.one_line is True
    assert flow.name.name == "deal:1"
    (trigger,) = flow.header
    assert isinstance(trigger, ast.WhenTrigger)
    cond = trigger.cond
    assert isinstance(cond, ast.Binary) and cond.op == "and"
    assert isinstance(cond.left, ast.Binary) and cond.left.op == ">"
    assert cond.left.left == ast.Name(name="score", span=cond.left.left.span)
    right = cond.right
    assert isinstance(right, ast.Binary) and isinstance(right.right, ast.Number)
    assert right.right.percent and right.right.value == 0.6
    send, wait, check = flow.steps
    assert isinstance(send, ast.Send) and send.message.name == "deal"
    assert isinstance(wait, ast.Wait) and isinstance(wait.duration, ast.Duration)
    assert wait.duration.seconds == 24 * 3600
    assert isinstance(check, ast.Check) and check.else_ is not None
    (final,) = check.else_
    assert isinstance(final, ast.Send) and final.message.name == "final"


def test_one_line_check_else_takes_one_step_and_the_rest_is_the_positive_path(
    parse_text: ParseText,
) -> None:
    flow = only(parse_text, 'when a then check opened else send x ; send y ; tag "t"\n')
    assert isinstance(flow, ast.FlowDecl)
    check, send_y, tag = flow.steps
    assert isinstance(check, ast.Check) and check.else_ is not None and len(check.else_) == 1
    assert isinstance(send_y, ast.Send) and send_y.message.name == "y"
    assert isinstance(tag, ast.Tag)


def test_one_line_on_flow_with_quoted_event(parse_text: ParseText) -> None:
    text = '\n\non "Order Completed" where total > 3 then tag "buyer"\n'
    flow = only(parse_text, text, "shop/orders.lead")
    assert isinstance(flow, ast.FlowDecl) and flow.name.name == "orders:3"
    (trigger,) = flow.header
    assert isinstance(trigger, ast.OnTrigger)
    assert trigger.event.name == "order_completed" and trigger.event.quoted
    assert isinstance(trigger.where, ast.Binary)


# ---------------------------------------------------------------- declarations


def test_use_module_and_path(parse_text: ParseText) -> None:
    module, diagnostics = parse_text('use std.segments\nuse "common/brand.lead"\n')
    assert diagnostics == []
    first, second = module.decls
    assert isinstance(first, ast.Use) and (first.target, first.is_path) == ("std.segments", False)
    assert first.span.end_column == len("use std.segments") + 1
    assert isinstance(second, ast.Use) and (second.target, second.is_path) == (
        "common/brand.lead",
        True,
    )


def test_settings(parse_text: ParseText) -> None:
    text = (
        'settings:\n  timezone "Europe/Paris"\n  quiet hours 21:00 to 08:00\n  cap email 2 per 1d\n'
    )
    settings = only(parse_text, text)
    assert isinstance(settings, ast.Settings)
    tz, quiet, cap = settings.items
    assert isinstance(tz, ast.TimezoneSetting) and tz.timezone.value == "Europe/Paris"
    assert isinstance(quiet, ast.QuietHoursSetting)
    assert (quiet.start.hour, quiet.start.minute, quiet.end.hour) == (21, 0, 8)
    assert isinstance(cap, ast.CapSetting)
    assert (cap.channel.name, cap.count.value, cap.per.seconds) == ("email", 2, 86400)


def test_event_and_trait_declarations(parse_text: ParseText) -> None:
    module, diagnostics = parse_text(
        "event order_completed(total: number, products: list, when_: foo)\n"
        'trait first_name: text = "there"\n'
        "trait vip\n"
    )
    assert diagnostics == []
    event, trait, bare = module.decls
    assert isinstance(event, ast.EventDecl) and event.name.name == "order_completed"
    assert [(p.name.name, p.type.name) for p in event.params] == [
        ("total", "number"),
        ("products", "list"),
        ("when_", "foo"),  # unknown types are the checker's business
    ]
    assert isinstance(trait, ast.TraitDecl) and trait.type is not None
    assert trait.type.name == "text" and trait.default == ast.String(
        value="there", span=trait.default.span
    )
    assert isinstance(bare, ast.TraitDecl) and bare.type is None and bare.default is None


def test_score_block(parse_text: ParseText) -> None:
    text = (
        "score:\n"
        "  page_viewed +1\n"
        '  "Added To Cart" -10\n'
        "  order_completed +25 where total > 100\n"
        "  decay 10 every 7d idle\n"
        "  decay 10% every 1d12h idle\n"
        "  max 100\n"
    )
    block = only(parse_text, text)
    assert isinstance(block, ast.ScoreBlock)
    r1, r2, r3 = block.rules
    assert (r1.event.name, r1.points.value, r1.where) == ("page_viewed", 1, None)
    assert (r2.event.name, r2.event.quoted, r2.points.value) == ("added_to_cart", True, -10)
    assert isinstance(r3.where, ast.Binary) and r3.where.op == ">"
    d1, d2 = block.decays  # duplicates are kept for the checker to report
    assert (d1.amount.value, d1.amount.percent, d1.every.seconds) == (10, False, 7 * 86400)
    assert (d2.amount.value, d2.amount.percent, d2.every.seconds) == (0.1, True, 36 * 3600)
    assert [m.value.value for m in block.maxes] == [100]


def test_metric_segment_message(parse_text: ParseText) -> None:
    module, diagnostics = parse_text(
        "metric propensity = sigmoid(-3 + 1.2 * count(added_to_cart within 30d))\n"
        "segment potential = score > 50 and propensity > 60%\n"
        "message deal:\n"
        "  channel email\n"
        '  subject "{{ first_name }}, 20% off"\n'
        '  html file "templates/deal.html"\n'
        '  headers {a: 1, "b c": "d"}\n'
    )
    assert diagnostics == []
    metric, segment, message = module.decls
    assert isinstance(metric, ast.MetricDecl) and isinstance(metric.expr, ast.Call)
    assert metric.expr.func.name == "sigmoid"
    assert isinstance(segment, ast.SegmentDecl) and segment.name.name == "potential"
    assert isinstance(message, ast.MessageDecl)
    channel, subject, html, headers = message.fields
    assert channel.key.name == "channel" and isinstance(channel.value, ast.Name)
    assert channel.value.name == "email" and not channel.from_file
    assert isinstance(subject.value, ast.String)
    assert html.from_file and isinstance(html.value, ast.String)
    assert html.value.value == "templates/deal.html"
    assert isinstance(headers.value, ast.ObjectLit)
    assert [e.key for e in headers.value.entries] == ["a", "b c"]


# ---------------------------------------------------------------- flows


def test_flow_header_clauses(parse_text: ParseText) -> None:
    text = (
        "flow f:\n"
        '  on order_completed where products.category contains "Winter"\n'
        "  when score > 5\n"
        "  exit on unsubscribed\n"
        "  exit when score < 3\n"
        "  goal order_completed where total > 1 within 30d\n"
        "  reenter after 3d\n"
        "  exit\n"
    )
    flow = only(parse_text, text)
    assert isinstance(flow, ast.FlowDecl) and not flow.one_line and flow.name.name == "f"
    on, when, exit_on, exit_when, goal, reenter = flow.header
    assert isinstance(on, ast.OnTrigger) and on.event.name == "order_completed"
    assert isinstance(on.where, ast.Binary) and on.where.op == "contains"
    assert isinstance(when, ast.WhenTrigger)
    assert isinstance(exit_on, ast.ExitOn) and exit_on.event.name == "unsubscribed"
    assert isinstance(exit_when, ast.ExitWhen)
    assert isinstance(goal, ast.Goal) and goal.where is not None
    assert isinstance(goal.within, ast.Duration) and goal.within.seconds == 30 * 86400
    assert isinstance(reenter, ast.Reenter) and reenter.mode == "after"
    assert isinstance(reenter.after, ast.Duration)
    assert [type(s) for s in flow.steps] == [ast.ExitStep]


@pytest.mark.parametrize("mode", ["never", "always"])
def test_reenter_modes(parse_text: ParseText, mode: str) -> None:
    flow = only(parse_text, f"flow f:\n  reenter {mode}\n  exit\n")
    assert isinstance(flow, ast.FlowDecl)
    assert flow.header == (ast.Reenter(mode=mode, after=None, span=flow.header[0].span),)  # type: ignore[arg-type]


def test_send_forms(parse_text: ParseText) -> None:
    a, b, c = flow_steps(
        parse_text, 'send deal\nsend email "deal two"\nsend sms deal with {code: "X1"}'
    )
    assert isinstance(a, ast.Send) and a.channel is None and a.message.name == "deal"
    assert isinstance(b, ast.Send) and b.channel is not None and b.channel.name == "email"
    assert b.message.name == "deal two"
    assert isinstance(c, ast.Send) and c.with_ is not None
    assert [e.key for e in c.with_.entries] == ["code"]


def test_wait_forms(parse_text: ParseText) -> None:
    steps = flow_steps(
        parse_text,
        "wait 1d12h\n"
        "wait until 09:00\n"
        'wait for "Service Subscribed" where plan == "pro" up to 1w else send reminder\n'
        "wait for service_subscribed up to 2d else:\n"
        "  send a\n"
        '  tag "late"\n'
        "wait for x up to 1h",
    )
    wait, until, inline, block, bare = steps
    assert isinstance(wait, ast.Wait) and isinstance(wait.duration, ast.Duration)
    assert wait.duration.seconds == 36 * 3600
    assert isinstance(until, ast.WaitUntil) and isinstance(until.target, ast.Time)
    assert isinstance(inline, ast.WaitFor) and inline.event.name == "service_subscribed"
    assert inline.event.quoted and inline.where is not None
    assert inline.else_ is not None and len(inline.else_) == 1
    assert isinstance(block, ast.WaitFor) and block.else_ is not None
    assert [type(s) for s in block.else_] == [ast.Send, ast.Tag]
    assert isinstance(bare, ast.WaitFor) and bare.else_ is None


def test_check_forms(parse_text: ParseText) -> None:
    steps = flow_steps(
        parse_text,
        'check opened\ncheck clicked within 2d else exit\ncheck delivered else:\n  untag "x"',
    )
    plain, within, block = steps
    assert isinstance(plain, ast.Check) and plain.within is None and plain.else_ is None
    assert isinstance(within, ast.Check) and isinstance(within.within, ast.Duration)
    assert within.else_ is not None and isinstance(within.else_[0], ast.ExitStep)
    assert isinstance(block, ast.Check) and block.else_ is not None
    assert isinstance(block.else_[0], ast.Untag)


def test_if_elif_else(parse_text: ParseText) -> None:
    (step,) = flow_steps(
        parse_text,
        'if event.service_name == "LoyaltyEmail":\n'
        "  send loyalty_email\n"
        'elif event.service_name == "LoyaltySMS": send loyalty_sms ; wait 1h\n'
        "else:\n"
        "  send loyalty_push",
    )
    assert isinstance(step, ast.If)
    first, second = step.branches
    assert isinstance(first.cond, ast.Binary) and isinstance(first.cond.left, ast.Attr)
    assert first.cond.left.name.name == "service_name"
    assert [type(s) for s in second.steps] == [ast.Send, ast.Wait]
    assert step.else_ is not None and isinstance(step.else_[0], ast.Send)


def test_split_arms(parse_text: ParseText) -> None:
    (split,) = flow_steps(
        parse_text,
        "split subject_test:\n"
        "  50% a: send x\n"
        "  30%:\n"
        '    set first_name = "x"\n'
        "    score +5\n"
        "  20% control: score -2 ; enroll other",
    )
    assert isinstance(split, ast.Split) and split.name.name == "subject_test"
    a, b, c = split.arms
    assert (a.percent.value, a.name is not None and a.name.name) == (0.5, "a")
    assert b.name is None and [type(s) for s in b.steps] == [ast.SetTrait, ast.ScoreAdjust]
    assert c.name is not None and c.name.name == "control"
    adjust, enroll = c.steps
    assert isinstance(adjust, ast.ScoreAdjust) and adjust.points.value == -2
    assert isinstance(enroll, ast.Enroll) and enroll.flow.name == "other"


def test_simple_steps_and_semicolons(parse_text: ParseText) -> None:
    steps = flow_steps(parse_text, 'tag "vip" ; untag "cold"\nset tier = "gold"\nscore +3\nexit')
    assert [type(s) for s in steps] == [
        ast.Tag,
        ast.Untag,
        ast.SetTrait,
        ast.ScoreAdjust,
        ast.ExitStep,
    ]


# ---------------------------------------------------------------- expressions


def test_precedence(parse_text: ParseText) -> None:
    e = expr_of(parse_text, "a or b and not c == 1 + 2 * -d.e")
    assert isinstance(e, ast.Binary) and e.op == "or"
    right = e.right
    assert isinstance(right, ast.Binary) and right.op == "and"
    neg = right.right
    assert isinstance(neg, ast.Unary) and neg.op == "not"
    cmp = neg.operand
    assert isinstance(cmp, ast.Binary) and cmp.op == "=="
    plus = cmp.right
    assert isinstance(plus, ast.Binary) and plus.op == "+"
    times = plus.right
    assert isinstance(times, ast.Binary) and times.op == "*"
    minus = times.right
    assert isinstance(minus, ast.Unary) and minus.op == "-" and isinstance(minus.operand, ast.Attr)


@pytest.mark.parametrize(
    "op", ["contains", "starts with", "ends with", "in", "not in", "matches", "<=", "!="]
)
def test_comparison_operators(parse_text: ParseText, op: str) -> None:
    e = expr_of(parse_text, f'x {op} "y"')
    assert isinstance(e, ast.Binary) and e.op == op


def test_modulo_with_spaces_and_percent_without(parse_text: ParseText) -> None:
    mod = expr_of(parse_text, "a % 3")
    assert isinstance(mod, ast.Binary) and mod.op == "%"
    pct = expr_of(parse_text, "60%")
    assert isinstance(pct, ast.Number) and pct.percent and pct.value == 0.6


@pytest.mark.parametrize(
    ("text", "node"),
    [
        ("42", ast.Number(value=42, span=None)),  # type: ignore[arg-type]
        ("3.5", ast.Number(value=3.5, span=None)),  # type: ignore[arg-type]
        ("1_000", ast.Number(value=1000, span=None)),  # type: ignore[arg-type]
        ("true", ast.Bool(value=True, span=None)),  # type: ignore[arg-type]
        ("none", ast.NoneLit(span=None)),  # type: ignore[arg-type]
        ('"a\\n\\u00e9"', ast.String(value="a\né", span=None)),  # type: ignore[arg-type]
        ("2025-10-01", ast.Date(text="2025-10-01", span=None)),  # type: ignore[arg-type]
        ("2025-10-01T09:00", ast.DateTime(text="2025-10-01T09:00", span=None)),  # type: ignore[arg-type]
        ("2025-10-01T09:00:00Z", ast.DateTime(text="2025-10-01T09:00:00Z", span=None)),  # type: ignore[arg-type]
        ("2025-10-01T09:00+02:00", ast.DateTime(text="2025-10-01T09:00+02:00", span=None)),  # type: ignore[arg-type]
        ("21:30", ast.Time(hour=21, minute=30, span=None)),  # type: ignore[arg-type]
        ("30s", ast.Duration(seconds=30, text="30s", span=None)),  # type: ignore[arg-type]
        ("15m", ast.Duration(seconds=900, text="15m", span=None)),  # type: ignore[arg-type]
        ("2w", ast.Duration(seconds=14 * 86400, text="2w", span=None)),  # type: ignore[arg-type]
    ],
)
def test_literals(parse_text: ParseText, text: str, node: ast.Expr) -> None:
    e = expr_of(parse_text, text)
    assert type(e) is type(node)
    assert attrs.evolve(e, span=None) == node  # type: ignore[misc]


def test_aggregates_with_where_and_within(parse_text: ParseText) -> None:
    e = expr_of(parse_text, "total(order_completed.total where total > 5 within 90d)")
    assert isinstance(e, ast.Call) and e.func.name == "total"
    (arg,) = e.args
    assert isinstance(arg, ast.Attr) and isinstance(arg.obj, ast.Name)
    assert (arg.obj.name, arg.name.name) == ("order_completed", "total")
    assert isinstance(e.where, ast.Binary) and isinstance(e.within, ast.Duration)
    last = expr_of(parse_text, "last(order_completed).total")
    assert isinstance(last, ast.Attr) and isinstance(last.obj, ast.Call)
    since = expr_of(parse_text, 'days_since(x where a == "b")')
    assert isinstance(since, ast.Call) and since.where is not None and since.within is None


def test_lists_objects_and_multiline_brackets(parse_text: ParseText) -> None:
    e = expr_of(parse_text, '[1,\n    2,\n  "x",\n]')
    assert isinstance(e, ast.ListLit) and len(e.items) == 3
    obj = expr_of(parse_text, '{a: 1, "other key": [x]}')
    assert isinstance(obj, ast.ObjectLit) and [x.key for x in obj.entries] == ["a", "other key"]


def test_score_and_event_are_names_in_expressions(parse_text: ParseText) -> None:
    e = expr_of(parse_text, "score + event.amount + max(1, 2)")
    assert isinstance(e, ast.Binary) and isinstance(e.left, ast.Binary)
    assert e.left.left == ast.Name(name="score", span=e.left.left.span)
    assert isinstance(e.left.right, ast.Attr) and isinstance(e.right, ast.Call)


# ---------------------------------------------------------------- spans


def test_spans_are_exact(parse_text: ParseText) -> None:
    module, _ = parse_text("# header\nflow f:\n  send   deal\n  wait 24h\n", "dir/x.lead")
    flow = module.decls[0]
    assert isinstance(flow, ast.FlowDecl)
    assert (flow.span.file, flow.span.line, flow.span.column) == ("dir/x.lead", 2, 1)
    send, wait = flow.steps
    assert (send.span.line, send.span.column, send.span.end_line, send.span.end_column) == (
        3,
        3,
        3,
        14,
    )
    assert isinstance(send, ast.Send)
    assert (send.message.span.column, send.message.span.end_column) == (10, 14)
    assert isinstance(wait, ast.Wait)
    assert (wait.duration.span.line, wait.duration.span.column) == (4, 8)
    assert (flow.span.end_line, flow.span.end_column) == (4, 11)
    text = module.span  # the module spans the file
    assert text.start == 0


def test_binary_op_span(parse_text: ParseText) -> None:
    e = expr_of(parse_text, "a not in b")
    assert isinstance(e, ast.Binary)
    assert (e.op_span.column, e.op_span.end_column) == (14, 20)


# ---------------------------------------------------------------- syntax errors

# Lark terminal names (`NAME`, `_NL`, `$END`); `U+0000` character codes are fine.
TERMINAL_NAME = re.compile(r"(?<!U\+)\b(?:[A-Z][A-Z_]{2,}|_[A-Z]+)\b|\$END")

BAD = [
    ("flow x\n  send a\n", "expected `:` at the end of the `flow` line"),
    ("flow x:\n  send\n", "expected a message name after `send`"),
    ("flow x:\n  wait\n", "expected a duration like `24h`"),
    ("metric a = (1 + 2))\n", "unexpected `)`"),
    ("metric a = (1 + 2\n", "never closed"),
    ("flow x:\n", "indented block"),
    ('metric a = "abc\n', "not closed"),
    ("flwo x:\n  send a\n", "expected a declaration"),
    ("flow f:\n  sned a\n", "expected a step"),
    ("score:\n  page_viewed 1\n", "expected `-` or `+` after `page_viewed`"),
    ("segment s = score >\n", "expected an expression after `>`"),
    ("flow f:\n  wait for e up 1d\n", "expected `to` after `up`"),
    ("flow f:\n  send a\n    send b\n", "unexpected indentation"),
    ("metric a = b c\n", "expected an operator, `(` or the end of the line after `b`"),
    ("flow f: send a\n", "expected the end of the line after `:`"),
]


@pytest.mark.parametrize(("text", "phrase"), BAD)
def test_errors_are_in_words(parse_text: ParseText, text: str, phrase: str) -> None:
    (diagnostic,) = errors(parse_text, text)
    assert diagnostic.code.startswith("S")
    assert phrase in diagnostic.message
    assert not TERMINAL_NAME.search(diagnostic.message), diagnostic.message
    assert diagnostic.help, diagnostic  # LANGUAGE.md 8: a code, a message and a `help:`
    assert not TERMINAL_NAME.search(diagnostic.help)


# A broken script, then words the help must hold: what was expected there, and an example.
HELPED = [
    ("flow f:\n  edits sometimes\n  on x\n", ["`keep` or `migrate`", "`edits keep`"]),
    ("flow f:\n  on\n", ["an event name", "`on signed_up`"]),
    ("flow f:\n  on x\n  score 5\n", ["signed number", "`score +5`"]),
    ('flow f:\n  on x\n  split s:\n    -10%: tag "c"\n', ["percentage", "`50% a: send deal_a`"]),
    ("flow x\n  send a\n", ["`:`", "`flow welcome:`"]),
    ("flow x:\n  send\n", ["a message name", "`send deal`"]),
    ("flow x:\n  wait\n", ["a duration", "`wait 2d`"]),
    ("flow f:\n  on x\n  wait for e up 1d\n", ["`to`", "`wait for order_completed up to 3d`"]),
    ("flow f:\n  foo\n", ["`on signed_up`", "`send deal`"]),
    ("flow f:\n  on x\n  enroll 5\n", ["a flow name", "`enroll onboarding`"]),
    ("score:\n  page_viewed 1\n", ["`-` or `+`", "`order_completed +25"]),
    ("settings:\n  timezone Paris\n", ['`"Europe/Paris"`']),
    ("settings:\n  quiet hours 9 to 10\n", ["a time of day", "`quiet hours 21:00 to 08:00`"]),
    ("segment s = \n", ["an expression", "`segment vip = score > 50`"]),
    ("segment = score > 5\n", ["a segment name", "`segment vip = score > 50`"]),
    ("metric a = b c\n", ["operator", "`score > 50"]),
    ("segment s = score @ 5\n", ["operator"]),
    ('when score > 5 tag "x"\n', ["operator", "`then`"]),
    ("event e(a)\n", ["`:`", "`event order_completed(total: number"]),
    ("use 5\n", ["`use std.segments`"]),
    ("message m:\n  channel push\n  json {a: 1,, b: 2}\n", ["a name", '`{code: "X1"']),
    ("flow f:\n  on x\n  send m with {a 1}\n", ["`:`", '`{code: "X1"']),
    ('flow f:\n  on x\n  tag ["a" "b"]\n', ["separate the items with `,`", '`["vip", "beta"]`']),
    ("flow f:\n  on x\n  if score > 5\n    exit\n", ["`:`", "`if score > 50:`"]),
]


@pytest.mark.parametrize(("text", "words"), HELPED)
def test_every_syntax_error_helps_with_what_is_expected(
    parse_text: ParseText, text: str, words: list[str]
) -> None:
    _, diagnostics = parse_text(text)
    syntax = [d for d in diagnostics if d.code in ("S001", "S002")]
    assert syntax, "expected a syntax error"
    for diagnostic in syntax:
        assert diagnostic.help, diagnostic
        assert not TERMINAL_NAME.search(diagnostic.help), diagnostic.help
    for word in words:
        assert word in syntax[0].help, (syntax[0].message, syntax[0].help)


def test_no_syntax_error_is_left_without_help(parse_text: ParseText) -> None:
    """Every way of breaking a few lines by dropping or doubling a word, or by putting a stray
    character in its place: each S001/S002 has a help line in words."""
    script = (
        "settings:\n  quiet hours 21:00 to 08:00\nscore:\n  page_viewed +1\n"
        'trait plan: text = "free"\nmetric m = count(e where total > 5 within 30d)\n'
        'message deal:\n  channel push\n  url "https://x"\n  json {a: [1, 2]}\n'
        "flow f:\n  on e where total > 1\n  reenter after 30d\n  send deal with {c: score}\n"
        '  wait for e up to 1d else exit\n  if score > 5:\n    tag "a"\n'
        '  split s:\n    50% a: exit\n    50% b: set plan = "pro"\n' + CARD
    )
    words = list(re.finditer(r'"[^"\n]*"|[\w.:%]+|[^\s\w]', script))
    seen = 0
    for match in words:
        a, b = match.span()
        for broken in (
            script[:a] + script[b:],
            script[:b] + " " + script[a:],
            script[:a] + "@" + script[b:],
        ):
            for diagnostic in parse_text(broken)[1]:
                if diagnostic.code in ("S001", "S002"):
                    seen += 1
                    assert diagnostic.help, (broken, diagnostic)
                    assert not TERMINAL_NAME.search(diagnostic.help), diagnostic.help
    assert seen > len(words)


def test_misspelled_keyword_gets_did_you_mean(parse_text: ParseText) -> None:
    (diagnostic,) = errors(parse_text, "flwo x:\n  send a\n")
    assert diagnostic.help == "did you mean `flow`?"


def test_several_errors_in_one_file_and_good_declarations_survive(parse_text: ParseText) -> None:
    module, diagnostics = parse_text(
        "segment s = score >\nflow f:\n  send a\nsegment t = = 3\nmetric ok = 1\nflow g\n  exit\n"
    )
    assert [d.span.line for d in diagnostics] == [1, 4, 6]
    names = [d.name.name for d in module.decls if isinstance(d, ast.FlowDecl | ast.MetricDecl)]
    assert names == ["f", "ok"]


def test_header_clause_after_a_step(parse_text: ParseText) -> None:
    (diagnostic,) = errors(parse_text, "flow x:\n  send a\n  on e\n")
    assert diagnostic.code == "S001" and "before the first step" in diagnostic.message
    assert diagnostic.span.line == 3


@pytest.mark.parametrize(
    ("literal", "kind"),
    [
        ("25:00", "time"),
        ("2025-13-01", "date"),
        ("3mo", "duration"),
        ("1y", "duration"),
        ('"a\\q"', "escape"),
    ],
)
def test_invalid_literals_are_s005_on_the_literal(
    parse_text: ParseText, literal: str, kind: str
) -> None:
    (diagnostic,) = errors(parse_text, f"metric a = {literal}\n")
    assert diagnostic.code == "S005" and kind in diagnostic.message
    assert (diagnostic.span.line, diagnostic.span.column) == (1, 12)
    assert diagnostic.span.end_column == 12 + len(literal)


def test_tab_in_indentation_is_s003(parse_text: ParseText) -> None:
    diagnostics = errors(parse_text, "flow x:\n\tsend a\n")
    assert [d.code for d in diagnostics] == ["S003"]
    assert (diagnostics[0].span.line, diagnostics[0].span.column) == (2, 1)


def test_a_tab_inside_brackets_is_no_indentation(parse_text: ParseText) -> None:
    # Newlines inside brackets are ignored (LANGUAGE.md 2), so a continuation line's leading
    # blanks are no indentation: a list pasted with tabs is fine; a tab after the bracket
    # closes still is S003.
    text = "metric m = max(\n\t1,\n\t2 # two\n)\nflow x:\n  send a with {\n\tk: 1}\n\tsend b\n"
    diagnostics = errors(parse_text, text)
    assert [(d.code, d.span.line) for d in diagnostics if d.code == "S003"] == [("S003", 8)]
    # a stray closing bracket does not make the next bracket's lines indentation again
    text = "metric n = 1)\nmetric m = max(\n\t1)\nflow x:\n\tsend b\n"
    diagnostics = errors(parse_text, text)
    assert [(d.code, d.span.line) for d in diagnostics if d.code == "S003"] == [("S003", 5)]


def test_inconsistent_dedent_is_s004(parse_text: ParseText) -> None:
    (diagnostic,) = errors(parse_text, "flow x:\n    send a\n  send b\n")
    assert diagnostic.code == "S004" and diagnostic.span.line == 3


@pytest.mark.parametrize(
    "text",
    [
        "metric a = " + "(" * 500 + "1" + ")" * 500 + "\n",
        "metric a = " + "[" * 500 + "]" * 500 + "\n",
        "segment a = " + "not " * 2000 + "x\n",
        "metric a = " + "-" * 2000 + "1\n",
        "metric a = 1" + " + 1" * 2000 + "\n",
    ],
)
def test_deep_nesting_is_s007(parse_text: ParseText, text: str) -> None:
    diagnostics = errors(parse_text, text)
    assert [d.code for d in diagnostics] == ["S007"]


@pytest.mark.parametrize(
    "text",
    [
        "\x00\x01\x02flow",
        "metric a = \x00\n",
        'metric a = "' + "x" * 1_000_000 + "\n",
        "x" * 1_000_000,
        "",
        "\n\n   \n# only a comment",
    ],
)
def test_bad_input_gives_diagnostics_not_exceptions(parse_text: ParseText, text: str) -> None:
    module, diagnostics = parse_text(text)
    assert isinstance(module, ast.Module)
    assert_well_formed(diagnostics, {"t.lead": Source("t.lead", text)})
    for diagnostic in diagnostics:
        assert diagnostic.code.startswith("S")
        assert not TERMINAL_NAME.search(diagnostic.message), diagnostic.message


def test_a_byte_order_mark_and_crlf_line_ends_read_as_plain_text(parse_text: ParseText) -> None:
    """Files saved by Windows editors: a BOM before the first line, CRLF line ends."""
    module, diagnostics = parse_text("\ufeffmetric a = 1\r\nflow f:\r\n  on go\r\n  send a\r\n")
    assert diagnostics == []
    metric, flow = module.decls
    assert isinstance(metric, ast.MetricDecl) and metric.name.name == "a"
    assert isinstance(metric.expr, ast.Number) and metric.expr.value == 1
    assert isinstance(flow, ast.FlowDecl) and flow.name.name == "f"
    (trigger,) = flow.header
    assert isinstance(trigger, ast.OnTrigger) and trigger.event.name == "go"
    (send,) = flow.steps
    assert isinstance(send, ast.Send) and send.message.name == "a"
    assert (send.span.line, send.span.column) == (4, 3)


def test_carriage_returns_alone_end_lines_as_an_editor_shows_them(parse_text: ParseText) -> None:
    """Files saved with classic Mac line ends (CR alone): a first-line comment used to run to
    the end of the file and hide every declaration, with no diagnostic."""
    module, diagnostics = parse_text("# the welcome flow\rflow f:\r  on go\r  send a\r")
    assert diagnostics == []
    (flow,) = module.decls
    assert isinstance(flow, ast.FlowDecl) and flow.name.name == "f"
    (send,) = flow.steps
    assert isinstance(send, ast.Send) and (send.span.line, send.span.column) == (4, 3)
    # a CR inside a string ends its line, as an LF does: the string is not closed
    _, diagnostics = parse_text('flow f:\n  on go\n  tag "a\rb"\n')
    first = diagnostics[0]
    assert (first.code, first.span.line, first.span.column) == ("S002", 3, 7)


def test_recovery_inside_a_block_reports_each_bad_line_and_keeps_the_flow(
    parse_text: ParseText,
) -> None:
    module, diagnostics = parse_text(
        "flow f:\n"
        "  on signup\n"
        "  sned a\n"  # 3: misspelled step
        "  wait\n"  # 4: missing duration
        "  if x\n"  # 5: missing `:` (its block is skipped with it)
        "    send b\n"
        "  send c\n"
        "metric ok = 1\n"
    )
    assert [d.span.line for d in diagnostics] == [3, 4, 5]
    flow, metric = module.decls
    assert isinstance(flow, ast.FlowDecl) and isinstance(metric, ast.MetricDecl)
    assert [type(c) for c in flow.header] == [ast.OnTrigger]
    (send,) = flow.steps
    assert isinstance(send, ast.Send) and send.message.name == "c"


def test_skipping_the_only_line_of_a_block_reports_one_error(parse_text: ParseText) -> None:
    module, diagnostics = parse_text("flow f:\n  if x:\n    sned a\n  send c\n")
    assert [d.span.line for d in diagnostics] == [3]
    (flow,) = module.decls
    assert isinstance(flow, ast.FlowDecl) and [type(s) for s in flow.steps] == [ast.Send]


def test_parser_works_without_a_usable_cache_dir(tmp_path: Path) -> None:
    # A regular file where the cache folders would go: no folder can be made under it,
    # even by root (for whom permission bits would not stop anything).
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    env = {**os.environ, "XDG_CACHE_HOME": str(blocker / "cache"), "TMPDIR": str(blocker)}
    code = (
        "import os, tempfile; tempfile.tempdir = os.environ['TMPDIR'];"
        "from leadlang.syntax import parser as syntax; from leadlang.source import Source;"
        "assert syntax._cache_file(syntax.GRAMMAR_PATH.read_text()) is None;"
        "m, d = syntax.parse(Source('x.lead', 'metric a = 1\\n')); print(len(m.decls), len(d))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1", "0"]


def test_duration_written_with_a_space_gets_a_hint(parse_text: ParseText) -> None:
    (diagnostic,) = errors(parse_text, "flow f:\n  send a\n  wait 2 days\n")
    assert diagnostic.help == "write durations without a space, e.g. `2d`"
    assert (diagnostic.span.line, diagnostic.span.column) == (3, 10)


def test_unclosed_bracket_is_reported_once_and_the_next_declaration_survives(
    parse_text: ParseText,
) -> None:
    module, diagnostics = parse_text("segment s = x in [1, 2\nsegment t = 1\n")
    (diagnostic,) = diagnostics
    assert "`[`" in diagnostic.message and (diagnostic.span.line, diagnostic.span.column) == (1, 18)
    (segment,) = module.decls
    assert isinstance(segment, ast.SegmentDecl) and segment.name.name == "t"


def test_raw_tab_inside_a_string_is_kept(parse_text: ParseText) -> None:
    e = expr_of(parse_text, '"a\tb"')
    assert isinstance(e, ast.String) and e.value == "a\tb"


def test_block_step_in_a_one_line_flow_explains_why(parse_text: ParseText) -> None:
    (diagnostic,) = errors(parse_text, "when x then if y: send a\n")
    assert "one-line step" in diagnostic.message
    assert diagnostic.help is not None and "flow NAME:" in diagnostic.help


# Habits from other languages, each in several places a condition or a value is written:
# the error carries a hint that says what to write instead.
HABITS = [
    ("segment s = score > 1 && score < 5\n", "write `and`"),
    ("flow f:\n  on x where a > 1 && b\n  send m\n", "write `and`"),
    ("flow f:\n  on x\n  if a || b: send m\n", "write `or`"),
    ("when !opened then send m\n", "write `not`"),
    ('segment s = plan = "pro"\n', "write `==`"),
    ('flow f:\n  on x\n  if plan = "pro": send m\n', "write `==`"),
    ("flow f:\n  on x\n  check score = 2 else send m\n", "write `==`"),
    ("when score = 1 then send m\n", "write `==`"),
    ("flow f:\n  on x\n  if a:\n    send m\n  else if b:\n    send m\n", "`elif"),
    ("flow f:\n  on x\n  wait 1d 12h\n", "`1d12h`"),
    ("flow f:\n  on x\n  wait for y up to 2h 30m\n", "`2h30m`"),
    ("flow f:\n  on x\n  send \u201cm\u201d\n", "straight double quotes"),
    ("segment s = plan == \u2018pro\u2019\n", "straight double quotes"),
    ("segment s = plan == 'pro'\n", "double quotes"),
    ('message m:\n  channel email\n  subject "Hi "there" {{ x }}"\n', "`'there'`"),
    ('segment s = plan == "say "hi""\n', "`'hi'`"),
    ('message m:\n  channel sms\n  text "Hi "{{ x }}""\n', "single quotes"),
]


@pytest.mark.parametrize(("text", "hint"), HABITS)
def test_habits_from_other_languages_get_a_hint(
    parse_text: ParseText, text: str, hint: str
) -> None:
    diagnostics = errors(parse_text, text)
    assert diagnostics, text
    assert hint in (diagnostics[0].help or ""), diagnostics[0]


def test_a_quote_inside_a_string_hint_also_offers_the_escape(parse_text: ParseText) -> None:
    (diagnostic,) = errors(parse_text, 'segment s = plan == "a "b""\n')
    assert '\\"' in (diagnostic.help or "")


@pytest.mark.parametrize("text", ["flow f: x\n", "segment s = = 1\n", "event a(x: y z)\n"])
def test_a_byte_order_mark_takes_no_column(parse_text: ParseText, text: str) -> None:
    (plain,) = errors(parse_text, text)
    (marked,) = errors(parse_text, "\ufeff" + text)
    assert (marked.span.line, marked.span.column) == (plain.span.line, plain.span.column)


def test_a_byte_order_mark_in_a_file_takes_no_column(tmp_path: Path) -> None:
    from leadlang.interpreter.check import check_paths

    path = tmp_path / "bom.lead"
    path.write_bytes("\ufeffsegment s = = 1\n".encode())
    (diagnostic,) = check_paths([str(path)]).diagnostics
    assert (diagnostic.span.line, diagnostic.span.column) == (1, 13)


@pytest.mark.parametrize("arm", ["50 a: send m", "50: send m", "50.5 b:\n      send m"])
def test_a_split_share_without_percent_sign_says_to_add_it(parse_text: ParseText, arm: str) -> None:
    text = f"flow f:\n  on x\n  split t:\n    {arm}\n    50% c: send m\n"
    diagnostic = errors(parse_text, text)[0]
    share = arm.split()[0].rstrip(":")
    assert diagnostic.help == f"write the share as a percentage: `{share}%`"
    assert (diagnostic.span.line, diagnostic.span.column) == (4, 5)


@pytest.mark.parametrize(
    "quoted", ["'pro'", "\u201cpro\u201d", "\u2018pro\u2019", "\u201epro\u201c"]
)
def test_a_string_in_the_wrong_quotes_is_shown_requoted(parse_text: ParseText, quoted: str) -> None:
    (diagnostic,) = errors(parse_text, f"segment s = plan == {quoted}\n")
    assert (diagnostic.help or "").endswith('`"pro"`')
    assert (diagnostic.span.line, diagnostic.span.column) == (1, 21)


@pytest.mark.parametrize(
    ("written", "help"),
    [
        ("24hours", "write `24h`"),
        ("2days", "write `2d`"),
        ("90min", "write `90m`"),
        ("2wks", "write `2w`"),
        ("1.5d", "write `1d12h`"),
        ("0.5h", "write `30m`"),
        ("1.25m", "write `1m15s`"),
        ("3mo", "there are no months or years: count days, e.g. `90d`"),
        ("1year", "there are no months or years: count days, e.g. `365d`"),
        ("2 years", "there are no months or years: count days, e.g. `730d`"),
        (f"{'9' * 400} months", "there are no months or years: count days"),
        ("24 hrs", "write durations without a space, e.g. `24h`"),
    ],
)
def test_a_duration_in_other_words_says_how_to_write_it(
    parse_text: ParseText, written: str, help: str
) -> None:
    for place in (
        f"wait {written}",
        f"check opened within {written}",
        f"wait for y up to {written}",
    ):
        (diagnostic,) = errors(parse_text, f"flow f:\n  on x\n  {place}\n")
        assert diagnostic.help == help, place


def test_a_bad_duration_is_reported_once(tmp_path: Path) -> None:
    from leadlang.interpreter.check import check_paths

    path = tmp_path / "d.lead"
    path.write_text(
        "settings:\n  cap email 1 per 1y\nscore:\n  x +1\n  decay 1 every 3mo idle\n"
        'flow f:\n  on x\n  reenter after 2years\n  wait 1.5hours\n  tag "a"\n'
    )
    codes = [d.code for d in check_paths([str(path)]).diagnostics]
    assert codes == ["S005"] * 4  # no "longer than zero" about the placeholder value


def test_only_a_newline_ends_a_line(parse_text: ParseText) -> None:
    # U+2028 and U+001E are line breaks to `str.splitlines`, not to editors or to `Source`:
    # the error is on line 2, where the user sees it.
    text = 'metric a = "x\u2028y\x1ez"\nsegment s = )\n'
    module, diagnostics = parse_text(text)
    (diagnostic,) = diagnostics
    assert (diagnostic.span.line, diagnostic.span.column) == (2, 13)
    assert text[diagnostic.span.start] == ")"
    (metric,) = module.decls
    assert isinstance(metric, ast.MetricDecl)
    assert isinstance(metric.expr, ast.String) and metric.expr.value == "x\u2028y\x1ez"


def test_a_stray_indentation_is_reported_at_the_start_of_its_line(parse_text: ParseText) -> None:
    text = "flow f:\n  on go\n send a\n"
    _, diagnostics = parse_text(text)
    (diagnostic,) = diagnostics
    span = diagnostic.span
    assert diagnostic.code == "S004"
    assert (span.line, span.column, span.end_line, span.end_column) == (3, 1, 3, 2)
    assert (span.start, span.end) == (text.index(" send"), text.index("send"))


@pytest.mark.parametrize(
    ("string", "column"),
    [
        ('"\\ud800x"', 2),
        ('"ab\\udfff"', 4),
        ('"\\ud83d\\ude00\\ud83d"', 14),
        ('"\\udc00\\ud800"', 2),
    ],
)
def test_a_lone_surrogate_escape_is_s005_on_the_escape(
    parse_text: ParseText, string: str, column: int
) -> None:
    (diagnostic,) = errors(parse_text, f"flow f:\n  tag {string}\n")
    assert diagnostic.code == "S005" and "lone UTF-16 surrogate" in diagnostic.message
    assert (diagnostic.span.line, diagnostic.span.column - 6) == (2, column)
    assert diagnostic.span.end_column - diagnostic.span.column == 6


def test_a_surrogate_pair_escape_is_one_character(parse_text: ParseText) -> None:
    (step,) = flow_steps(parse_text, 'tag "\\ud83d\\ude00!"')
    assert isinstance(step, ast.Tag) and step.tag == ast.String(
        value="\U0001f600!", span=step.tag.span
    )


@pytest.mark.parametrize(
    ("text", "header"),
    [
        ("flow f:\non signed_up\n", "flow f:"),
        ('message x:\nflow g:\n  on a\n  tag "x"\n', "message x:"),
        ("flow f:\n", "flow f:"),
    ],
)
def test_a_header_with_no_indented_block_says_so(
    parse_text: ParseText, text: str, header: str
) -> None:
    first = errors(parse_text, text)[0]
    assert first.message == f"expected an indented block after `{header}`"
    assert (first.span.line, first.span.column) == (1, len(header) + 1)
    assert first.help
