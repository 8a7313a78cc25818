"""The `leadlang` command: parse arguments, call the library, render. Nothing else lives here."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Any

import click

from leadlang import __version__
from leadlang.interpreter.program import Program

FORMATS = ("full", "concise", "json", "sarif")


class _Commands(click.Group):
    """Lists each command with its whole summary: click cuts summaries to the terminal's
    width with `...`, and a summary is one short sentence worth reading whole."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        """The command; a full disk (or a failing one) under the output is an error naming
        it, not a traceback (click takes care of a closed pipe, EPIPE, itself)."""
        try:
            return super().invoke(ctx)
        except OSError as exc:
            if exc.errno not in _DISK_ERRORS:
                raise
            where = f" `{exc.filename}`" if exc.filename else " the output"
            with contextlib.suppress(OSError):  # (what is still buffered cannot be written)
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            click.echo(f"error: cannot write{where}: {exc.strerror}", err=True)
            sys.exit(2)


_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EIO)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="leadlang")
def main() -> None:
    """leadlang: marketing automation as code.

    Write lead scoring, segments, messages and flows in `.lead` scripts; `check` them like a
    compiler, `simulate` them against an event log, `serve` them for real.
    """
    # The last resort against odd characters: a character the terminal's encoding cannot
    # show (or a lone surrogate) is printed as a replacement rather than raising.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):  # (a stream that cannot be)
                reconfigure(errors="replace")


@main.command(short_help="Check .lead scripts and report every problem found.")
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="full", show_default=True)
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def check(paths: tuple[str, ...], fmt: str, strict: bool) -> None:
    """Check .lead scripts (files or folders) and report every problem found."""
    from leadlang.interpreter.check import check_paths
    from leadlang.render import render

    result = check_paths(list(paths))
    if result.usage_error:
        click.echo(f"error: {result.usage_error}", err=True)
        sys.exit(2)
    output = render(result.diagnostics, result.sources, fmt)
    if output:
        click.echo(output, nl=not output.endswith("\n"))
    failed = any(d.is_error for d in result.diagnostics) or (strict and bool(result.diagnostics))
    if fmt == "full" and not result.has_errors:
        # Say what was checked, so that silence is never mistaken for "nothing was read"
        # (machine formats print only their document).
        click.echo(checked_summary(result.checked, len(result.diagnostics)))
    sys.exit(1 if failed else 0)


@main.command(short_help="Explain a diagnostic code, e.g. `leadlang explain N001`.")
@click.argument("code")
def explain(code: str) -> None:
    """Explain a diagnostic code, e.g. `leadlang explain N001`."""
    from leadlang.codes import CODES

    info = CODES.get(code.upper())
    if info is None:
        click.echo(f"error: unknown diagnostic code `{code}`", err=True)
        sys.exit(2)
    click.echo(f"{info.code} ({info.severity}): {info.summary}\n\n{info.explanation}")


def checked_summary(checked: dict[str, int], warnings: int) -> str:
    """`checked 3 files (2 from the standard library), 2 flows: no problems` (or `: 1 warning`)."""
    from pathlib import Path

    from leadlang.loader import stdlib_dir

    standard = stdlib_dir().resolve()
    files = len(checked)
    std = sum(Path(path).resolve().is_relative_to(standard) for path in checked)
    flows = sum(checked.values())
    outcome = f"{warnings} warning{'s' * (warnings != 1)}" if warnings else "no problems"
    from_std = f" ({std} from the standard library)" if std else ""
    return (
        f"checked {files} file{'s' * (files != 1)}{from_std}, "
        f"{flows} flow{'s' * (flows != 1)}: {outcome}"
    )


def _load_program(paths: tuple[str, ...]) -> Program:
    """Check the scripts; print diagnostics and exit 2 when they have errors."""
    from leadlang.interpreter.check import check_paths
    from leadlang.render import render

    result = check_paths(list(paths))
    if result.usage_error:
        click.echo(f"error: {result.usage_error}", err=True)
        sys.exit(2)
    if any(d.is_error for d in result.diagnostics):
        output = render(result.diagnostics, result.sources, "full")
        click.echo(output, err=True, nl=not output.endswith("\n"))
        sys.exit(2)
    if result.program is None:
        click.echo(f"error: {result.several_programs()}", err=True)
        sys.exit(2)
    return result.program


@main.command("compile", short_help="Print the machine IR the engine runs.")
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["json"]), default="json", show_default=True)
def compile_(paths: tuple[str, ...], fmt: str) -> None:
    """Print the machine IR (state machines, compiled conditions) of .lead scripts."""
    import orjson

    from leadlang.interpreter.compile import compile_program

    program = compile_program(_load_program(paths))
    click.echo(orjson.dumps(program, option=orjson.OPT_INDENT_2).decode())


@main.command(short_help="Replay an event log on a virtual clock and print the effects.")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--events",
    "events_path",
    required=True,
    help="JSON lines, Segment-shaped (`-`: standard input).",
)
@click.option("--until", default=None, help="ISO time, or +D after the last event (default +30d).")
@click.option(
    "--format", "fmt", type=click.Choice(["json", "text"]), default="json", show_default=True
)
@click.option("--expect", "expect_path", default=None, help="Compare with this JSON-lines file.")
@click.option("--skip-bad", is_flag=True, help="Report bad input lines and go on.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes to share the contacts among (default: one per CPU for large logs).",
)
def simulate(
    paths: tuple[str, ...],
    events_path: str,
    until: str | None,
    fmt: str,
    expect_path: str | None,
    skip_bad: bool,
    workers: int | None,
) -> None:
    """Replay an event log through the flows on a virtual clock and print the effects."""
    from leadlang.runtime.simulate_cli import run_simulate

    program = _load_program(paths)
    code = run_simulate(program, events_path, until, fmt, expect_path, skip_bad, workers)
    sys.exit(code)


@main.command(short_help="Show what an edit changes: flows, steps, and effects on stored history.")
@click.argument("old_path")
@click.argument("new_path")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--db", default=None, help="Also replay this store's history through both.")
@click.option("--config", "config_path", default=None, help="serve's TOML config (its store).")
def diff(old_path: str, new_path: str, fmt: str, db: str | None, config_path: str | None) -> None:
    """Compare two versions of a program: flows and steps added, removed and changed (by step
    id); with --db or --config, the effects each contact of the store would get from the new
    version that differ from its ledger. Exit code 0: the programs are the same, 1: they
    differ, 2: a script is broken or the store cannot be read.
    """
    from leadlang.runtime.diff import run_diff
    from leadlang.runtime.serve_cli import config_or_exit

    given = db is not None or config_path is not None
    url = config_or_exit(config_path, db).store if given else None
    sys.exit(run_diff(old_path, new_path, fmt, url))


@main.command(short_help="Draw flows as diagrams (Mermaid, DOT or SVG).")
@click.argument("paths", nargs=-1, required=True)
@click.option("--flow", "flow_name", default=None, help="Draw only this flow.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dot", "mermaid", "svg"]),
    default="mermaid",
    show_default=True,
)
def graph(paths: tuple[str, ...], flow_name: str | None, fmt: str) -> None:
    """Draw flows as diagrams (Graphviz DOT, Mermaid, or SVG through Graphviz's `dot`)."""
    from leadlang.graph import GraphError, render_graph
    from leadlang.interpreter.compile import compile_program

    program_ir = compile_program(_load_program(paths))
    try:
        click.echo(render_graph(program_ir, flow_name, fmt), nl=False)
    except GraphError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--config", "config_path", default=None, help="TOML config (default: none).")
@click.option("--db", default=None, help="Store URL (default: sqlite:///leadlang.db).")
@click.option("--listen", default=None, help="HOST:PORT (default: 127.0.0.1:8484).")
def serve(
    paths: tuple[str, ...], config_path: str | None, db: str | None, listen: str | None
) -> None:
    """Run the flows for real: Segment-compatible ingest, a durable store, delivery."""
    from leadlang.runtime.serve_cli import config_or_exit, run_serve

    config = config_or_exit(config_path, db, listen)
    program = _load_program(paths)
    sys.exit(run_serve(program, list(paths), config))


@main.command()
@click.option("--config", "config_path", default=None, help="serve's TOML config.")
@click.option("--db", default=None, help="Store URL (default: sqlite:///leadlang.db).")
@click.option("--contact", default=None, help="Only this contact's effects.")
@click.option(
    "--format", "fmt", type=click.Choice(["json", "text"]), default="json", show_default=True
)
@click.option("--follow", is_flag=True, help="Keep printing new effects as they are committed.")
def effects(
    config_path: str | None, db: str | None, contact: str | None, fmt: str, follow: bool
) -> None:
    """Print serve's effect ledger as `leadlang simulate` prints effects."""
    from leadlang.runtime.serve_cli import config_or_exit, run_effects

    sys.exit(run_effects(config_or_exit(config_path, db), contact, fmt, follow))


@main.group()
def outbox() -> None:
    """Inspect serve's outbox and queue dead deliveries again."""


@outbox.command("list")
@click.option("--config", "config_path", default=None, help="serve's TOML config.")
@click.option("--db", default=None, help="Store URL (default: sqlite:///leadlang.db).")
@click.option("--status", type=click.Choice(["pending", "sent", "dead"]), default=None)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def outbox_list(config_path: str | None, db: str | None, status: str | None, fmt: str) -> None:
    """List outbox rows: key, status, channel, contact, flow/message, attempts, last error."""
    from leadlang.runtime.serve_cli import config_or_exit, run_outbox

    sys.exit(run_outbox(config_or_exit(config_path, db), "list", status, [], fmt))


@outbox.command("retry")
@click.argument("keys", nargs=-1)
@click.option("--config", "config_path", default=None, help="serve's TOML config.")
@click.option("--db", default=None, help="Store URL (default: sqlite:///leadlang.db).")
@click.option("--all-dead", is_flag=True, help="Every dead row.")
def outbox_retry(
    keys: tuple[str, ...], config_path: str | None, db: str | None, all_dead: bool
) -> None:
    """Queue dead outbox rows (by key, or --all-dead) for delivery again."""
    from leadlang.runtime.serve_cli import config_or_exit, run_outbox

    if not keys and not all_dead:
        click.echo("error: name the keys to retry, or --all-dead", err=True)
        sys.exit(2)
    sys.exit(run_outbox(config_or_exit(config_path, db), "retry", None, list(keys), "text"))


@main.command()
@click.argument("message")
@click.argument("paths", nargs=-1)
@click.option(
    "--traits", "traits_json", default=None, help='The contact as JSON: {"first_name": "Ann", ...}.'
)
@click.option("--contact", "contact_id", default=None, help="A contact of serve's store.")
@click.option("--config", "config_path", default=None, help="serve's TOML config (its store).")
@click.option(
    "--db", default=None, help="Store URL (default: the config's, or sqlite:///leadlang.db)."
)
@click.option("--event", "event_json", default=None, help="The bound event's properties, as JSON.")
@click.option(
    "--at",
    "at_text",
    default=None,
    help="Render as of this ISO time (the Date header, score decay; default: now).",
)
def render(
    message: str,
    paths: tuple[str, ...],
    traits_json: str | None,
    contact_id: str | None,
    config_path: str | None,
    db: str | None,
    event_json: str | None,
    at_text: str | None,
) -> None:
    """Show a message rendered for one contact, exactly as serve would deliver it."""
    from leadlang.runtime.render_cli import run_render
    from leadlang.runtime.serve_cli import config_or_exit

    if (traits_json is None) == (contact_id is None):
        click.echo("error: give --traits JSON or --contact ID (with --config or --db)", err=True)
        sys.exit(2)
    store = None
    if contact_id is not None:
        store = config_or_exit(config_path, db).store
    program = _load_program(paths or (".",))
    sys.exit(run_render(program, message, traits_json, contact_id, store, event_json, at_text))
