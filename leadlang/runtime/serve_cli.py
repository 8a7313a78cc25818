"""The `serve` and `effects` commands' work behind the thin click layer."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import click
import orjson

from leadlang.interpreter.program import Program
from leadlang.runtime.effects import format_text, format_time
from leadlang.runtime.server.config import Config, ConfigError, load_config
from leadlang.runtime.server.programs import missing_secrets, serve_ir
from leadlang.runtime.store.sql import StoreError, open_store

FOLLOW_POLL = 0.5


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
        # new entries as they are committed
        for body in await store.effects_in_order(contact):
            out.write(_line(body, fmt) + "\n")
        out.flush()
        if not follow:
            return 0
        last = await store.last_effect_id()
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
            n = await store.outbox_requeue(keys or None, time.time())
            click.echo(f"{n} dead row(s) queued again")
            return 0
        rows = await store.outbox_rows(status, 100_000)
        for row in rows:
            row["next_attempt"] = format_time(row["next_attempt"])
            if row["delivered"] is not None:
                row["delivered"] = format_time(row["delivered"])
            if fmt == "json":
                # (the store's column names are `str` subclasses, which orjson refuses as keys)
                click.echo(orjson.dumps({str(k): v for k, v in row.items()}).decode())
            else:
                error = f"  {row['last_error']}" if row["last_error"] else ""
                click.echo(
                    f"{row['key']}  {row['status']:<7} {row['channel']:<5} {row['contact']:<16} "
                    f"{row['flow']}/{row['message']}  attempts={row['attempts']}{error}"
                )
        return 0
    finally:
        await store.close()
