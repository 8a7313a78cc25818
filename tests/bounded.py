"""Run a piece of a test, or the `leadlang` command in a child process, under a time limit
and a memory cap, so a hang or a runaway (a backtracking regex, a quadratic read, a template
evaluated while checking) fails the test instead of stalling CI (SIGALRM and RLIMIT_AS are
enough on the POSIX systems CI runs on)."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
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


MEMORY_CAP = 1 << 30  # bytes of address space (the "under 1 GB")
TIME_LIMIT = 20.0  # seconds of wall time; every case here takes under 2


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_leadlang(
    *args: str | Path, stdin: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m leadlang ARGS` with the memory cap; raises `subprocess.TimeoutExpired`
    (failing the test) past the time limit."""
    return subprocess.run(
        [sys.executable, "-m", "leadlang", *map(str, args)],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
        preexec_fn=_cap_memory,
        cwd=cwd,
        check=False,
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> bool:
    return "Traceback" not in result.stderr and "Error" not in result.stderr
