"""The `serve` and `effects` commands' work behind the thin click layer."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import click
import orjson

from leadlang.interpreter.program import Program
from leadlang.runtime.effects import format_text, format_time, printable
from leadlang.runtime.server.config import Config, ConfigError, load_config
from leadlang.runtime.server.programs import missing_secrets, serve_ir
from leadlang.runtime.store.sql import StoreError, open_store

FOLLOW_POLL = 0.5
OUTBOX_PAGE = 10_000  # rows `outbox list` reads at a time


def config_or_exit(path: str | None, db: str | None, listen: str | None = None) -> Config:
    try:
        return load_config(path, db, listen)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def run_serve(program: Program, paths: list[str], config: Config) -> int:
    from leadlang.runtime.server.app import run

    try:
        ir, missing = serve_ir(program, config)
        if missing:
            click.echo(f"error: {missing_secrets(missing)}", err=True)
            return 2
        return run(config, ir, paths)
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except ValueError as exc:  # a channel driver that cannot be set up
        click.echo(f"error: {exc}", err=True)
        return 2


def run_effects(config: Config, contact: str | None, fmt: str, follow: bool) -> int:
    try:
        return asyncio.run(_effects(config, contact, fmt, follow))
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except KeyboardInterrupt:
        return 0


def _line(body: str, fmt: str) -> str:
    if fmt == "json":
        return body
    effect: dict[str, Any] = orjson.loads(body)
    return format_text(effect)


async def _effects(config: Config, contact: str | None, fmt: str, follow: bool) -> int:
    store = await open_store(config.store, create=False)
    try:
        out = sys.stdout
        # simulate's order (so `diff` against `leadlang simulate` works), then, following,
        # new entries as they are committed, from the cursor read with that history (read
        # after it, an entry committed in between was never printed)
        history, last = await store.ledger_and_cursor(contact)
        for body in history:
            out.write(_line(body, fmt) + "\n")
        out.flush()
        if not follow:
            return 0
        while True:
            rows = await store.effects_after(last, 1000, contact)
            for effect_id, body in rows:
                out.write(_line(body, fmt) + "\n")
                last = effect_id
            out.flush()
            if not rows:
                await asyncio.sleep(FOLLOW_POLL)
    finally:
        await store.close()


def run_outbox(config: Config, action: str, status: str | None, keys: list[str], fmt: str) -> int:
    try:
        return asyncio.run(_outbox(config, action, status, keys, fmt))
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2


async def _outbox(
    config: Config, action: str, status: str | None, keys: list[str], fmt: str
) -> int:
    store = await open_store(config.store, create=False)
    try:
        if action == "retry":
            queued = set(await store.outbox_requeue(keys or None, time.time()))
            click.echo(f"{len(queued)} dead row(s) queued again")
            missed = [key for key in dict.fromkeys(keys) if key not in queued]
            if missed:  # (a mistyped key said "0 queued" and nothing more)
                click.echo(
                    "error: not queued again (no such key, not dead, or its message could not"
                    " be rendered): " + ", ".join(f"`{printable(key)}`" for key in missed),
                    err=True,
                )
                return 1
            return 0
        # Every row, a page at a time (one query for them all stopped at 100,000 rows, saying
        # nothing of the rest).
        after: tuple[float, str] | None = None
        while True:
            rows = await store.outbox_rows(status, OUTBOX_PAGE, after)
            for row in rows:
                _print_outbox_row(row, fmt)
            if len(rows) < OUTBOX_PAGE:
                return 0
            after = (rows[-1]["created"], rows[-1]["key"])
    finally:
        await store.close()


def _print_outbox_row(row: dict[str, Any], fmt: str) -> None:
    shown = {str(k): v for k, v in row.items()}  # (`str` subclasses: orjson refuses them)
    shown["next_attempt"] = format_time(row["next_attempt"])
    if row["delivered"] is not None:
        shown["delivered"] = format_time(row["delivered"])
    if fmt == "json":
        click.echo(orjson.dumps(shown).decode())
        return
    # (an id, or an error a remote server wrote, can neither break the line nor move a
    # terminal's cursor: escaped as `effects --format text` escapes them)
    text = {k: printable(v) if isinstance(v, str) else v for k, v in shown.items()}
    error = f"  {text['last_error']}" if text["last_error"] else ""
    click.echo(
        f"{text['key']}  {text['status']:<7} {text['channel']:<5} {text['contact']:<16} "
        f"{text['flow']}/{text['message']}  attempts={text['attempts']}{error}"
    )
