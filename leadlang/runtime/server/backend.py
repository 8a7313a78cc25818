"""serve's back end: the processing loop and the outbox worker, over the store.

The daemon's HTTP side (ingest, admin) and its back end share nothing but the database. On a
machine with two or more cores the back end runs in a child process of its own (`python -m
leadlang.runtime.server.backend`), so running the engine and building messages never hold up
ingest, and each side has a core and a Python interpreter lock of its own; the parent wakes it
through a pipe after each commit. The child dies with its parent (Linux: PR_SET_PDEATHSIG), so
a killed daemon leaves nothing running; a round or delivery cut short by that is redone by the
next daemon, as after any crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from leadlang.runtime.engine import Engine
from leadlang.runtime.processor import Processor
from leadlang.runtime.server.config import Config, resolve_secrets
from leadlang.runtime.store.sql import SqlStore, open_store

SHUTDOWN_TIMEOUT = 10.0
BACKEND_NICENESS = 5
log = logging.getLogger("leadlang.serve")


class Backend:
    """The processor and the outbox worker, with their tasks."""

    def __init__(
        self,
        store: SqlStore,
        engine: Engine,
        program: dict[str, Any],
        config: Config,
        clock: Callable[[], float],
        deliver: bool = True,
        secret: str | None = None,
        generation: int = 0,
    ) -> None:
        self.store = store
        self.config = config
        self.worker: Any = None
        # only the secrets the program's messages use reach the drivers (filled in again
        # when a reload brings another program: the drivers read this very dict)
        self.secrets = dict(resolve_secrets(config, program)[0])
        if deliver:
            from leadlang.runtime.delivery.drivers import make_drivers
            from leadlang.runtime.delivery.worker import OutboxWorker

            self.worker = OutboxWorker(
                store,
                make_drivers(config.channels, config.base_dir, self.secrets),
                clock,
                max_attempts=config.max_attempts,
                timeout=config.timeout,
            )
        self.processor = Processor(
            store,
            engine,
            program,
            clock,
            on_output=self._output,
            secret=secret,  # signs the tracking links in emails when public_url is set
            public_url=config.public_url,
            generation=generation,
            on_program=self._program,
        )
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def _program(self, program: dict[str, Any]) -> None:
        self.secrets.update(resolve_secrets(self.config, program)[0])

    def _output(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    def wake(self) -> None:
        """New events were committed."""
        self.processor.wake()

    def start(self) -> None:
        """Start the loops. Waits that came due while the daemon was down are the
        processor's first work (rounds take due timers first, earliest first)."""
        loop = asyncio.get_running_loop()
        self.tasks.append(loop.create_task(self.processor.run(self.stop)))
        if self.worker is not None:
            self.tasks.append(loop.create_task(self.worker.run(self.stop)))

    async def close(self) -> None:
        """Let the current round and deliveries finish, then stop."""
        self.stop.set()
        self.wake()
        self.processor.wakeup.set()  # (a sleeping loop sees `stop`)
        if self.worker is not None:
            self.worker.wake()
        for task in self.tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, SHUTDOWN_TIMEOUT)
        if self.worker is not None:
            with contextlib.suppress(Exception):
                await self.worker.close()


async def check_channels(config: Config, program: dict[str, Any]) -> None:
    """Raise ValueError, saying why, when `[channels]` cannot make its drivers (checked once
    at start-up: a back end in a child process would otherwise fail at each start while the
    daemon answered requests)."""
    from leadlang.runtime.delivery.drivers import make_drivers

    secrets = dict(resolve_secrets(config, program)[0])
    for driver in make_drivers(config.channels, config.base_dir, secrets).values():
        await driver.close()


class ChildBackend:
    """The back end in a child process, driven from the daemon's process."""

    def __init__(self, config: Config, program: dict[str, Any], generation: int = 0) -> None:
        self.config = config
        self.program = program
        self.generation = generation
        self.proc: asyncio.subprocess.Process | None = None
        self._wake_w = -1
        self._watch: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        read, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "leadlang.runtime.server.backend",
            str(read),
            stdin=asyncio.subprocess.PIPE,
            pass_fds=(read,),
        )
        os.close(read)
        assert self.proc.stdin is not None
        self.proc.stdin.write(
            pickle.dumps((self.config, self.program, self.generation, os.getpid()))
        )
        await self.proc.stdin.drain()
        self.proc.stdin.close()
        self._watch = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        """A back end that dies on its own (not at shutdown) is started again."""
        assert self.proc is not None
        code = await self.proc.wait()
        if self._closing:
            return
        log.error("the back end stopped (exit code %s); starting it again", code)
        await asyncio.sleep(1.0)
        os.close(self._wake_w)
        await self.start()

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"!")

    async def close(self) -> None:
        self._closing = True
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), SHUTDOWN_TIMEOUT + 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._watch is not None:
            self._watch.cancel()
        with contextlib.suppress(OSError):
            os.close(self._wake_w)


def _die_with(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (and check it is not gone)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


async def _child(config: Config, program: dict[str, Any], generation: int, wake_fd: int) -> None:
    store = await open_store(config.store)
    secret, _ = await store.credential("secret", config.secret)  # the parent stored it
    backend = Backend(
        store, Engine(program), program, config, time.time, secret=secret, generation=generation
    )
    loop = asyncio.get_running_loop()
    os.set_blocking(wake_fd, False)

    def woken() -> None:
        with contextlib.suppress(BlockingIOError):
            if not os.read(wake_fd, 4096):  # the parent closed its end: stop
                backend.stop.set()
        backend.wake()

    loop.add_reader(wake_fd, woken)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, backend.stop.set)
    # a reload is the parent's (the program reaches this process through the store)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    backend.start()
    await backend.stop.wait()
    await backend.close()
    await store.close()


def event_loop_runner() -> asyncio.Runner:
    """An asyncio runner on uvloop where it is installed (both of serve's processes)."""
    try:
        import uvloop
    except ImportError:  # uvloop is optional
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def main() -> None:
    wake_fd = int(sys.argv[1])
    config, program, generation, parent = pickle.loads(sys.stdin.buffer.read())
    _die_with(parent)
    # Ingest answers clients and keeps only what they sent; the back end's work can wait. On a
    # busy machine the scheduler favours the HTTP process.
    with contextlib.suppress(OSError):
        os.nice(BACKEND_NICENESS)
    logging.basicConfig(level=logging.INFO, format="leadlang serve (back end): %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with event_loop_runner() as runner:
        runner.run(_child(config, program, generation, wake_fd))


if __name__ == "__main__":
    main()
