"""Run the `leadlang` command in a child process under a time limit and a memory cap.

A regression that makes an input unbounded (a backtracking regex, a quadratic read, a
template evaluated while checking) then fails the test instead of stalling or swapping CI.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

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
