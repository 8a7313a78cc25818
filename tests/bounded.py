"""Run a piece of a test under a time limit and a memory cap, so a hang or a runaway fails
the test instead of stalling CI (the suite has no plugin for it; SIGALRM and RLIMIT_AS are
enough on the POSIX systems CI runs on)."""

from __future__ import annotations

import resource
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

SECONDS = 10.0
MEMORY = 1 << 30  # bytes of address space on top of what the process already has


class TooLong(Exception):
    pass


def _address_space() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[0]) * resource.getpagesize()


@contextmanager
def bounded(seconds: float = SECONDS, memory: int = MEMORY) -> Iterator[None]:
    """Raise TooLong after `seconds`, MemoryError beyond `memory` more bytes."""

    def alarm(signum: int, frame: Any) -> None:
        raise TooLong(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + memory
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def within_limits(call: Callable[..., T], *args: Any, seconds: float = SECONDS) -> T:
    with bounded(seconds):
        return call(*args)
