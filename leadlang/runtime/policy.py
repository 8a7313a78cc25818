"""The delivery policy of LANGUAGE.md section 6 (consent, address, quiet hours, caps) and
the contact-local time arithmetic it and `wait until` share (DST-aware).

The zones are pendulum's (`pendulum.timezone`), and the rules are pendulum's: a local wall
clock is `pendulum.from_timestamp(t, tz=zone)`, a local date and time is the instant of
`pendulum.datetime(..., tz=zone)`. The hot paths compute the same with the standard library
(a pendulum `Timezone` is a `zoneinfo.ZoneInfo`, whose conversions are in C): see `_wall`
and `_instant`. The pendulum forms stay as the fallback when the fast form raises; past
the end of the representable range (see `leadlang.limits`) a local instant is `math.inf`,
one that never comes.
"""

from __future__ import annotations

import bisect
import math
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any

import attrs
import pendulum

from leadlang.runtime.state import Contact
from leadlang.runtime.values import to_datetime

ADDRESS_TRAIT = {"email": "email", "sms": "phone"}
_MAX_ORDINAL = date.max.toordinal()


@attrs.frozen(slots=True)
class Decision:
    skip: str | None = None  # "unsubscribed" | "no_address" | "capped"
    defer_until: float | None = None  # quiet hours: send at this instant instead


SEND = Decision()
UNSUBSCRIBED = Decision(skip="unsubscribed")
NO_ADDRESS = Decision(skip="no_address")
CAPPED = Decision(skip="capped")

# `_instant` results by (zone key, date ordinal, second of day): a quiet window's end or a
# `wait until` time recurs for every contact of a zone on the same day.
_INSTANTS: dict[tuple[str, int, int, int], float] = {}
_INSTANTS_MAX = 65536  # emptied when full


def _wall(zone: Any, t: float) -> datetime:
    """The local wall clock at `t`: the same fields as `pendulum.from_timestamp(t, tz=zone)`.

    pendulum converts the UTC datetime of `t` with `astimezone(zone)` (ZoneInfo.fromutc);
    `datetime.fromtimestamp(t, zone)` rounds `t` the same way and calls the same fromutc.
    """
    try:
        return datetime.fromtimestamp(t, zone)
    except Exception:  # out of range, NaN: whatever pendulum does (raise) is the answer
        return pendulum.from_timestamp(t, tz=zone)


def _instant(zone: Any, ordinal: int, sod: int, fold: int = 1) -> float:
    """The instant of local date `ordinal` at second of day `sod`: exactly
    `pendulum.datetime(y, m, d, h, mi, s, tz=zone).timestamp()`, cached.

    That is pendulum's `Timezone.convert` of the naive datetime with fold=1: a time in a gap
    (spring forward) moves forward by the gap's length (02:30 becomes 03:30) and takes fold=0
    (what `datetime + timedelta` gives); an ambiguous time (fall back) keeps fold=1, the later
    of its two instants. The steps below are that code, on a plain datetime. With `fold=0`, an
    ambiguous time is the earlier of its instants (the rest is the same).
    """
    key = (zone.key, ordinal, sod, fold)
    found = _INSTANTS.get(key)
    if found is not None:
        return found
    try:
        day = date.fromordinal(ordinal)
        moment = datetime(
            day.year, day.month, day.day, sod // 3600, sod // 60 % 60, sod % 60, fold=fold
        )
        before = zone.utcoffset(moment.replace(fold=0))
        after = zone.utcoffset(moment.replace(fold=1))
        if after > before:  # skipped (gap): pendulum's "post" rule
            moment = moment + (after - before)
        result = float(moment.replace(tzinfo=zone).timestamp())
    except Exception:  # out of range: whatever pendulum does is the answer
        try:
            return _instant_pendulum(zone, ordinal, sod)
        except Exception:  # past year 9999: a day that never comes
            return math.inf
    if len(_INSTANTS) >= _INSTANTS_MAX:
        _INSTANTS.clear()
    _INSTANTS[key] = result
    return result


def _instant_pendulum(zone: Any, ordinal: int, sod: int) -> float:
    """The pendulum form `_instant` reproduces, for what the fast form cannot compute."""
    if ordinal > _MAX_ORDINAL:  # the day after 9999-12-31, as `local.date().add(days=1)` made it
        day = pendulum.Date.fromordinal(ordinal - 1).add(days=1)
    else:
        day = pendulum.Date.fromordinal(ordinal)
    moment = pendulum.datetime(
        day.year, day.month, day.day, sod // 3600, sod // 60 % 60, sod % 60, tz=zone
    )
    return float(moment.timestamp())


@lru_cache(maxsize=512)
def _zone(name: str) -> Any:
    try:
        return pendulum.timezone(name)
    except Exception:  # an unknown zone name in a trait: fall back to the default
        return None


class DeliveryPolicy:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.default_zone = _zone(settings.get("timezone") or "UTC") or _zone("UTC")
        quiet = settings.get("quiet_hours")
        # equal times are an empty window (nothing is quiet), which `check` warns about
        self.quiet: tuple[int, int] | None = (
            (quiet[0], quiet[1]) if quiet and quiet[0] != quiet[1] else None
        )
        self.caps: dict[str, list[tuple[int, float]]] = {}
        for cap in settings.get("caps", ()):
            self.caps.setdefault(cap["channel"], []).append((int(cap["count"]), float(cap["per"])))

    def zone(self, contact: Contact) -> Any:
        name = contact.traits.get("timezone")
        if isinstance(name, str) and name:
            found = _zone(name)
            if found is not None:
                return found
        return self.default_zone

    def decide(self, contact: Contact, channel: str, t: float) -> Decision:
        if _unsubscribed(contact, channel):
            return UNSUBSCRIBED
        trait = ADDRESS_TRAIT.get(channel)
        if trait is not None:
            # a blank text or no text at all (`"email": 5`, `true`, a list) is no address:
            # delivery would be tried to "5" and fail; a phone may come as a whole number
            address = contact.traits.get(trait)
            if not (
                (isinstance(address, str) and address.strip())
                or (trait == "phone" and address.__class__ is int and address > 0)
            ):
                return NO_ADDRESS
        if self.quiet is not None:
            end = self._quiet_end(contact, t)
            if end is not None:
                return Decision(defer_until=end)
        for count, per in self.caps.get(channel, ()):
            sends = contact.sends.get(channel)
            if sends and len(sends) - bisect.bisect_right(sends, t - per) >= count:
                return CAPPED
        return SEND

    def _quiet_end(self, contact: Contact, t: float) -> float | None:
        """The end of the quiet window `t` falls in, or None when outside it: the first
        instant at which the contact's local clock reads a time outside the window.

        Usually that is when the clock reads the window's end. On a night the clocks change
        it can come sooner (they jump from inside the window past its end: 02:00 becomes
        03:00 with a window ending at 02:30) or later (they fall back into the window, or the
        end happens twice and its first reading counts), so each clock change before the
        naive end is crossed and the reading after it looked at.
        """
        if self.quiet is None:
            return None
        start, end = self.quiet
        zone = self.zone(contact)
        at = t
        try:
            for _ in range(_MAX_CHANGES):
                local = _wall(zone, at)
                sod = local.hour * 3600 + local.minute * 60 + local.second
                inside = start <= sod < end if start < end else (sod >= start or sod < end)
                if not inside:
                    return None if at == t else at
                # the wall clock reaches `end` this many seconds later, if it runs evenly
                # (counted from the whole second: offsets are whole seconds, so the end is one)
                whole = math.floor(at)
                if whole != at:
                    local = _wall(zone, whole)
                    sod = local.hour * 3600 + local.minute * 60 + local.second
                naive = float(whole + ((end - sod) % 86400 or 86400))
                offset = local.utcoffset()
                if _wall(zone, naive).utcoffset() == offset:
                    return naive
                at = _change(zone, at, naive, offset)
        except (OverflowError, ValueError, OSError):
            return math.inf  # past the end of the calendar: the send never comes
        return at

    def until_instant(self, contact: Contact, target: Any, t: float) -> float | None:
        """`wait until`: a time of day is the next such local instant at or after `t` (on the
        day clocks fall back, a time that happens twice is first its earlier instant, then,
        once that has passed, its later one; a time skipped by a spring-forward gap is the
        instant the gap's length later, as in quiet hours)."""
        if isinstance(target, str) and len(target) <= 8 and ":" in target and "T" not in target:
            try:
                target = time.fromisoformat(target)
            except ValueError:
                return None
        if isinstance(target, time):
            zone = self.zone(contact)
            day = _wall(zone, t).toordinal()
            sod = target.hour * 3600 + target.minute * 60 + target.second
            at = _instant(zone, day, sod, fold=0)
            if at < t:
                at = _instant(zone, day, sod)  # (the same instant unless it happens twice)
                if at < t:
                    at = _instant(zone, day + 1, sod, fold=0)
            return at
        moment = to_datetime(target)
        if isinstance(moment, datetime):
            try:
                return moment.timestamp()
            except (OverflowError, ValueError):  # year 0 or 10000 in UTC: passed or never
                return t if moment.year < 5000 else math.inf
        return None


_MAX_CHANGES = 8  # clock changes crossed within one quiet window (real zones: one)


def _change(zone: Any, lo: float, hi: float, offset: Any) -> float:
    """The first whole second in (lo, hi] at which the zone's UTC offset is no longer
    `offset` (it is `offset` at `lo`, another at `hi`): offsets change on whole seconds."""
    a, b = math.floor(lo), math.ceil(hi)
    while b - a > 1:
        mid = (a + b) // 2
        if _wall(zone, mid).utcoffset() == offset:
            a = mid
        else:
            b = mid
    return float(b)


def _unsubscribed(contact: Contact, channel: str) -> bool:
    flag = contact.traits.get("unsubscribed")
    if flag is True or (isinstance(flag, str) and flag.lower() == "true"):
        return True
    if not contact.unsubscribed:
        return False
    unsub = max(
        (v for v in (contact.unsubscribed.get(channel), contact.unsubscribed.get(None)) if v),
        default=None,
    )
    if unsub is None:
        return False
    sub = max(
        (v for v in (contact.subscribed.get(channel), contact.subscribed.get(None)) if v),
        default=None,
    )
    return sub is None or unsub > sub
