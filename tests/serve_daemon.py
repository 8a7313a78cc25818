"""A `leadlang serve` daemon as a real process on a free 127.0.0.1 port, for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import requests

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
                "--config",
                str(self.config_path),
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
                self.proc.wait(20)
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
