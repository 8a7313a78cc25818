"""The value helpers of LANGUAGE.md section 7 (docs/language.md), called as generated code calls
them: missing values, texts read as datetimes, durations, lists, rounding.

Each expected value is written out by hand from the documented rule, never computed by the
helper under test. Every helper must return a value, `None` or `False` on any user data and
never raise: generated code turns an exception into `none` for the whole condition, so a
helper that raised would make `a or b` false even when `b` holds. These tests kill the
mutants of `runtime/values.py` recorded in docs/testing.md.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from leadlang import limits
from leadlang.runtime import values as v

NOON = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_is_num_counts_int_and_float_but_not_bool_or_text() -> None:
    assert v.is_num(3) is True
    assert v.is_num(2.5) is True
    assert v.is_num(True) is False
    assert v.is_num("3") is False
    assert v.is_num(None) is False


def test_a_text_reads_as_iso_datetime_utc_when_it_has_no_offset() -> None:
    assert v.to_datetime("2026-03-01T12:00:00Z") == NOON
    assert v.to_datetime("  2026-03-01T12:00:00Z  ") == NOON  # spaces around are ignored
    naive = v.to_datetime("2026-03-01T12:00")
    assert naive == NOON and naive is not None and naive.tzinfo is UTC
    paris = v.to_datetime("2026-03-01T13:00:00+01:00")
    assert paris == NOON
    assert paris is not None and paris.utcoffset() == HOUR  # its own offset is kept
    assert v.to_datetime("next tuesday") is None
    assert v.to_datetime("") is None


def test_to_datetime_of_a_date_is_its_midnight_utc_and_of_anything_else_none() -> None:
    assert v.to_datetime(NOON) is NOON
    midnight = v.to_datetime(date(2026, 3, 1))
    assert midnight == datetime(2026, 3, 1, tzinfo=UTC)
    assert midnight is not None and midnight.tzinfo is UTC
    assert v.to_datetime(1772366400) is None  # a number is no datetime
    assert v.to_datetime(None) is None
    assert v.to_datetime(time(9, 0)) is None


# --- comparisons -------------------------------------------------------------------------


def test_ordering_numbers_ints_with_floats_and_ties() -> None:
    assert v.lt(1, 2) is True and v.lt(2, 1) is False and v.lt(2, 2) is False
    assert v.le(1, 2) is True and v.le(2, 1) is False and v.le(2, 2) is True
    assert v.gt(2, 1) is True and v.gt(1, 2) is False and v.gt(2, 2) is False
    assert v.ge(2, 1) is True and v.ge(1, 2) is False and v.ge(2, 2) is True
    assert v.lt(1, 1.5) is True and v.ge(1.5, 1) is True


def test_ordering_texts_times_of_day_durations_and_datetimes() -> None:
    assert v.lt("apple", "banana") is True and v.gt("apple", "banana") is False
    assert v.lt(time(9, 0), time(17, 30)) is True and v.ge(time(9, 0), time(17, 30)) is False
    assert v.lt(HOUR, 2 * HOUR) is True and v.le(2 * HOUR, HOUR) is False
    assert v.lt(NOON, NOON + HOUR) is True and v.gt(NOON, NOON + HOUR) is False


def test_a_text_compared_with_a_datetime_is_read_as_iso_8601() -> None:
    """docs: `completed_on >= 2025-10-01` works on the string "2025-11-10T09:05:00Z"."""
    assert v.ge("2026-03-01T12:30:00Z", NOON) is True
    assert v.lt("2026-03-01T12:30:00Z", NOON) is False
    assert v.le(NOON, "2026-03-01T12:00:00Z") is True
    assert v.gt(NOON, "2026-03-01T11:59:59Z") is True
    assert v.eq("2026-03-01T13:00:00+01:00", NOON) is True  # the same instant
    assert v.eq(NOON, "2026-03-01T12:00:01Z") is False
    assert v.ne(NOON, "2026-03-01T12:00:01Z") is True
    assert v.ne(NOON, "2026-03-01T12:00:00Z") is False


def test_a_text_that_is_no_datetime_compares_false_every_way() -> None:
    for op in (v.lt, v.le, v.gt, v.ge, v.eq, v.ne):
        assert op(NOON, "soon") is False, op.__name__
        assert op("soon", NOON) is False, op.__name__


def test_values_of_different_kinds_never_order() -> None:
    for a, b in [(1, "a"), ("a", 1), (HOUR, 3600), (time(9, 0), "09:00"), ([1], [2]), (True, 1)]:
        for op in (v.lt, v.le, v.gt, v.ge):
            assert op(a, b) is False, (op.__name__, a, b)
    assert v.lt(True, False) is False  # a bool is not a number here


def test_none_in_a_comparison_is_false_but_equality_tests_presence() -> None:
    for op in (v.lt, v.le, v.gt, v.ge):
        assert op(None, 1) is False and op(1, None) is False and op(None, None) is False
    assert v.eq(None, None) is True
    assert v.eq(None, 0) is False and v.eq(0, None) is False
    assert v.eq(None, NOON) is False
    assert v.ne(None, None) is False
    assert v.ne(None, 0) is True and v.ne("", None) is True
    assert v.ne(None, NOON) is True and v.ne(NOON, None) is True


def test_equality_is_exact() -> None:
    assert v.eq("Pro", "Pro") is True and v.eq("Pro", "pro") is False
    assert v.ne("Pro", "pro") is True and v.ne("Pro", "Pro") is False
    assert v.eq(1, 1.0) is True


# --- text and list tests -----------------------------------------------------------------


def test_contains_on_text_ignores_case_and_reads_a_number_as_its_digits() -> None:
    assert v.contains("The Pro Plan", "pro") is True
    assert v.contains("the pro plan", "PRO") is True
    assert v.contains("the pro plan", "team") is False
    assert v.contains("order 42", 42) is True
    assert v.contains("weight 1.5 kg", 1.5) is True
    assert v.contains("order 42", 7) is False
    assert v.contains("order 42", [42]) is False
    assert v.contains("true story", True) is False  # a bool is no number


def test_contains_on_a_list_is_substring_for_texts_and_equality_otherwise() -> None:
    categories = ["Winter Coats", "Shoes"]
    assert v.contains(categories, "winter") is True
    assert v.contains(categories, "SHOE") is True
    assert v.contains(categories, "hats") is False
    assert v.contains([1, 2, 3], 3) is True
    assert v.contains([1, 2, 3], 4) is False
    assert v.contains(["a", 1], 1) is True  # a text element and a number X
    assert v.contains([1, 2], "1") is False  # a number element and a text X
    assert v.contains((1, 2), 2) is True


def test_contains_on_an_object_is_a_key_test_and_on_anything_else_false() -> None:
    assert v.contains({"plan": "pro"}, "plan") is True
    assert v.contains({"plan": "pro"}, "pro") is False
    assert v.contains(42, 42) is False
    assert v.contains(None, "x") is False and v.contains("x", None) is False


def test_starts_and_ends_with_ignore_case_and_need_two_texts() -> None:
    assert v.starts_with("The Pro Plan", "the PRO") is True
    assert v.starts_with("The Pro Plan", "plan") is False
    assert v.ends_with("The Pro Plan", "PRO plan") is True
    assert v.ends_with("The Pro Plan", "the") is False
    assert v.starts_with("42 things", 42) is False and v.starts_with(42, "4") is False
    assert v.ends_with("things 42", 42) is False and v.ends_with(42, "2") is False


def test_in_is_exact_membership_in_a_list_and_contains_in_a_text() -> None:
    assert v.in_("vip", ["vip", "new"]) is True
    assert v.in_("vip", ["VIP"]) is False  # exact
    assert v.in_("vip", "a VIP customer") is True
    assert v.in_("gold", "a VIP customer") is False
    assert v.in_("plan", {"plan": "pro"}) is True
    assert v.in_("pro", {"plan": "pro"}) is False
    assert v.in_(1, 1) is False
    assert v.not_in("gold", ["vip"]) is True
    assert v.not_in("vip", ["vip"]) is False


def test_none_is_never_in_or_not_in_anything() -> None:
    """A missing value is in no list, not even one that holds a JSON null."""
    assert v.in_(None, [None, 1]) is False
    assert v.in_("a", None) is False
    assert v.not_in(None, [1]) is False
    assert v.not_in(1, None) is False


def test_matches_is_a_regular_expression_search() -> None:
    assert v.matches("order-42", r"\d+") is True  # anywhere in the text
    assert v.matches("order", r"\d+") is False
    assert v.matches("VP Sales", r"(?i)\bvp\b") is True
    assert v.matches(42, r"\d+") is False  # only a text matches
    assert v.matches("order-42", 42) is False  # a pattern must be text
    assert v.search(None, "anything") is False  # a pattern RE2 cannot run matches nothing
    assert v.search(v.regex("a"), "cat") is True


# --- arithmetic --------------------------------------------------------------------------


def test_arithmetic_on_numbers() -> None:
    assert v.add(2, 3) == 5
    assert v.sub(2, 3) == -1
    assert v.mul(2, 3) == 6
    assert v.div(3, 2) == 1.5  # true division
    assert v.mod(7, 3) == 1
    assert v.mod(5.5, 2) == 1.5
    assert v.mod(5, 1) == 0
    assert v.neg(3) == -3 and v.neg(-2.5) == 2.5


def test_arithmetic_with_none_is_none() -> None:
    for op in (v.add, v.sub, v.mul, v.div, v.mod):
        assert op(None, 1) is None and op(1, None) is None, op.__name__
    assert v.add(None, HOUR) is None and v.add(HOUR, None) is None
    assert v.neg(None) is None


def test_datetime_plus_or_minus_a_duration_is_a_datetime() -> None:
    assert v.add(NOON, HOUR) == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    assert v.add(HOUR, NOON) == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    assert v.sub(NOON, HOUR) == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    assert v.add("2026-03-01T12:00:00Z", HOUR) == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    assert v.add(HOUR, "2026-03-01T12:00:00Z") == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    assert v.sub("2026-03-01T12:00:00Z", HOUR) == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    assert v.add("soon", HOUR) is None and v.add(HOUR, "soon") is None
    assert v.sub("soon", HOUR) is None


def test_datetime_minus_datetime_is_a_duration() -> None:
    assert v.sub(NOON + HOUR, NOON) == HOUR
    assert v.sub(NOON, NOON + HOUR) == -HOUR
    assert v.sub("2026-03-01T13:00:00Z", NOON) == HOUR
    assert v.sub(NOON, "2026-03-01T11:00:00Z") == HOUR
    assert v.sub(NOON, "soon") is None and v.sub("soon", NOON) is None
    assert v.sub(HOUR, NOON) is None  # a duration minus a datetime is nothing


def test_durations_add_subtract_scale_and_divide() -> None:
    assert v.add(HOUR, timedelta(minutes=30)) == timedelta(minutes=90)
    assert v.sub(HOUR, timedelta(minutes=30)) == timedelta(minutes=30)
    assert v.mul(2, HOUR) == timedelta(hours=2)
    assert v.mul(HOUR, 2) == timedelta(hours=2)
    assert v.mul(0.5, HOUR) == timedelta(minutes=30)
    assert v.div(HOUR, 2) == timedelta(minutes=30)
    assert v.div(HOUR, timedelta(minutes=15)) == 4.0
    assert v.neg(HOUR) == timedelta(hours=-1)


def test_texts_and_lists_concatenate_but_other_mixes_are_none() -> None:
    assert v.add("new", "sletter") == "newsletter"
    assert v.add([1], [2, 3]) == [1, 2, 3]
    assert v.add("a", 1) is None and v.add(1, "a") is None
    assert v.add([1], 2) is None and v.add([1], "a") is None
    assert v.add(NOON, NOON) is None and v.add(NOON, 1) is None
    assert v.sub("abc", "c") is None and v.sub(1, "a") is None
    assert v.mul("ab", 2) is None  # no text repetition
    assert v.mul(2, "ab") is None and v.mul([1], 2) is None
    assert v.mul(HOUR, HOUR) is None
    assert v.div("ab", 2) is None and v.div(2, HOUR) is None
    assert v.mod("ab", 2) is None and v.mod(2, "ab") is None
    assert v.neg("ab") is None


def test_division_by_zero_is_none() -> None:
    assert v.div(1, 0) is None
    assert v.div(1, 0.0) is None
    assert v.div(HOUR, 0) is None
    assert v.div(HOUR, timedelta(0)) is None
    assert v.mod(5, 0) is None
    assert v.div(0, 5) == 0


def test_durations_and_datetimes_too_large_to_hold_saturate_with_their_sign() -> None:
    # Not `none` (a wait would take that as "go on at once"): beyond the range, never an error.
    last = datetime(9999, 12, 31, tzinfo=UTC)
    first = datetime(1, 1, 1, tzinfo=UTC)
    huge = timedelta(days=999_999_999)
    assert v.add(last, timedelta(days=1)) == v.LATEST
    assert v.add(timedelta(days=1), last) == v.LATEST
    assert v.add("9999-12-31T23:00:00Z", HOUR) == v.LATEST
    assert v.sub(last, -timedelta(days=1)) == v.LATEST
    assert v.add(last, -huge) == v.EARLIEST
    assert v.sub(first, timedelta(days=1)) == v.EARLIEST
    assert v.add(huge, huge) == v.FOREVER and v.add(-huge, -huge) == -v.FOREVER
    assert v.sub(huge, -huge) == v.FOREVER and v.sub(-huge, huge) == -v.FOREVER
    assert v.mul(huge, 2) == v.FOREVER and v.mul(2, huge) == v.FOREVER
    assert v.mul(1e12, HOUR) == v.FOREVER and v.mul(HOUR, 1e308) == v.FOREVER
    assert v.mul(123456789012345678901234567890, HOUR) == v.FOREVER
    assert v.mul(-1e12, HOUR) == -v.FOREVER and v.mul(1e12, -HOUR) == -v.FOREVER
    assert v.div(HOUR, 1e-300) == v.FOREVER and v.div(HOUR, -1e-300) == -v.FOREVER
    assert v.neg(timedelta.max) == -v.FOREVER and v.neg(-v.FOREVER) == v.FOREVER
    assert v.abs_(-v.FOREVER) == v.FOREVER
    assert v.seconds(10**400) == math.inf and v.seconds(-(10**400)) == -math.inf
    # all of them outside the representable range
    assert v.FOREVER.total_seconds() > limits.MAX_DURATION
    assert v.LATEST.timestamp() > limits.LAST_INSTANT
    assert v.EARLIEST.timestamp() < limits.FIRST_INSTANT


def test_results_without_a_sign_or_out_of_a_numbers_range_are_none() -> None:
    assert v.mul(math.inf, timedelta(0)) is None and v.mul(timedelta(0), math.inf) is None
    assert v.mul(math.nan, HOUR) is None
    assert v.seconds(math.nan) is None
    assert v.mul(10**400, 1.5) is None
    assert v.mod(10**400, 2.0) is None


def test_a_float_that_overflows_is_too_large_to_hold_and_none() -> None:
    # `1e300 * 1e300` is an infinity to Python, and a number too large to hold to leadlang
    # (docs/reference.md, the representable range): none, so `> 0` is false, as in serve,
    # whose store cannot keep an infinity. Integers stay exact at any size.
    assert v.mul(1e300, 1e300) is None and v.mul(-1e300, 1e300) is None
    assert v.add(1.7e308, 1.7e308) is None and v.sub(-1.7e308, 1.7e308) is None
    assert v.div(1e300, 1e-300) is None
    assert v.add(10**400, 1) == 10**400 + 1 and v.mul(1e300, 10.0) == 1e301


# --- objects, defaults and functions -----------------------------------------------------


def test_a_field_of_an_object_and_of_each_element_of_a_list() -> None:
    assert v.attr({"category": "Shoes"}, "category") == "Shoes"
    assert v.attr({"category": "Shoes"}, "price") is None
    products = [{"category": "Winter Coats"}, 5, {"price": 3}]
    assert v.attr(products, "category") == ["Winter Coats", None, None]
    assert v.attr("Shoes", "category") is None
    assert v.attr(None, "category") is None


def test_default_replaces_only_none() -> None:
    assert v.default(None, "there") == "there"
    assert v.default("Ada", "there") == "Ada"
    assert v.default(0, 5) == 0  # zero is a value
    assert v.default("", "there") == ""


def test_sigmoid() -> None:
    assert v.sigmoid(0) == 0.5
    assert v.sigmoid(2) == pytest.approx(0.8807970779778823, rel=1e-15)
    assert v.sigmoid(-2) == pytest.approx(0.11920292202211755, rel=1e-15)
    assert v.sigmoid(-1000) == 0.0  # no overflow far out
    assert v.sigmoid(1000) == 1.0
    assert v.sigmoid(-700) > 0.0  # the exact value while it is representable
    assert v.sigmoid("2") is None and v.sigmoid(None) is None and v.sigmoid(True) is None


@pytest.mark.parametrize(("fn", "lowest"), [(v.min_, True), (v.max_, False)])
def test_min_and_max_of_values_or_of_one_list(fn: Any, lowest: bool) -> None:
    def pick(small: Any, large: Any) -> Any:
        return small if lowest else large

    assert fn(3, 1, 2) == pick(1, 3)
    assert fn([3, 1, 2]) == pick(1, 3)
    assert fn(1, 2.5) == pick(1, 2.5)
    assert fn("b", "a") == pick("a", "b")
    assert fn(HOUR, 2 * HOUR) == pick(HOUR, 2 * HOUR)
    assert fn(5) == 5 and fn([5]) == 5
    assert fn([]) is None and fn() is None
    assert fn(1, None) is None and fn([1, None]) is None
    assert fn(1, "a") is None and fn("a", 1, 2) is None and fn([1, HOUR]) is None
    assert fn([3, 1], [2]) is None  # two lists are no numbers


def test_abs() -> None:
    assert v.abs_(-3) == 3 and v.abs_(2.5) == 2.5
    assert v.abs_(-HOUR) == HOUR
    assert v.abs_("-3") is None and v.abs_(None) is None


def test_round_gives_an_integer_without_digits_and_rounds_half_to_even() -> None:
    three = v.round_(2.7)
    assert three == 3 and three.__class__ is int  # shown as `3`, not `3.0`
    assert v.round_(2.5) == 2 and v.round_(3.5) == 4  # half to even, as Python's `round`
    assert v.round_(-2.7) == -3
    assert v.round_(3.14159, 2) == 3.14
    assert v.round_(1234, -2) == 1200
    assert v.round_(2.675, 0) == 3


def test_round_of_anything_but_a_finite_number_is_none() -> None:
    assert v.round_("2.7") is None and v.round_(None) is None
    assert v.round_(2.7, 1.0) is None  # digits must be an integer
    assert v.round_(2.7, None) is None
    assert v.round_(math.inf) is None and v.round_(math.nan) is None


def test_lower_upper_and_len() -> None:
    assert v.lower("AbC") == "abc" and v.upper("AbC") == "ABC"
    assert v.lower(1) is None and v.upper(None) is None
    assert v.len_("abc") == 3 and v.len_([1, 2]) == 2 and v.len_({"a": 1}) == 1
    assert v.len_(5) is None and v.len_(None) is None


def test_literals_durations_datetimes_and_times_of_day() -> None:
    assert v.td(90) == timedelta(minutes=1, seconds=30)
    epoch = v.dt(0)
    assert epoch == datetime(1970, 1, 1, tzinfo=UTC) and epoch.tzinfo is UTC
    assert v.dt(1772366400) == NOON
    assert v.tod(9, 30) == time(9, 30, 0)
    assert v.tod(9, 30, 15) == time(9, 30, 15)


def test_seconds_of_a_duration_or_a_number() -> None:
    assert v.seconds(timedelta(minutes=2)) == 120.0
    five = v.seconds(5)
    assert five == 5.0 and five.__class__ is float
    assert v.seconds("5") is None and v.seconds(None) is None


def test_compiled_expression_runs_with_the_helpers() -> None:
    src = "def _f(c, p):\n    return _add(p.get('total'), _td(60))\n"
    assert v.compile_expr(src)(None, {"total": HOUR}) == timedelta(minutes=61)
