"""Metrics over a contact's events (`total`, `average`, `last`, `count` with `where` and
`within`), segments and `now`, read the way a script reads them: each condition that holds
adds a tag, and the tags are worked out by hand from LANGUAGE.md section 4."""

from __future__ import annotations

from pathlib import Path

from checking import check_text
from engine_run import identify, run, track

from leadlang.interpreter.compile import compile_program
from leadlang.runtime.engine import Engine, Event
from leadlang.runtime.state import Contact

SCRIPT = """
event order(total: number, kind: text)
event probe(ref: text)
trait min_order: number = 0

metric spent = total(order.total within 7d)
metric web_total = total(order.total where kind == "web")
metric big_total = total(order.total where total >= min_order)
metric basket = average(order.total where kind == "web")
metric recent_basket = average(order.total within 7d)
metric orders = count(order)
segment big = spent >= 250

flow probing:
  on probe
  if spent == 250:
    tag "spent_250"
  if spent == 100:
    tag "spent_100"
  if spent == 0:
    tag "spent_0"
  if web_total == 150:
    tag "web_150"
  if big_total == 300:
    tag "big_300"
  if basket == 75:
    tag "basket_75"
  if basket == none:
    tag "no_basket"
  if recent_basket == 125:
    tag "recent_basket_125"
  if orders == 4:
    tag "four_orders"
  if last(order).kind == "gift":
    tag "last_gift"
  if last(order where kind == "web").total == 50:
    tag "last_web_50"
  if last(order where kind == "shop").total == 200:
    tag "last_shop_200"
  if last(order where kind == "shop" within 3d) == none:
    tag "no_recent_shop"
  if big:
    tag "big"
  if web_total > 0 and event.ref == "p1":
    tag "bound_event_kept"
  if now >= 2025-01-08T00:00:00Z:
    tag "from_the_8th"
"""


def test_metrics_segments_and_now_read_the_documented_values(tmp_path: Path) -> None:
    result = check_text(tmp_path, SCRIPT)
    assert result.program is not None, [d.message for d in result.diagnostics]
    events = [
        identify("u", "2025-01-01T00:00:00Z", min_order=100),
        track("u", "order", "2025-01-01T00:00:00Z", total=100, kind="web"),
        track("u", "order", "2025-01-06T00:00:00Z", total=200, kind="shop"),
        track("u", "order", "2025-01-09T00:00:00Z", total=50, kind="web"),
        track("u", "order", "2025-01-09T12:00:00Z", kind="gift"),  # no total: not a number
        track("u", "probe", "2025-01-10T00:00:00Z", ref="p1"),
        # exactly 7 days later the order has left `within 7d`; a second earlier it has not
        track("v", "order", "2025-01-01T00:00:00Z", total=100, kind="web"),
        track("v", "probe", "2025-01-08T00:00:00Z", ref="p2"),
        track("w", "order", "2025-01-01T00:00:00Z", total=100, kind="shop"),
        track("w", "probe", "2025-01-07T23:59:59Z", ref="p1"),
        track("x", "probe", "2025-01-10T00:00:00Z", ref="p1"),  # no orders at all
    ]
    tags: dict[str, set[str]] = {}
    for effect in run(result.program, events):
        if effect["action"] == "tag":
            tags.setdefault(effect["contact"], set()).add(effect["tag"])
    assert tags == {
        # within 7d of 01-10: the orders of 01-06 and 01-09 (250); web: 100 + 50; at least
        # `min_order` (a profile name in the where): 100 + 200; the gift has no total.
        "u": {
            "spent_250",
            "web_150",
            "big_300",
            "basket_75",
            "recent_basket_125",
            "four_orders",
            "last_gift",
            "last_web_50",
            "last_shop_200",
            "no_recent_shop",
            "big",
            "bound_event_kept",
            "from_the_8th",
        },
        "v": {"spent_0", "no_recent_shop", "from_the_8th"},
        "w": {"spent_100", "no_basket", "no_recent_shop"},  # its shop order is 7 days old
        "x": {"spent_0", "no_basket", "no_recent_shop", "from_the_8th"},
    }


def test_days_since_with_a_where_is_the_latest_matching_event(tmp_path: Path) -> None:
    script = """
event order(kind: text)
metric web_days = days_since(order where kind == "web")
metric gift_days = days_since(order where kind == "gift")

flow probing:
  on probe
  if web_days == 4:
    tag "web_4"
  if gift_days == none:
    tag "no_gift"
"""
    result = check_text(tmp_path, script)
    assert result.program is not None, [d.message for d in result.diagnostics]
    events = [
        track("u", "order", "2025-01-01T00:00:00Z", kind="web"),
        track("u", "order", "2025-01-02T00:00:00Z", kind="web"),  # the latest web order
        track("u", "order", "2025-01-03T00:00:00Z", kind="shop"),
        track("u", "probe", "2025-01-06T00:00:00Z"),
    ]
    tags = [e["tag"] for e in run(result.program, events) if e["action"] == "tag"]
    assert tags == ["web_4", "no_gift"]


def test_a_total_or_average_too_large_to_hold_is_none(tmp_path: Path) -> None:
    # Two orders of 1.7e308 add up to more than a float holds: none (docs/reference.md, the
    # representable range), so `> 0` is false; one order is a number as usual.
    script = """
event order(total: number)

flow probing:
  on probe
  if total(order.total) == none and average(order.total) == none:
    tag "too_large"
  if total(order.total) > 0:
    tag "positive"
"""
    result = check_text(tmp_path, script)
    assert result.program is not None, [d.message for d in result.diagnostics]
    one = [track("u", "order", "2025-01-01T00:00:00Z", total=1.7e308)]
    two = [*one, track("u", "order", "2025-01-02T00:00:00Z", total=1.7e308)]
    probe = [track("u", "probe", "2025-01-06T00:00:00Z")]
    tags = [e["tag"] for e in run(result.program, two + probe) if e["action"] == "tag"]
    assert tags == ["too_large"]
    tags = [e["tag"] for e in run(result.program, one + probe) if e["action"] == "tag"]
    assert tags == ["positive"]


LATE = """
event visit(page: text)

flow seen:
  on visit
  reenter always
  if count(visit within 1d) >= 2:
    tag "two_today"
  if last(visit).page == "pricing":
    tag "pricing_last"
  if count(visit where page == "blog") == 1:
    tag "read_blog"
  if days_since(visit where page == "blog") == 2:
    tag "blog_2_days_ago"
"""


def test_a_late_event_takes_its_place_in_the_history_by_its_own_timestamp(
    tmp_path: Path,
) -> None:
    """serve (docs/serve.md, event time): an event older than the instant its contact was
    processed to runs at that instant, and keeps its own timestamp in the history, so
    `within` windows and `last(...)` see it where it belongs."""
    checked = check_text(tmp_path, LATE)
    assert checked.program is not None, [d.message for d in checked.diagnostics]
    engine = Engine(compile_program(checked.program))
    contact = Contact("u")
    day = 86400.0
    t0 = 1_700_000_000.0
    engine.on_event(contact, Event(t0 + 3 * day, 1, "u", "visit", {"page": "pricing"}))
    # the blog visit of day 1 arrives late: it runs at day 3, the contact's instant
    late = Event(t0 + 3 * day, 2, "u", "visit", {"page": "blog"}, None, t0 + day)
    tags = [e["tag"] for e in engine.on_event(contact, late) if e["action"] == "tag"]
    # day 1 is outside `within 1d` at day 3; the last visit is still the pricing one of day
    # 3; the blog visit was 2 days before
    assert tags == ["pricing_last", "read_blog", "blog_2_days_ago"]
