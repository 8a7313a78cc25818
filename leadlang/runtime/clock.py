"""Clocks: the engine never reads the wall clock; it is handed instants by a clock."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch, UTC."""
        ...


class VirtualClock:
    """The simulate clock: time moves only when the driver advances it."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance_to(self, instant: float) -> None:
        self._now = max(self._now, instant)


class WallClock:
    """The serve clock."""

    def now(self) -> float:
        return time.time()
