"""A PostgreSQL server of the test's own: `initdb` into a temporary folder, `pg_ctl` on a free
127.0.0.1 port (its unix socket in that folder too), stopped and deleted afterwards.

The chaos tests restart it, kill it and cut its connections, which they must never do to a
shared server (CI's `LEADLANG_TEST_POSTGRES` stays untouched). The server binaries are the
machine's (`LEADLANG_PG_BIN`, else `pg_config --bindir`, else the newest
`/usr/lib/postgresql/*/bin`, else `initdb` on the PATH). PostgreSQL refuses to run as root: as
root the commands run as the `postgres` user (`runuser`), in a folder that user owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serve_daemon import free_port

START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections


def server_binaries() -> Path | None:
    """The folder holding `initdb`, `pg_ctl` and `postgres`; None when there is none."""
    candidates: list[Path] = []
    if os.environ.get("LEADLANG_PG_BIN"):
        candidates.append(Path(os.environ["LEADLANG_PG_BIN"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if found.returncode == 0:
            candidates.append(Path(found.stdout.strip()))

    def version(path: Path) -> int:
        return int(path.parent.name) if path.parent.name.isdigit() else 0

    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for folder in candidates:
        if all((folder / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


class PgCluster:
    """One private server. `url(database)` is what serve's `--db` takes."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.as_postgres = os.geteuid() == 0
        # (not under pytest's tmp_path: as root that is a 0700 folder `postgres` cannot enter)
        self.base = Path(tempfile.mkdtemp(prefix="leadlang-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "run"
        self.log = self.base / "server.log"
        self.sockets.mkdir()
        if self.as_postgres:
            user = pwd.getpwnam("postgres")
            for path in (self.base, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        self.port = free_port()
        self.user = "postgres"

    # ---------------------------------------------------------------- the server

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.binaries / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}):\n{result.stdout}"
                f"{result.stderr}\n{self.server_log()}"
            )
        return result

    def init(self) -> PgCluster:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        settings = (
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.sockets}'\n"
            "max_connections = 200\n"
            # the tests restart and kill the server, never the machine: no fsync needed
            "fsync = off\n"
            "full_page_writes = off\n"
            "shared_buffers = 32MB\n"
        )
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(settings)
        return self

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t",
                  str(START_TIMEOUT), "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast|immediate|smart` (immediate: as a crash, no checkpoint)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        """`pg_ctl restart -m MODE`: every connection is cut, the server is back when it
        returns."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", mode, "-w",
                  "-t", str(START_TIMEOUT), "restart")  # fmt: skip

    def kill(self) -> None:
        """SIGKILL the postmaster and its processes, as a crash would; `start` recovers."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        for victim in [pid, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        for victim in [pid, *map(int, children)]:
            self._wait_gone(victim)

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _wait_gone(self, pid: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def destroy(self) -> None:
        """Stop it (immediately: nothing to keep) and delete its folder."""
        if self.data.exists():
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # ---------------------------------------------------------------- SQL

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, *args: Any, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Rows of one statement (asyncpg, outside a transaction)."""
        import asyncpg

        async def run() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(self.url(database))
            try:
                return [tuple(row) for row in await conn.fetch(sql, *args)]
            finally:
                await conn.close()

        return asyncio.run(run())

    def create_database(self, prefix: str = "chaos") -> str:
        """A new empty database; its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        if not re.fullmatch(r"[a-z0-9_]+", name):
            raise ValueError(f"bad database name {name!r}")
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def terminate_backends(self, database: str) -> int:
        """`pg_terminate_backend` on every connection to `database` (but this one): what an
        administrator, a failover or a pooler's restart does to a client. How many it cut."""
        rows = self.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        return sum(1 for (cut,) in rows if cut)

    def connections(self, database: str) -> int:
        rows = self.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        return int(rows[0][0])


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL server for the module's tests. Skipped only where there are no
    server binaries and CI's `LEADLANG_TEST_POSTGRES` is not set (CI must run these)."""
    binaries = server_binaries()
    if binaries is None:
        if os.environ.get("LEADLANG_TEST_POSTGRES"):
            pytest.fail("LEADLANG_TEST_POSTGRES is set but no initdb/pg_ctl/postgres is found")
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.fail("running as root needs `runuser` to start PostgreSQL as `postgres`")
    cluster = PgCluster(binaries)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
