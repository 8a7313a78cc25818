"""Value semantics of LANGUAGE.md section 4, as the helpers generated condition code calls.

Generated code (see `leadlang.interpreter.codegen`) inlines the fast path (two numbers) and
calls these for everything else: missing values (`None`), texts compared with datetimes,
durations, lists. Every helper returns a value or `None`/`False`; none of them raises on
user data, so a bad property never becomes a traceback.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

from leadlang.regex import compile_pattern

NUM = (int, float)  # compared by `__class__`, so `bool` is not a number here
# What an operation raises when its result is out of range (a datetime past year 9999, a
# duration or an integer too large for a float, the rounding of an infinity).
_RANGE = (OverflowError, ValueError)
# A duration or a datetime too large to hold is not `none` (which a wait takes as "go on at
# once"): it saturates, with its sign, at FOREVER (999,999,999 days, as long as Python's
# `timedelta` goes either way) or at the latest (earliest) datetime Python holds. All lie
# far outside the representable range (`leadlang.limits`): a wait of FOREVER, or until
# LATEST, never ends; EARLIEST has always passed. A result with no sign (zero times an
# infinity, NaN) is `none`, as is a number too large to hold.
FOREVER = timedelta(days=999_999_999)  # (-FOREVER is `timedelta.min`)
LATEST = datetime.max.replace(tzinfo=UTC)
EARLIEST = datetime.min.replace(tzinfo=UTC)
_ZERO = timedelta(0)


def is_num(value: object) -> bool:
    return value.__class__ is int or value.__class__ is float


@lru_cache(maxsize=4096)
def _parse_datetime(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    # A text without an offset is read as UTC: event data carries no script time zone.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def to_datetime(value: object) -> datetime | None:
    if value.__class__ is datetime:
        return value
    if isinstance(value, str):
        return _parse_datetime(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def _pair(a: Any, b: Any) -> tuple[Any, Any] | None:
    """Bring a text compared with a datetime to a datetime; None when it does not parse."""
    if a.__class__ is datetime or b.__class__ is datetime:
        a2, b2 = to_datetime(a), to_datetime(b)
        if a2 is None or b2 is None:
            return None
        return a2, b2
    return a, b


def _comparable(a: Any, b: Any) -> bool:
    ca, cb = a.__class__, b.__class__
    if ca in NUM and cb in NUM:
        return True
    return ca is cb and ca in (str, datetime, timedelta, time)


def lt(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    pair = _pair(a, b)
    if pair is None or not _comparable(*pair):
        return False
    return bool(pair[0] < pair[1])


def le(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    pair = _pair(a, b)
    if pair is None or not _comparable(*pair):
        return False
    return bool(pair[0] <= pair[1])


def gt(a: Any, b: Any) -> bool:
    return lt(b, a)


def ge(a: Any, b: Any) -> bool:
    return le(b, a)


def eq(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    pair = _pair(a, b)
    if pair is None:
        return False
    return bool(pair[0] == pair[1])


def ne(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is not b
    pair = _pair(a, b)
    if pair is None:
        return False
    return bool(pair[0] != pair[1])


def _text_contains(haystack: str, needle: Any) -> bool:
    if not isinstance(needle, str):
        if needle.__class__ in NUM:
            needle = str(needle)
        else:
            return False
    return needle.lower() in haystack.lower()


def contains(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    if isinstance(a, str):
        return _text_contains(a, b)
    if isinstance(a, list | tuple):
        for item in a:
            if isinstance(item, str) and isinstance(b, str):
                if b.lower() in item.lower():
                    return True
            elif item == b and item is not None:
                return True
        return False
    if isinstance(a, dict):
        return b in a
    return False


def starts_with(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and a.lower().startswith(b.lower())


def ends_with(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and a.lower().endswith(b.lower())


def in_(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    if isinstance(b, list | tuple):
        return a in b
    if isinstance(b, str):
        return _text_contains(b, a)
    if isinstance(b, dict):
        return a in b
    return False


def not_in(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    return not in_(a, b)


def regex(pattern: str) -> Any:
    """`pattern` compiled for `matches` (on RE2: linear time), None when it cannot run."""
    return compile_pattern(pattern)


def search(pattern: Any, text: Any) -> bool:
    return pattern is not None and isinstance(text, str) and pattern(text)


def matches(text: Any, pattern: Any) -> bool:
    if not isinstance(pattern, str):
        return False
    return search(regex(pattern), text)


def _sign(value: Any) -> int:
    """-1, 0 or 1 for a number or a duration (0 for NaN)."""
    zero = _ZERO if value.__class__ is timedelta else 0
    return int(value > zero) - int(value < zero)


def _too_long(sign: int) -> timedelta | None:
    """A duration too long to hold, of this sign: saturated."""
    return FOREVER if sign > 0 else -FOREVER if sign < 0 else None


def _too_far(sign: int) -> datetime | None:
    """A datetime past the calendar, after it or before it: saturated."""
    return LATEST if sign > 0 else EARLIEST if sign < 0 else None


def _shift(moment: Any, delta: timedelta, sign: int) -> datetime | None:
    """`moment + sign * delta` (a text read as a datetime), saturated past the calendar."""
    d = to_datetime(moment)
    if d is None:
        return None
    try:
        return d + delta if sign > 0 else d - delta
    except _RANGE:
        return _too_far(sign * _sign(delta))


def held(number: Any) -> Any:
    """A computed number, or none when it is too large to hold: a float that overflowed to
    an infinity (`1e300 * 1e300`), or NaN (`inf - inf`). Integers are exact at any size."""
    return number if number.__class__ is int or -math.inf < number < math.inf else None


def add(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    ca, cb = a.__class__, b.__class__
    if ca in NUM and cb in NUM:
        return held(a + b)
    if ca is timedelta and cb is timedelta:
        try:
            return a + b
        except _RANGE:  # (both of one sign)
            return _too_long(_sign(a))
    if cb is timedelta:
        return _shift(a, b, 1)
    if ca is timedelta:
        return _shift(b, a, 1)
    if ca is str and cb is str:
        return a + b
    if ca is list and cb is list:
        return a + b
    return None


def sub(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    ca, cb = a.__class__, b.__class__
    if ca in NUM and cb in NUM:
        return held(a - b)
    if ca is timedelta and cb is timedelta:
        try:
            return a - b
        except _RANGE:  # (of -b's sign, whatever a's: `1m - (FOREVER + 1h)` is negative)
            return _too_long(-_sign(b))
    if cb is timedelta:
        return _shift(a, b, -1)
    try:
        if ca is datetime or cb is datetime:
            d1, d2 = to_datetime(a), to_datetime(b)
            return None if d1 is None or d2 is None else d1 - d2
    except _RANGE:
        return None
    return None


def mul(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    ca, cb = a.__class__, b.__class__
    if ca in NUM and cb in NUM:
        try:
            return held(a * b)
        except _RANGE:
            return None
    if ca in NUM and cb is timedelta:
        a, b = b, a
    elif not (ca is timedelta and cb in NUM):
        return None
    try:
        return a * b
    except OverflowError:  # (a NaN raises ValueError: no sign, none)
        return _too_long(_sign(a) * _sign(b))
    except ValueError:
        return None


def div(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    ca, cb = a.__class__, b.__class__
    if cb in NUM and b == 0:
        return None
    try:
        if ca in NUM and cb in NUM:
            return held(a / b)
        if ca is timedelta and cb in NUM:
            try:
                return a / b
            except OverflowError:
                return _too_long(_sign(a) * _sign(b))
        if ca is timedelta and cb is timedelta and b:
            return a / b
    except _RANGE:
        return None
    return None


def mod(a: Any, b: Any) -> Any:
    if a.__class__ in NUM and b.__class__ in NUM and b != 0:
        try:
            return a % b
        except _RANGE:
            return None
    return None


def neg(a: Any) -> Any:
    if a.__class__ in NUM:
        return -a
    if a.__class__ is timedelta:
        try:
            return -a
        except OverflowError:
            return _too_long(-_sign(a))
    return None


def attr(obj: Any, name: str) -> Any:
    """`a.b`: the field of an object; on a list, the list of each element's field."""
    if isinstance(obj, dict):
        return obj.get(name)
    if isinstance(obj, list):
        return [item.get(name) if isinstance(item, dict) else None for item in obj]
    return None


def default(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


def sigmoid(x: Any) -> float | None:
    if x.__class__ not in NUM:
        return None
    if x < -700:
        return 0.0
    if x > 700:
        return 1.0
    return 1.0 / (1.0 + math.exp(-x))


def _numbers(args: tuple[Any, ...]) -> list[Any] | None:
    if len(args) == 1 and isinstance(args[0], list):
        args = tuple(args[0])
    if not args or any(a is None for a in args):
        return None
    if not all(_comparable(args[0], a) for a in args):
        return None
    return list(args)


def min_(*args: Any) -> Any:
    values = _numbers(args)
    return None if values is None else min(values)


def max_(*args: Any) -> Any:
    values = _numbers(args)
    return None if values is None else max(values)


def abs_(x: Any) -> Any:
    return abs(x) if x.__class__ in NUM or x.__class__ is timedelta else None


def round_(x: Any, digits: Any = 0) -> Any:
    if x.__class__ not in NUM or digits.__class__ is not int:
        return None
    try:
        return round(x) if digits == 0 else round(x, digits)
    except _RANGE:  # (an infinity, or digits too many to count)
        return None


def lower(x: Any) -> Any:
    return x.lower() if isinstance(x, str) else None


def upper(x: Any) -> Any:
    return x.upper() if isinstance(x, str) else None


def len_(x: Any) -> Any:
    return len(x) if isinstance(x, str | list | dict) else None


def td(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def tod(hour: int, minute: int, second: int = 0) -> time:
    return time(hour, minute, second)


def seconds(value: Any) -> float | None:
    """A duration as seconds (a number is taken as seconds too); an integer too large for a
    float is an infinity of its sign, and NaN is none (it has no sign)."""
    if value.__class__ is timedelta:
        return value.total_seconds()
    if value.__class__ in NUM:
        try:
            result = float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
        return None if math.isnan(result) else result
    return None


# The namespace generated code runs in: `_name` for each helper.
HELPERS: dict[str, Any] = {
    "_NUM": NUM,
    "_lt": lt,
    "_le": le,
    "_gt": gt,
    "_ge": ge,
    "_eq": eq,
    "_ne": ne,
    "_contains": contains,
    "_starts": starts_with,
    "_ends": ends_with,
    "_in": in_,
    "_not_in": not_in,
    "_re": regex,
    "_search": search,
    "_matches": matches,
    "_add": add,
    "_sub": sub,
    "_mul": mul,
    "_div": div,
    "_mod": mod,
    "_neg": neg,
    "_attr": attr,
    "_default": default,
    "_sigmoid": sigmoid,
    "_min": min_,
    "_max": max_,
    "_abs": abs_,
    "_round": round_,
    "_lower": lower,
    "_upper": upper,
    "_len": len_,
    "_td": td,
    "_dt": dt,
    "_tod": tod,
    "_seconds": seconds,
}


def compile_expr(src: str, name: str = "<expr>") -> Any:
    """Compile an IR expression's source once; returns the `_f(c, p)` callable it defines."""
    namespace = dict(HELPERS)
    exec(compile(src, name, "exec"), namespace)
    return namespace["_f"]
