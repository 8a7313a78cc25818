"""`leadlang serve`: the app factory and the daemon around it (store, processor, outbox worker).

`make_app` builds the aiohttp application from its parts, with no globals, so tests start
the real app; `serve` opens the store, prints the start-up summary, runs until SIGTERM or
Ctrl-C and then stops gracefully: no new requests, in-flight ones and the current
transactions finish, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import attrs
import orjson
from aiohttp import web

from leadlang.diff import diff_programs
from leadlang.runtime.delivery.render import clear_template_cache
from leadlang.runtime.delivery.tracking import Tracker
from leadlang.runtime.diff import diff_report
from leadlang.runtime.engine import Engine
from leadlang.runtime.server.admin import Admin
from leadlang.runtime.server.backend import (
    Backend,
    ChildBackend,
    check_channels,
    event_loop_runner,
)
from leadlang.runtime.server.config import Config
from leadlang.runtime.server.ingest import (
    HANDLER_ARGS,
    RETRY_AFTER,
    Committer,
    Ingest,
    cors_middleware,
    error_response,
    store_unavailable,
)
from leadlang.runtime.server.metrics import Metrics
from leadlang.runtime.server.openapi import openapi_document
from leadlang.runtime.server.programs import load_scripts, publish
from leadlang.runtime.server.runner import Runner
from leadlang.runtime.server.tracking import Tracking
from leadlang.runtime.store.sql import SqlStore, StoreError, describe_url, open_store

SHUTDOWN_TIMEOUT = 10.0
log = logging.getLogger("leadlang.serve")
FOLLOW_EVERY = 1.0  # seconds between looks for a program another daemon published
BACKLOG_EVERY = 1.0  # seconds between looks at the backlog (`server.max_backlog`)


@attrs.define
class Daemon:
    """Everything a running serve holds: the store, the program, the credentials, ingest's
    committer, and the back end (processor and outbox worker: `backend.py`)."""

    config: Config
    store: SqlStore
    program: dict[str, Any]
    engine: Engine
    write_keys: tuple[str, ...]
    admin_token: str
    secret: str
    generated: dict[str, str]
    paths: list[str] = attrs.field(factory=list)  # the scripts, read again by a reload
    generation: int = 0  # of the program run (`programs.publish`)
    clock: Callable[[], float] = time.time
    committer: Committer = attrs.field(init=False)
    backend: Backend | ChildBackend | None = None
    stop: asyncio.Event = attrs.field(factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = attrs.field(factory=list)
    inflight: int = 0  # HTTP requests being handled

    _reloading: asyncio.Lock = attrs.field(factory=asyncio.Lock)

    def __attrs_post_init__(self) -> None:
        self.committer = Committer(self.store, self.clock, on_commit=self._committed)

    def _committed(self) -> None:
        if self.backend is not None:
            self.backend.wake()

    def flows(self) -> dict[str, dict[str, Any]]:
        return {
            flow["name"]: {"version": flow["version"], "states": list(flow["states"])}
            for flow in self.program["flows"]
        }

    async def reload(self, dry_run: bool = False) -> tuple[int, dict[str, Any]]:
        """Read the scripts again (`POST /v1/reload`, SIGHUP): (HTTP status, JSON answer).
        Scripts with errors (or using a secret that is not set) are refused with their
        diagnostics, and the running program stays. Otherwise the new program is published
        in the store, run by this daemon's processor from its next round and by every other
        daemon of the store within `FOLLOW_EVERY` seconds; each enrollment goes on on the
        flow version its `edits` policy says. `dry_run`: only the report of what it would
        change (`leadlang diff --db`), nothing is published."""
        async with self._reloading:
            loaded = await asyncio.to_thread(load_scripts, self.paths, self.config)
            if loaded.ir is None:
                if loaded.text:
                    print(loaded.text, file=sys.stderr, flush=True)
                print(
                    f"leadlang serve: reload refused: {loaded.error}", file=sys.stderr, flush=True
                )
                return 422, {
                    "error": "invalid scripts",
                    "detail": loaded.error,
                    "diagnostics": loaded.diagnostics,
                }
            if dry_run:
                report = await diff_report(self.program, loaded.ir, self.store, now=self.clock())
                return 200, {"dry_run": True, **report}
            engine = await asyncio.to_thread(self.engine.successor, loaded.ir)
            before = self.program
            generation = await publish(self.store, loaded.ir)
            self._take_up(loaded.ir, engine, generation)
            self._committed()  # the processor picks the program up at its next round
            print(f"leadlang serve: reloaded (generation {generation})", flush=True)
            return 200, {
                "reloaded": True,
                "generation": generation,
                **diff_programs(before, loaded.ir),
            }

    async def watch_backlog(self) -> None:
        """Tell the committer, every `BACKLOG_EVERY` seconds, the events accepted and not
        yet processed when they are `server.max_backlog` or more (else 0): ingest answers 429
        until processing has brought them back under it."""
        while not self.stop.is_set():
            try:
                backlog = await self.store.backlog()
            except Exception:  # the store is away: ingest finds that out on its own
                pass
            else:
                self.committer.backlog = backlog if backlog >= self.config.max_backlog else 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), BACKLOG_EVERY)

    def _take_up(self, program: dict[str, Any], engine: Engine, generation: int) -> None:
        self.program, self.engine, self.generation = program, engine, generation
        clear_template_cache()

    async def follow(self) -> None:
        """Take up a program another daemon of the store published (every `FOLLOW_EVERY`
        seconds): the admin API and /metrics then show it."""
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), FOLLOW_EVERY)
            try:
                if await self.store.program_generation() == self.generation:
                    continue
                async with self._reloading:
                    generation, text = await self.store.current_program()
                    if text is None or generation == self.generation:
                        continue
                    program = orjson.loads(text)
                    engine = await asyncio.to_thread(self.engine.successor, program)
                    self._take_up(program, engine, generation)
            except Exception:  # the store is away: try again at the next turn
                continue

    async def start(self, deliver: bool = True, processes: int | None = None) -> None:
        """Start ingest's committer and the back end: in a child process when `processes`
        (default: the config's, else 2 on a machine with two cores or more) is 2."""
        if processes is None:
            processes = self.config.processes or (2 if (os.cpu_count() or 1) >= 2 else 1)
        if processes >= 2 and deliver:
            child = ChildBackend(self.config, self.program, self.generation)
            await child.start()
            self.backend = child
        else:
            inline = Backend(
                self.store,
                self.engine,
                self.program,
                self.config,
                self.clock,
                deliver,
                secret=self.secret,
                generation=self.generation,
            )
            inline.start()
            self.backend = inline
        loop = asyncio.get_running_loop()
        self.tasks.append(loop.create_task(self.committer.run(self.stop)))
        self.tasks.append(loop.create_task(self.follow()))
        if self.config.max_backlog:
            self.tasks.append(loop.create_task(self.watch_backlog()))

    async def shutdown(self) -> None:
        self.stop.set()
        for task in self.tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, SHUTDOWN_TIMEOUT)
        if self.backend is not None:
            await self.backend.close()
        await self.store.close()


async def open_daemon(
    config: Config, program: dict[str, Any], paths: list[str] | None = None
) -> Daemon:
    store = await open_store(config.store)
    try:
        store.use_alone()  # (SQLite: one daemon; StoreError when another has it)
    except StoreError:
        await store.close()
        raise
    generated: dict[str, str] = {}
    write_keys = config.write_keys
    if not write_keys:
        key, new = await store.credential("write_key", None)
        write_keys = (key,)
        if new:
            generated["write key"] = key
    admin, new = await store.credential("admin_token", config.admin_token)
    if new:
        generated["admin token"] = admin
    secret, _ = await store.credential("secret", config.secret)
    # On SQLite (one daemon) deliveries a killed daemon had claimed are free again at once.
    await store.release_leases()
    # What this daemon was started with is what every daemon of the store runs from now on.
    generation = await publish(store, program)
    return Daemon(
        config=config,
        store=store,
        program=program,
        engine=Engine(program),
        write_keys=write_keys,
        admin_token=admin,
        secret=secret,
        generated=generated,
        paths=list(paths or ()),
        generation=generation,
    )


def make_app(daemon: Daemon) -> web.Application:
    @web.middleware
    async def count_inflight(request: web.Request, handler: Any) -> web.StreamResponse:
        daemon.inflight += 1
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise  # (a redirect)
            # aiohttp's own refusals (no such route, a method the route does not take) in
            # JSON too
            response = error_response(
                exc.status, exc.reason.lower(), f"{request.method} {request.path}: {exc.reason}"
            )
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        except Exception as exc:  # every route answers in JSON, even when the store is away
            if store_unavailable(exc):
                log.warning(
                    "%s %s: the store is unavailable (%s)", request.method, request.path, exc
                )
                response = error_response(503, "unavailable", "the store cannot be reached; retry")
                response.headers["Retry-After"] = str(RETRY_AFTER)
                return response
            log.exception("%s %s failed", request.method, request.path)
            return error_response(500, "internal error", "the request could not be answered")
        finally:
            daemon.inflight -= 1

    ingest = Ingest(daemon.committer, daemon.write_keys)
    metrics = Metrics(daemon, ingest)
    app = web.Application(
        client_max_size=1024 * 1024,
        middlewares=[count_inflight, metrics.middleware(), cors_middleware()],
        handler_args=HANDLER_ARGS,
    )
    app.add_routes(ingest.routes())
    admin = Admin(daemon.store, daemon.admin_token, daemon, daemon.clock)
    app.add_routes(admin.routes())
    app.add_routes([web.get("/metrics", metrics.handler)])
    # always served: links in mail already sent keep working if public_url is later unset
    tracker = Tracker(daemon.secret, daemon.config.public_url or "")
    app.add_routes(Tracking(tracker, daemon.committer, daemon.clock).routes())
    document = orjson.dumps(openapi_document())

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    app.add_routes([web.get("/openapi.json", openapi)])
    return app


def summary(daemon: Daemon, host: str, port: int, paths: list[str]) -> str:
    lines = [
        f"leadlang serve: listening on http://{host}:{port}",
        f"  store     {describe_url(daemon.config.store)}{_inbox_shown(daemon)}",
        f"  scripts   {' '.join(paths)}",
    ]
    for flow in daemon.program["flows"]:
        lines.append(f"  flow      {flow['name']} (version {flow['version'][:12]})")
    channels = daemon.config.channels
    for channel, default in (
        ("email", "maildir outbox/"),
        ("sms", "outbox/sms.jsonl"),
        ("push", "outbox/push.jsonl"),
    ):
        table = channels.get(channel)
        lines.append(f"  {channel:<9} {default if not table else _channel_shown(table)}")
    for name, value in daemon.generated.items():
        lines.append(f"  {name:<9} {value}   (generated and stored; shown once)")
    if "write key" not in daemon.generated:
        lines.append(
            "  write key from the config" if daemon.config.write_keys else "  write key stored"
        )
    lines.append("Ctrl-C or SIGTERM stops it.")
    return "\n".join(lines)


def _inbox_shown(daemon: Daemon) -> str:
    inbox = daemon.store.inbox
    return f" (ingest's inbox: {inbox.path.name} beside it)" if inbox is not None else ""


def _channel_shown(table: dict[str, Any]) -> str:
    """A configured channel as the start-up summary shows it: its driver and where it
    delivers (no credentials)."""
    driver = str(table.get("driver", "?"))
    where = {
        "maildir": f"{table.get('path', 'outbox')}/",
        "jsonl": table.get("path"),
        "smtp": f"{table.get('host', '?')}:{table.get('port', '')}".rstrip(":"),
        "http": _origin(str(table.get("url", ""))),
        "webhook": "each message's url",
    }.get(driver)
    return f"{driver} {where}" if where else driver


def _origin(url: str) -> str:
    """`scheme://host:port` of a URL: its path, query or user could carry a token."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{port}" if port else "")


async def _serve(config: Config, program: dict[str, Any], paths: list[str]) -> int:
    await check_channels(config, program)  # (ValueError: `run_serve` says it, exit 2)
    daemon = await open_daemon(config, program, paths)
    host, port = config.host_port
    await daemon.start()
    app = make_app(daemon)
    runner = Runner(app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        await runner.cleanup()
        await daemon.shutdown()
        return 2
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        port = server.sockets[0].getsockname()[1]
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # (before the summary says it listens)
        loop.add_signal_handler(sig, stopping.set)
    print(summary(daemon, host, port, paths), flush=True)
    reloads: set[asyncio.Task[Any]] = set()

    def hangup() -> None:
        task = loop.create_task(daemon.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, hangup)
    await stopping.wait()
    print("leadlang serve: stopping", flush=True)
    # No new connections; requests in flight finish (those still receiving their body too),
    # then idle connections are closed and the committer and the back end stop.
    for running in list(runner.sites):
        await running.stop()
    deadline = loop.time() + SHUTDOWN_TIMEOUT
    while daemon.inflight and loop.time() < deadline:
        await asyncio.sleep(0.02)
    await runner.cleanup()
    await daemon.shutdown()
    print("leadlang serve: stopped", flush=True)
    return 0


def run(config: Config, program: dict[str, Any], paths: list[str]) -> int:
    """Run the daemon until stopped; returns the exit code."""
    with event_loop_runner() as runner:
        return runner.run(_serve(config, program, paths))
