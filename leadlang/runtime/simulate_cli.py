"""The `simulate` command's work behind the thin click layer: read, run, print or compare."""

from __future__ import annotations

import difflib
import errno
import os
import sys
from collections.abc import Callable
from functools import partial

import click
import msgspec

from leadlang.interpreter.compile import compile_program
from leadlang.interpreter.program import Program
from leadlang.limits import FIRST_TEXT, LAST_TEXT
from leadlang.runtime.engine import Effect, Engine
from leadlang.runtime.log_types import apply_declared_types
from leadlang.runtime.simulate import (
    MAX_LINE,
    format_text,
    parse_until,
    public,
    read_events,
    simulate,
)

PROGRESS_MIN_EVENTS = 20_000
# Below this many events a single process is faster than forking workers.
PARALLEL_MIN_EVENTS = 20_000


def _workers(asked: int | None, events: int) -> int:
    """`--workers`, or by default one process per usable CPU (at most 4) for a large log."""
    if asked is not None:
        return asked
    if events < PARALLEL_MIN_EVENTS:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: simulate runs in one process there anyway
        cpus = 1
    return max(1, min(cpus, 4))


class _Stop(bytes):
    """The rendered line of a `stop` effect (a chain that never settles), also reported on
    standard error; a bytes subclass, so it travels from the worker processes as it is."""


_encode = msgspec.json.Encoder().encode  # any value a log line can carry (ints of any size)
_decode = msgspec.json.Decoder().decode


def run_simulate(
    program: Program,
    events_path: str,
    until_text: str | None,
    fmt: str,
    expect_path: str | None,
    skip_bad: bool,
    workers: int | None = None,
) -> int:
    """Returns the exit code: 0 fine, 1 differs from --expect, 2 bad input."""
    shown = "standard input" if events_path == "-" else events_path
    try:
        if events_path == "-":  # a log piped in: `... | leadlang simulate DIR --events -`
            if sys.stdin is None:  # (`<&-`: Python has no stream for it)
                raise OSError(errno.EBADF, "standard input is closed")
            log = read_events(sys.stdin.buffer)
        else:
            with open(events_path, "rb") as handle:
                log = read_events(handle)
    except OSError as exc:
        click.echo(f"error: cannot read events file `{events_path}`: {exc.strerror}", err=True)
        return 2
    for bad in log.bad:
        click.echo(f"{'warning' if skip_bad else 'error'}: {shown}: {bad}", err=True)
    for line, problem in apply_declared_types(log.events, program.event_params):
        click.echo(f"warning: {shown}: line {line}: {problem}", err=True)
    if log.ignored:
        total = sum(log.ignored.values())
        counts = ", ".join(f"{count} {kind}" for kind, count in sorted(log.ignored.items()))
        calls = "call" if total == 1 else "calls"
        click.echo(
            f"note: {shown}: ignored {total} {calls} ({counts}): simulate has no use for them",
            err=True,
        )
    if log.bad and not skip_bad:
        click.echo("error: bad input lines (use --skip-bad to skip them)", err=True)
        return 2
    last = log.events[-1].t if log.events else None
    until = parse_until(until_text, last)
    if until is None:
        click.echo(
            f"error: --until `{until_text}` is neither an ISO time (from {FIRST_TEXT} to "
            f"{LAST_TEXT}) nor +DURATION",
            err=True,
        )
        return 2
    engine = Engine(compile_program(program))
    as_line: Callable[[Effect], bytes]
    if fmt == "json" or expect_path:

        def as_line(effect: Effect) -> bytes:
            return _encode(public(effect))
    else:

        def as_line(effect: Effect) -> bytes:
            return format_text(public(effect)).encode()

    def render(effect: Effect) -> bytes:
        rendered = as_line(effect)
        return _Stop(rendered) if effect["action"] == "stop" else rendered

    lines: list[bytes] = []
    progress = None
    bar = None
    if sys.stderr.isatty() and len(log.events) >= PROGRESS_MIN_EVENTS:
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task("simulating", total=len(log.events))
        bar.start()

        def progress(done: int) -> None:
            bar.update(task, completed=done)

    try:
        count = _workers(workers, len(log.events))
        simulate(engine, log.events, until, lines.append, progress, count, render)
    finally:
        if bar is not None:
            bar.stop()
    for rendered in lines:
        if isinstance(rendered, _Stop):
            click.echo(
                "warning: a chain of flows that never settles was stopped: "
                + rendered.decode("utf-8", "replace"),
                err=True,
            )
    if expect_path:
        return _compare(lines, expect_path)
    if lines:
        sys.stdout.flush()
        sys.stdout.buffer.write(b"\n".join(lines) + b"\n")
        sys.stdout.buffer.flush()
    return 0


_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def _normalise(line: str | bytes) -> str:
    return _encode_sorted(_decode(line)).decode()


def _compare(lines: list[bytes], expect_path: str) -> int:
    # Read a line at a time, each no longer than a log's (`/dev/zero` would take all memory),
    # split at `\n` alone as simulate writes them (a U+2028 in an id is not a line end).
    expected: list[str] = []
    try:
        with open(expect_path, "rb") as handle:
            for number, line in enumerate(iter(partial(handle.readline, MAX_LINE + 2), b""), 1):
                if len(line.rstrip(b"\r\n")) > MAX_LINE:
                    click.echo(
                        f"error: {expect_path}: line {number}: longer than {MAX_LINE >> 20} MB",
                        err=True,
                    )
                    return 2
                if not line.strip():
                    continue
                try:
                    expected.append(_normalise(line))
                except (msgspec.MsgspecError, RecursionError):
                    click.echo(f"error: {expect_path}: line {number}: not valid JSON", err=True)
                    return 2
    except OSError as exc:
        click.echo(f"error: cannot read expected file `{expect_path}`: {exc.strerror}", err=True)
        return 2
    actual = [_normalise(line) for line in lines]
    if expected == actual:
        return 0
    diff = difflib.unified_diff(expected, actual, expect_path, "simulated", lineterm="")
    click.echo("effects differ from the expected file:", err=True)
    click.echo("\n".join(diff))
    return 1
