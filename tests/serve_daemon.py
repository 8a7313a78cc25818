"""A `leadlang serve` daemon as a real process on a free 127.0.0.1 port, for tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from leadlang.runtime.store.inbox import waiting_in

WRITE_KEY = "test-write-key"
ADMIN_TOKEN = "test-admin-token"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_url() -> str | None:
    """`LEADLANG_TEST_POSTGRES` (set in CI), as serve takes it."""
    return os.environ.get("LEADLANG_TEST_POSTGRES") or None


def postgres_admin(url: str, statement: str) -> None:
    """Run one statement on the server of `url` (asyncpg, outside a transaction)."""
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def store_query(db: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of `sql` (`?` placeholders) on the store at `db` (serve's `--db` URL)."""
    if db.startswith("sqlite"):
        import sqlite3

        path = db.split(":///", 1)[1]
        conn = sqlite3.connect(path, timeout=30)
        try:
            rows = [tuple(row) for row in conn.execute(sql, args)]
            conn.commit()  # (a test may write, e.g. to age a row)
            return rows
        finally:
            conn.close()
    import asyncio
    import re

    import asyncpg

    numbered = iter(range(1, len(args) + 1))
    pg_sql = re.sub(r"\?", lambda _: f"${next(numbered)}", sql)

    async def run() -> list[tuple[Any, ...]]:
        url = re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql://", db)
        conn = await asyncpg.connect(url)
        try:
            return [tuple(row) for row in await conn.fetch(pg_sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


class Daemon:
    """`leadlang serve PATHS` in `workdir` (its Maildir and JSON-lines outbox land there)."""

    def __init__(
        self,
        workdir: Path,
        paths: list[str],
        db: str | None = None,
        config: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.paths = paths
        self.db = db or f"sqlite:///{workdir / 'leadlang.db'}"
        self.port = free_port()
        self.config_path = workdir / "leadlang.toml"
        if config is None:
            config = f'[server]\nwrite_keys = ["{WRITE_KEY}"]\nadmin_token = "{ADMIN_TOKEN}"\n'
        self.config_path.write_text(config, encoding="utf-8")
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.output: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Daemon:
        self.output = []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "leadlang",
                "serve",
                *self.paths,
                "--db",
                self.db,
                "--listen",
                f"127.0.0.1:{self.port}",
                # (a test that removed the file runs serve on its embedded defaults)
                *(("--config", str(self.config_path)) if self.config_path.exists() else ()),
            ],
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                self.output.append(line)
                if "listening on" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(START_TIMEOUT) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("serve did not start:\n" + "\n".join(self.output))
        return self

    def kill(self) -> None:
        """A real SIGKILL."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM, and its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(45)  # (a loaded 2-core machine can be slow to shut down)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    # ---------------------------------------------------------------- requests

    def post(
        self, path: str, body: Any, key: str | None = WRITE_KEY, **kw: Any
    ) -> requests.Response:
        headers = kw.pop("headers", {})
        if key is not None:
            headers.setdefault("Authorization", f"Bearer {key}")
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        headers.setdefault("Content-Type", "application/json")
        return requests.post(self.url + path, data=data, headers=headers, timeout=30, **kw)

    def admin(self, path: str, token: str | None = ADMIN_TOKEN) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(self.url + path, headers=headers, timeout=30)

    def ledger(self) -> list[dict[str, Any]]:
        """Every effect through the admin API, following its cursor."""
        effects: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.admin(f"/v1/effects?after={after}&limit=1000").json()
            effects.extend(page["effects"])
            if page["next"] is None:
                return effects
            after = int(page["next"])

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of `sql` (`?` placeholders) read straight from the store: the SQLite file
        with `sqlite3`, or PostgreSQL with asyncpg; never through the daemon. While the
        daemon runs on a SQLite file, first until its back end has admitted what ingest
        appended to the inbox (so `events` holds every acknowledged event)."""
        if self.proc is not None and self.proc.poll() is None:
            self.wait_admitted()
        return store_query(self.db, sql, *args)

    def wait_admitted(self, timeout: float = 30.0) -> None:
        if not self.db.startswith("sqlite"):
            return
        database = self.db.split(":///", 1)[1]
        deadline = time.monotonic() + timeout
        while waiting_in(database):
            if time.monotonic() > deadline:
                raise TimeoutError("serve's back end has not admitted the inbox's events")
            time.sleep(0.01)

    def count(self, table: str, where: str = "", *args: Any) -> int:
        return int(self.query(f"SELECT count(*) FROM {table} {where}", *args)[0][0])

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until every stored event has been processed (from the metrics)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = requests.get(self.url + "/metrics", timeout=10).text
            for line in text.splitlines():
                if line.startswith("leadlang_pending_events ") and float(line.split()[1]) == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError("serve still has pending events")


@contextlib.contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new database on the server of `LEADLANG_TEST_POSTGRES`, dropped afterwards (for
    module-scoped daemons; the `postgres_db` fixture is the per-test one)."""
    url = postgres_url()
    if url is None:
        pytest.skip("LEADLANG_TEST_POSTGRES is not set")
    name = "leadlang_test_" + uuid.uuid4().hex[:12]
    postgres_admin(url, f'CREATE DATABASE "{name}"')
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        postgres_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Mailbox:
    """An aiosmtpd handler that keeps every message's bytes as they came over the wire."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.original_content)
        return "250 2.0.0 OK queued"


# Each `signed_up` is one enrollment: `enter`, `send hello` (one Maildir file), `exit`.
GREET = """\
message hello:
  channel email
  subject "hello {{ id }}"
  text "hello {{ id }}"

flow greet:
  on signed_up
  reenter always
  set email = event.email
  send hello
"""

# Each `started` waits 5 seconds, then sends and exits at the wait's due instant.
SLOW = """\
message later:
  channel email
  subject "later {{ id }}"
  text "later {{ id }}"

flow slow:
  on started
  reenter always
  set email = event.email
  wait 5s
  send later
"""


def maildir_files(workdir: Path) -> list[Path]:
    """Every delivered email (`outbox/new` and `outbox/cur`)."""
    return [p for sub in ("new", "cur") for p in sorted((workdir / "outbox" / sub).glob("*"))]
