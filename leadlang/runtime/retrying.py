"""Loops that outlive a failing store: a run of failures logged briefly, and a growing pause."""

from __future__ import annotations

import asyncio
import contextlib
import logging


class Retrying:
    """The failures in a row of one step of a loop (the store down, restarting, or a
    connection cut): the traceback of the first, one line for each after it, and a pause
    before the next try that doubles from `first` seconds up to `cap`."""

    def __init__(self, log: logging.Logger, what: str, first: float, cap: float = 5.0) -> None:
        self.log = log
        self.what = what
        self.first = first
        self.cap = cap
        self.failures = 0

    def succeeded(self) -> None:
        self.failures = 0

    async def failed(self, exc: Exception, stop: asyncio.Event) -> None:
        """Log `exc`, then wait out the pause (or until `stop` is set)."""
        self.failures += 1
        if self.failures == 1:
            self.log.error("%s failed; retrying", self.what, exc_info=exc)
        else:
            self.log.warning(
                "%s failed again (%s: %s); retrying", self.what, type(exc).__name__, exc
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(self.cap, self.first * 2**self.failures))
