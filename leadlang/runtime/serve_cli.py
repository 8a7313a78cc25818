"""The `serve` and `effects` commands' work behind the thin click layer."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click
import orjson

from leadlang.interpreter.compile import compile_program
from leadlang.interpreter.program import Program
from leadlang.runtime.effects import format_text
from leadlang.runtime.server.config import Config, ConfigError, load_config
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
        return run(config, compile_program(program), paths)
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
    store = await open_store(config.store)
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
