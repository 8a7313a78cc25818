"""The delivery policy of LANGUAGE.md section 6 (consent, address, quiet hours, caps) and
the contact-local time arithmetic it and `wait until` share (pendulum, DST-aware)."""

from __future__ import annotations

import bisect
from datetime import datetime, time
from functools import lru_cache
from typing import Any

import attrs
import pendulum

from leadlang.runtime.state import Contact
from leadlang.runtime.values import to_datetime

ADDRESS_TRAIT = {"email": "email", "sms": "phone"}


@attrs.frozen(slots=True)
class Decision:
    skip: str | None = None  # "unsubscribed" | "no_address" | "capped"
    defer_until: float | None = None  # quiet hours: send at this instant instead


SEND = Decision()


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
        self.quiet: tuple[int, int] | None = (quiet[0], quiet[1]) if quiet else None
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

    def local(self, contact: Contact, t: float) -> pendulum.DateTime:
        return pendulum.from_timestamp(t, tz=self.zone(contact))

    def decide(self, contact: Contact, channel: str, t: float) -> Decision:
        if _unsubscribed(contact, channel):
            return Decision(skip="unsubscribed")
        trait = ADDRESS_TRAIT.get(channel)
        if trait is not None and not contact.traits.get(trait):
            return Decision(skip="no_address")
        if self.quiet is not None:
            end = self._quiet_end(contact, t)
            if end is not None:
                return Decision(defer_until=end)
        for count, per in self.caps.get(channel, ()):
            sends = contact.sends.get(channel)
            if sends and len(sends) - bisect.bisect_right(sends, t - per) >= count:
                return Decision(skip="capped")
        return SEND

    def _quiet_end(self, contact: Contact, t: float) -> float | None:
        """The end of the quiet window `t` falls in (local time), or None when outside it."""
        assert self.quiet is not None
        start, end = self.quiet
        local = self.local(contact, t)
        sod = local.hour * 3600 + local.minute * 60 + local.second
        inside = start <= sod < end if start < end else (sod >= start or sod < end)
        if not inside:
            return None
        day = local.date() if sod < end else local.date().add(days=1)
        return self._at_local(contact, day, end)

    def _at_local(self, contact: Contact, day: Any, sod: int) -> float:
        zone = self.zone(contact)
        moment = pendulum.datetime(
            day.year, day.month, day.day, sod // 3600, sod // 60 % 60, sod % 60, tz=zone
        )
        return float(moment.timestamp())

    def until_instant(self, contact: Contact, target: Any, t: float) -> float | None:
        """`wait until`: a time of day is the next such local instant at or after `t`."""
        if isinstance(target, str) and len(target) <= 8 and ":" in target and "T" not in target:
            try:
                target = time.fromisoformat(target)
            except ValueError:
                return None
        if isinstance(target, time):
            local = self.local(contact, t)
            sod = target.hour * 3600 + target.minute * 60 + target.second
            at = self._at_local(contact, local.date(), sod)
            if at < t:
                at = self._at_local(contact, local.date().add(days=1), sod)
            return at
        moment = to_datetime(target)
        if isinstance(moment, datetime):
            return moment.timestamp()
        return None


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
