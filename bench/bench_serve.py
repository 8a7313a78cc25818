"""Benchmark `leadlang serve` as a real process, with load from separate processes.

    python bench/bench_serve.py [--workload NAME ...] [--seconds 10] [--keep DIR]

Workloads (all by default, in this order; each starts its own daemon on a fresh SQLite file
under a temporary folder and stops it):

- `ingest-batch`: `/v1/batch` of 100 realistic Segment events (flowio's shapes, 10,000
  contacts, each with its own `messageId`) posted by `wrk` (bench/serve_post.lua) for
  `--seconds`: events/s acknowledged, and the ratio to the ceiling measured in the same run,
  bench/serve_ceiling.py (a bare aiohttp handler that decodes the same batches and inserts
  them with `sqlite3` `executemany`, one transaction per request, WAL, synchronous=FULL).
- `ingest-track`: single `/v1/track` events, 32 connections: events/s, p99 latency, and the
  ratio to the same ceiling's `/v1/track`.
- `processing`: the flowio workload (100,000 events, 10,000 contacts, bench_simulate's
  generator, its times shifted to end two minutes ago) through the engine with state persisted.
  (a) drain: the events are written as pending rows into the daemon's own schema (made by the
  daemon, rows made by serve's own `parse_message`), then the daemon is started and its
  SQLite file read (read-only, every 20 ms) until no event is pending: processing time = spawn
  to 0 pending on that file minus spawn to listening on the same schema with no events; (b)
  live: the log posted in batches of 100 by a client process, timed from the first post until
  no event is pending. Both against `simulate` on the same log in the same run (in-process,
  one worker, reading included, as bench_simulate's "one process"; and the whole `leadlang
  simulate` command).
- `timers`: `on ping then wait Ws ; tag "x"`: 100,000 contacts' `ping` at one instant T0
  written as pending rows, the daemon started and left to enrol them all (0 pending), then the
  SQLite file polled read-only for the `tag` effects once T0 + W is due: tags/s (W = 90 s).
- `maildir`: `on signed_up then send welcome` (email): 20,000 contacts identified first, then
  one `/v1/track` per contact at a steady 1,000 events/s from a client process (open loop:
  sends on schedule, however slow the answers): latency from each request's send time to its
  file's rename into `outbox/new` (the file's ctime), p50/p99/max; and, as the same run's
  ceiling, how many files a second the disk creates the driver's way just before the posts.
- `memory`: 1,000,000 contacts in the store: 1,000 flowio contacts processed by serve (their
  events posted, then processed), their rows (contacts, positions, events) copied 1,000 times
  under new ids straight into the SQLite file (wake-ups moved an hour ahead when due sooner,
  so start-up does not run a million timers), then the daemon started: RSS (the daemon and
  its back-end process) when listening, and peak RSS after `--seconds` of batches to random
  contacts among the million.

`--script` runs the ingest workloads on another script (a flow that never matches: ingest
without sends); `--keep DIR` puts the files under DIR (`/dev/shm`: no fsync cost) and keeps
them; `--pythonpath DIR` runs the daemons on a working copy of `leadlang` (a candidate fix).

Load tools come from Debian (`apt-get install -y wrk`, run by the bench when missing); only
127.0.0.1 is used. Every load is bounded in time, every daemon stopped (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
FLOWIO = ROOT / "examples" / "flowio"
sys.path.insert(0, str(BENCH))

from bench_simulate import generate_flowio  # noqa: E402

from leadlang.runtime.store.inbox import waiting_in  # noqa: E402

WRITE_KEY = "k"
ADMIN_TOKEN = "a"
BASIC = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
CONFIG = f'[server]\nwrite_keys = ["{WRITE_KEY}"]\nadmin_token = "{ADMIN_TOKEN}"\n'
WORKLOADS = ("ingest-batch", "ingest-track", "processing", "timers", "maildir", "memory")
ENV = dict(os.environ)  # of the daemons and `leadlang simulate` (--pythonpath)
CONTEXT = {"library": {"name": "analytics-python", "version": "2.3.2"}}

TIMER_SCRIPT = 'on ping then wait {wait}s ; tag "x"\n'
MAIL_SCRIPT = """message welcome:
  channel email
  subject "Welcome {{ first_name | default('there') }}"
  text "Hello {{ first_name | default('there') }}, thanks for signing up."

on signed_up then send welcome
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- processes


class Daemon:
    """`python -m leadlang serve PATHS --db sqlite:///DIR/x.db` on a free 127.0.0.1 port
    (or `--db URL`: bench_scaleout's daemons on PostgreSQL)."""

    def __init__(self, folder: Path, paths: list[str], url: str | None = None) -> None:
        self.folder = folder
        self.paths = paths
        self.db = folder / "x.db"
        self.db_url = url or f"sqlite:///{self.db}"
        self.port = free_port()
        self.config = folder / "leadlang.toml"
        self.config.write_text(CONFIG, encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None
        self.output: list[str] = []
        self.started = 0.0
        self.listening = 0.0  # seconds from spawn to "listening on"
        self._reader: sqlite3.Connection | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 600.0) -> Daemon:
        argv = [sys.executable, "-m", "leadlang", "serve", *self.paths]
        argv += ["--db", self.db_url, "--listen", f"127.0.0.1:{self.port}"]
        argv += ["--config", str(self.config)]
        ready = threading.Event()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, cwd=self.folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV
        )

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                self.output.append(line)
                if "listening on" in line and not ready.is_set():
                    self.listening = time.perf_counter() - self.started
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or not self.listening:
            self.stop()
            raise SystemExit("serve did not start:\n" + "\n".join(self.output[-30:]))
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self.proc is not None:
            terminate(self.proc, signal.SIGTERM, 30)

    def metrics(self) -> dict[str, float]:
        import urllib.request

        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def pending(self) -> bool:
        """Whether events wait to be processed. On SQLite the files are read (read-only): the
        inbox for events not admitted yet, then the store for one pending row, which costs the
        daemon nothing: until session 14 `/metrics` was asked every 20 ms, and its counts took
        most of a core from the daemon during a drain."""
        if not self.db_url.startswith("sqlite"):
            return self.metrics().get("leadlang_pending_events", 1) != 0
        try:
            if waiting_in(self.db_url.split(":///", 1)[1]):
                return True
            found = self.reader().execute("SELECT 1 FROM events WHERE pending = 1 LIMIT 1")
            return found.fetchone() is not None
        except sqlite3.OperationalError:  # (busy, or the schema is not made yet)
            return True

    def reader(self) -> sqlite3.Connection:
        """A read-only connection to the daemon's SQLite file (closed by `stop`)."""
        if self._reader is None:
            self._reader = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        return self._reader

    def wait_processed(self, limit: float) -> float:
        """Seconds from spawn until no event is pending (looked at every 20 ms)."""
        while time.perf_counter() - self.started < limit:
            if not self.pending():
                break
            time.sleep(0.02)
        return time.perf_counter() - self.started

    def processes(self) -> list[int]:
        """The daemon's pid, then its child processes' (the back end)."""
        found, pids = [], [self.pid]
        while pids:
            pid = pids.pop()
            found.append(pid)
            try:
                for task in Path(f"/proc/{pid}/task").iterdir():
                    pids += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
        return found

    def rss(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in KB, of the daemon and its child processes (the back end) summed."""
        rss = hwm = 0
        for pid in self.processes():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            rss += int(fields["VmRSS"].split()[0])
            hwm += int(fields["VmHWM"].split()[0])
        return rss, hwm

    def cpu(self) -> list[tuple[float, float]]:
        """CPU seconds so far, (user, system), of the daemon and of each child (the back end):
        what a run cost, whatever else the machine ran meanwhile. (System time is mostly the
        file system's: creating the Maildir files, whose cost varies with the disk's state.)"""
        ticks = os.sysconf("SC_CLK_TCK")
        seconds = []
        for pid in self.processes():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            seconds.append((int(fields[11]) / ticks, int(fields[12]) / ticks))
        return seconds


class Ceiling:
    """bench/serve_ceiling.py in its own process."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "serve_ceiling.py"), str(folder / "c.db"), str(self.port)],
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            self.stop()
            raise SystemExit("the ceiling server did not start")
        for _ in range(200):  # `ready` comes at start-up, just before it binds
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        terminate(self.proc, signal.SIGINT, 10)


def terminate(proc: subprocess.Popen[Any], sig: int, grace: float) -> None:
    """Stop a process with `sig`, then SIGKILL once `grace` seconds have passed."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: apt-get install -y wrk", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False)
    found = shutil.which("wrk")
    if not found:
        subprocess.run(["apt-get", "update", "-q"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk could not be installed")
    return found


def wrk(url: str, bodies: Path, seconds: float, connections: int) -> dict[str, Any]:
    """wrk -t2 with bench/serve_post.lua: its BENCHJSON summary."""
    env = {**os.environ, "LEADLANG_BENCH_BODIES": str(bodies), "LEADLANG_BENCH_AUTH": BASIC}
    argv = [ensure_wrk(), "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "10s"]
    argv += ["-s", str(BENCH / "serve_post.lua"), url]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCHJSON "))
            return result
    raise SystemExit(f"wrk failed:\n{done.stdout}\n{done.stderr}")


# ---------------------------------------------------------------- the events


def flowio_log(path: Path, n_events: int, n_contacts: int, end: float) -> list[dict[str, Any]]:
    """bench_simulate's flowio workload, its times shifted to end at `end`, as Segment
    messages with a `messageId` placeholder `@@` and a client's `context`."""
    generate_flowio(path, n_events, n_contacts, 7)
    lines = [orjson.loads(raw) for raw in path.read_bytes().splitlines() if raw.strip()]
    last = datetime.fromisoformat(lines[-1]["timestamp"]).timestamp()
    shift = end - last
    for line in lines:
        line["timestamp"] = iso(datetime.fromisoformat(line["timestamp"]).timestamp() + shift)
    with path.open("wb") as out:
        for line in lines:
            out.write(orjson.dumps(line) + b"\n")
    return lines


def segment(line: dict[str, Any]) -> dict[str, Any]:
    return {**line, "messageId": "@@", "context": CONTEXT, "integrations": {}}


def write_batches(path: Path, lines: list[dict[str, Any]], size: int = 100) -> int:
    with path.open("wb") as out:
        for i in range(0, len(lines) - size + 1, size):
            batch = [segment(line) for line in lines[i : i + size]]
            out.write(orjson.dumps({"batch": batch, "sentAt": iso(time.time())}) + b"\n")
    return len(lines) // size


def write_tracks(path: Path, lines: list[dict[str, Any]]) -> int:
    n = 0
    with path.open("wb") as out:
        for line in lines:
            if line["type"] == "track":
                item = segment(line)
                del item["type"]
                out.write(orjson.dumps(item) + b"\n")
                n += 1
    return n


def prefill(db: Path, items: list[dict[str, Any]], received: float) -> None:
    """Pending events in the daemon's own `events` table, each row made by serve's own
    `parse_message` (exactly what `/v1/batch` would have committed)."""
    from leadlang.runtime.server.ingest import parse_message

    rows = []
    for index, item in enumerate(items):
        e = parse_message(item, None, received, index)
        if e is not None:
            rows.append((e.contact, e.t, e.received, e.body))
    con = sqlite3.connect(db)
    with con:
        con.executemany(
            "INSERT INTO events (contact, t, received, body, pending) VALUES (?, ?, ?, ?, 1)", rows
        )
    con.close()


def make_schema(folder: Path, paths: list[str]) -> float:
    """Start the daemon once on an empty file (its migrations make the schema), stop it;
    returns that start-up time (spawn to listening), the baseline for drain timings."""
    d = Daemon(folder, paths).start()
    d.stop()
    return d.listening


# ---------------------------------------------------------------- the client process


async def _post_all(url: str, bodies: list[bytes], concurrency: int) -> None:
    import aiohttp

    headers = {"Authorization": BASIC, "Content-Type": "application/json"}
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                while True:
                    async with session.post(url, data=body) as response:
                        await response.read()
                        if response.status == 200:
                            break
                        if response.status != 429:
                            raise SystemExit(f"{response.status} from {url}")
                    await asyncio.sleep(0.2)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _paced(url: str, bodies: list[bytes], rate: float, sent_out: Path) -> None:
    """Open loop: body i is sent at start + i / rate, whatever the answers; each send time
    (time.time() as the request leaves) is written to `sent_out`."""
    import aiohttp

    headers = {"Authorization": BASIC, "Content-Type": "application/json"}
    sent: list[float] = [0.0] * len(bodies)
    failures = 0
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def one(i: int) -> None:
            nonlocal failures
            sent[i] = time.time()
            async with session.post(url, data=bodies[i]) as response:
                await response.read()
                if response.status != 200:
                    failures += 1

        tasks = []
        start = time.perf_counter()
        i = 0
        while i < len(bodies):
            due = min(len(bodies), int((time.perf_counter() - start) * rate) + 1)
            while i < due:
                tasks.append(asyncio.ensure_future(one(i)))
                i += 1
            await asyncio.sleep(0.0005)
        await asyncio.gather(*tasks)
    sent_out.write_bytes(orjson.dumps({"sent": sent, "failures": failures}))


def client_main(argv: list[str]) -> None:
    """`bench_serve.py --client post|paced URL BODIES ...` (the separate load process)."""
    mode, url, bodies_path = argv[:3]
    bodies = [line for line in Path(bodies_path).read_bytes().splitlines() if line]
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        if mode == "post":
            runner.run(_post_all(url, bodies, int(argv[3])))
        else:
            runner.run(_paced(url, bodies, float(argv[3]), Path(argv[4])))


def client(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--client", *args])


def fill_unique(path: Path, out: Path) -> None:
    """The bodies of `path` with every `@@` replaced by a unique id (for the Python client)."""
    n = 0
    with out.open("wb") as handle:
        for line in path.read_bytes().splitlines():
            parts = line.split(b"@@")
            joined = parts[0]
            for part in parts[1:]:
                n += 1
                joined += b"m%d" % n + part
            handle.write(joined + b"\n")


# ---------------------------------------------------------------- workloads


def rate_row(label: str, events: float, r: dict[str, Any], per_request: int) -> dict[str, Any]:
    seconds = r["duration_us"] / 1e6
    return {
        "label": label,
        "events_s": events / seconds,
        "requests_s": r["requests"] / seconds,
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
        "errors": r["status"] + r["read"] + r["write"] + r["timeout"] + r["connect"],
        "per_request": per_request,
    }


def ingest(folder: Path, args: argparse.Namespace, kind: str) -> dict[str, Any]:
    """ingest-batch / ingest-track: serve, then the ceiling, same bodies, same wrk command."""
    log = folder / "log.jsonl"
    lines = flowio_log(log, 100_000, 10_000, time.time() - 120)
    bodies = folder / f"{kind}.bodies"
    if kind == "batch":
        write_batches(bodies, lines)
        route, connections, per = "/v1/batch", args.batch_connections, 100
    else:
        write_tracks(bodies, lines)
        route, connections, per = "/v1/track", 32, 1
    results = {}
    for target in ("serve", "ceiling"):
        sub = folder / target
        sub.mkdir()
        if target == "serve":
            server: Any = Daemon(sub, [str(args.script)]).start()
        else:
            server = Ceiling(sub)
        try:
            r = wrk(server.url + route, bodies, args.seconds, connections)
            extra = {}
            if target == "serve":
                m = server.metrics()
                extra = {
                    "accepted": m.get("leadlang_events_accepted_total", 0.0),
                    "commits": m.get("leadlang_ingest_commits_total", 0.0),
                    "pending": m.get("leadlang_pending_events", 0.0),
                }
        finally:
            server.stop()
        results[target] = {
            **rate_row(target, r["requests"] * per, r, per),
            **extra,
            "answered": r["requests"],
        }
    s, c = results["serve"], results["ceiling"]
    if s["answered"] < 10 * connections:
        print(
            f"  WARNING: serve answered {s['answered']} requests on {connections} connections: "
            "requests left unanswered (see the report)"
        )
    print(
        f"\n{kind}: {route}, {per} event(s) a request, wrk -t2 -c{connections} "
        f"-d{int(args.seconds)}s"
    )
    for row in (s, c):
        print(
            f"  {row['label']:<8} {row['events_s']:>10,.0f} events/s  "
            f"{row['requests_s']:>8,.0f} req/s  p50 {row['p50_ms']:.1f} ms  "
            f"p99 {row['p99_ms']:.1f} ms  max {row['max_ms']:.1f} ms  errors {row['errors']}"
        )
    print(f"  ratio serve/ceiling {s['events_s'] / c['events_s']:.2f}")
    if "commits" in s:
        per_commit = s["accepted"] / max(s["commits"], 1)
        print(
            f"  serve: {s['accepted']:,.0f} events committed in {s['commits']:,.0f} group "
            f"commits ({per_commit:,.0f} per commit); {s['pending']:,.0f} still pending "
            "processing at the end"
        )
    return {"serve": s, "ceiling": c, "ratio": s["events_s"] / c["events_s"]}


def simulate_times(script: Path, log: Path, until: str) -> tuple[float, float, int]:
    """(in-process one-worker simulate seconds, the `leadlang simulate` command's, effects)."""
    from bench_simulate import load_program, run

    from leadlang.interpreter.compile import compile_program

    ir = compile_program(load_program([script]))
    best = min(run(log, ir)[0] for _ in range(2))
    argv = [sys.executable, "-m", "leadlang", "simulate", str(script), "--events", str(log)]
    argv += ["--until", until]
    started = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, check=True, env=ENV)
    command = time.perf_counter() - started
    return best, command, len(out.stdout.splitlines())


def processing(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    n = args.events
    log = folder / "log.jsonl"
    lines = flowio_log(log, n, n // 10, time.time() - 120)
    # (a) drain at start-up
    drain = folder / "drain"
    drain.mkdir()
    base = make_schema(drain, [str(FLOWIO)])
    base = min(base, make_schema(drain, [str(FLOWIO)]))
    prefill(drain / "x.db", lines, time.time())
    d = Daemon(drain, [str(FLOWIO)]).start()
    try:
        until = iso(time.time())
        done = d.wait_processed(args.max_wait)
        m = d.metrics()
        drain_s = done - base
        rss = d.rss()
        cpu = d.cpu()
    finally:
        d.stop()
    con = sqlite3.connect(drain / "x.db")
    effects = con.execute("SELECT count(*) FROM effects").fetchone()[0]
    con.close()
    sim, command, sim_effects = simulate_times(FLOWIO, log, until)
    print(f"\nprocessing: flowio, {n:,} events from {n // 10:,} contacts, state in SQLite")
    print(
        f"  (a) drain at start-up   {n / drain_s:>10,.0f} events/s  ({drain_s:.2f} s: spawn to 0 "
        f"pending {done:.2f} s on the filled file minus spawn to listening {base:.2f} s on an "
        "empty one); "
        f"{effects:,} effects; pending left {m.get('leadlang_pending_events', -1):.0f}; "
        f"RSS {rss[0] / 1024:.0f} MB (peak {rss[1] / 1024:.0f} MB)"
    )
    user = sum(u for u, _ in cpu)
    print(
        f"      CPU, user + system: daemon {cpu[0][0]:.2f} + {cpu[0][1]:.2f} s, back end "
        f"{sum(u for u, _ in cpu[1:]):.2f} + {sum(s for _, s in cpu[1:]):.2f} s "
        f"({user / n * 1e6:.0f} us of user time an event in all, start-up included)"
    )
    print(f"  simulate, in-process    {n / sim:>10,.0f} events/s  ({sim:.2f} s, one worker)")
    print(
        f"  `leadlang simulate`     {n / command:>10,.0f} events/s  ({command:.2f} s, whole "
        f"command); {sim_effects:,} effects with --until {until}"
    )
    print(f"  ratios: drain/simulate {sim / drain_s:.3f}, drain/command {command / drain_s:.3f}")
    sys.stdout.flush()
    # (b) live: posted while the processor runs, until nothing is pending
    live = folder / "live"
    live.mkdir()
    batches = folder / "batches"
    write_batches(batches, lines)
    unique = folder / "batches.unique"
    fill_unique(batches, unique)
    d = Daemon(live, [str(FLOWIO)]).start()
    try:
        started = time.perf_counter()
        poster = client("post", d.url + "/v1/batch", str(unique), "4")
        posted = 0.0
        while True:
            if posted == 0.0 and poster.poll() is not None:
                posted = time.perf_counter() - started
            if posted and not d.pending():
                break
            if time.perf_counter() - started > args.max_wait:
                accepted = d.metrics().get("leadlang_events_accepted_total", 0)
                print(f"  live: gave up waiting ({accepted:,.0f} accepted)", flush=True)
                break
            time.sleep(0.05)
        live_s = time.perf_counter() - started
        pending_left = d.metrics().get("leadlang_pending_events", -1)
        if poster.poll() is None:
            poster.kill()
            print(f"  live: posting unfinished after {live_s:.0f} s", flush=True)
        poster.wait(30)
    finally:
        d.stop()
    print(
        f"  (b) posted live         {n / live_s:>10,.0f} events/s  ({live_s:.2f} s from the first "
        f"post to 0 pending; posting took {posted:.2f} s; {pending_left:,.0f} pending left)"
    )
    print(f"  ratio live/simulate {sim / live_s:.3f}")
    return {"drain": n / drain_s, "live": n / live_s, "simulate": n / sim}


def timers(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    n = args.timers
    script = folder / "timers.lead"
    script.write_text(TIMER_SCRIPT.format(wait=args.timer_wait), encoding="utf-8")
    make_schema(folder, [str(script)])
    t0 = time.time()
    items = [
        {"type": "track", "userId": f"c{i}", "event": "ping", "timestamp": iso(t0)}
        for i in range(n)
    ]
    prefill(folder / "x.db", items, t0)
    due = datetime.fromisoformat(iso(t0)).timestamp() + args.timer_wait
    d = Daemon(folder, [str(script)]).start()
    try:
        enrolled = d.wait_processed(args.max_wait)
        listening = time.time()
        con = d.reader()
        first = last = 0.0
        seen = 0
        while time.time() < due + args.max_wait:
            seen = con.execute("SELECT count(*) FROM effects WHERE action = 'tag'").fetchone()[0]
            now = time.time()
            if seen and not first and now >= due:
                first = now
            if seen >= n:
                last = now
                break
            if not seen and now > due + 15:  # none within 15 s of due: they do not fire
                break
            time.sleep(0.05)
        rss = d.rss()
    finally:
        d.stop()
    fire = (last or time.time()) - due
    print(f"\ntimers: {n:,} waits due at one instant (`wait {args.timer_wait}s`)")
    print(
        f"  all enrolled {enrolled:.1f} s after spawn ({due - listening:.1f} s before they "
        "were due)"
    )
    print(
        f"  first tag {f'{first - due:+.2f} s after due' if first else 'never'}, {seen:,} of "
        f"{n:,} by {fire:.2f} s: "
        f"{seen / fire:,.0f} timers/s; RSS {rss[0] / 1024:.0f} MB (peak {rss[1] / 1024:.0f} MB)"
    )
    return {"rate": seen / fire, "first": first - due}


def pct(values: list[float], p: float) -> float:
    """The p-quantile of sorted seconds, in milliseconds."""
    return values[min(len(values) - 1, int(p * len(values)))] * 1000


def mail_stages(db: Path, sent: list[float]) -> dict[str, list[float]]:
    """Where each email's time went, from the store's own clocks: the request's send time to
    its event's commit (`events.received`), to its send's commit (`outbox.created`), to its
    delivery (`outbox.delivered`). Each list sorted."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    received = dict(
        con.execute("SELECT contact, received FROM events WHERE body LIKE '%signed_up%'")
    )
    rows = con.execute("SELECT contact, created, delivered FROM outbox").fetchall()
    con.close()
    stages: dict[str, list[float]] = {
        "sent -> event committed": [],
        "event committed -> send committed": [],
        "send committed -> delivered": [],
    }
    for contact, created, delivered in rows:
        t_sent = sent[int(contact[1:])]
        stages["sent -> event committed"].append(received[contact] - t_sent)
        stages["event committed -> send committed"].append(created - received[contact])
        stages["send committed -> delivered"].append((delivered or created) - created)
    for values in stages.values():
        values.sort()
    return stages


def file_pace(folder: Path, files: int = 5000) -> float:
    """Files a second this disk creates as the Maildir driver does (a 1.5 KB file written to
    `tmp/`, renamed into `new/`, one `syncfs` and an fsync of `new/` per 256), in a new
    directory beside the outbox: the same run's ceiling for delivery. On this VM's ext4 it
    moves by 10x with the disk's recent history (creating files where many were deleted in
    the last minutes costs up to 500 us of kernel time each: docs/performance.md)."""
    import ctypes

    syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    tmp, new = folder / "tmp", folder / "new"
    tmp.mkdir(parents=True)
    new.mkdir()
    data = b"x" * 1500
    started = time.perf_counter()
    for first in range(0, files, 256):
        names = [f"f{i}" for i in range(first, min(files, first + 256))]
        for name in names:
            with open(tmp / name, "wb") as out:
                out.write(data)
        with open(tmp / names[0], "rb") as any_file:
            syncfs(any_file.fileno())
        for name in names:
            os.replace(tmp / name, new / name)
        directory = os.open(new, os.O_RDONLY)
        os.fsync(directory)
        os.close(directory)
    return files / (time.perf_counter() - started)


def maildir(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    n = int(args.mail_rate * args.mail_seconds)
    script = folder / "mail.lead"
    script.write_text(MAIL_SCRIPT, encoding="utf-8")
    d = Daemon(folder, [str(script)]).start()
    outbox = folder / "outbox" / "new"
    try:
        identify = folder / "identify.bodies"
        now = iso(time.time() - 60)
        with identify.open("wb") as out:
            for i in range(0, n, 100):
                batch = [
                    {
                        "type": "identify",
                        "userId": f"u{j}",
                        "traits": {"email": f"u{j}@example.com", "first_name": f"U{j}"},
                        "timestamp": now,
                    }
                    for j in range(i, min(n, i + 100))
                ]
                out.write(orjson.dumps({"batch": batch}) + b"\n")
        client("post", d.url + "/v1/batch", str(identify), "4").wait(300)
        while d.pending():
            time.sleep(0.1)
        pace = file_pace(folder / "pace")
        tracks = folder / "tracks.bodies"
        with tracks.open("wb") as out:
            for i in range(n):
                out.write(
                    orjson.dumps(
                        {"userId": f"u{i}", "event": "Signed Up", "messageId": f"s{i}"}
                        | {"context": CONTEXT}
                    )
                    + b"\n"
                )
        sent_path = folder / "sent.json"
        poster = client(
            "paced", d.url + "/v1/track", str(tracks), str(args.mail_rate), str(sent_path)
        )
        # (a file's ctime is when it was renamed into new/: no listing every few ms, which
        # took most of a core from the daemon once new/ held thousands of files)
        deadline = time.time() + args.mail_seconds + args.max_wait
        while time.time() < deadline:
            if poster.poll() is not None and len(os.listdir(outbox)) >= n:
                break
            time.sleep(0.25)
        poster.wait(60)
        appeared = {entry.name: entry.stat().st_ctime for entry in os.scandir(outbox)}
        rss = d.rss()
    finally:
        d.stop()
    sent_doc = orjson.loads(sent_path.read_bytes())
    sent = sent_doc["sent"]
    latencies = []
    for name, seen_at in appeared.items():
        head = (outbox / name).read_bytes()[:4096].decode(errors="replace")
        contact = next(
            line.split(":", 1)[1].strip()
            for line in head.splitlines()
            if line.startswith("X-Leadlang-Contact:")
        )
        t_sent = sent[int(contact[1:])]
        latencies.append(seen_at - t_sent)
    stages = mail_stages(d.db, sent)
    latencies.sort()
    achieved = n / (max(sent) - min(sent))

    print(
        f"\nmaildir: one /v1/track per contact at {args.mail_rate:,.0f}/s for "
        f"{args.mail_seconds:.0f} s (sent at {achieved:,.0f}/s; {sent_doc['failures']} "
        f"non-200), {len(latencies):,} of {n:,} emails in outbox/new"
    )
    print(
        f"  send to file in new/: p50 {pct(latencies, 0.5):.0f} ms  p99 "
        f"{pct(latencies, 0.99):.0f} ms  max {latencies[-1] * 1000:.0f} ms; RSS "
        f"{rss[0] / 1024:.0f} MB"
    )
    print(f"  the disk's own pace just before (same run): {pace:,.0f} files/s as the driver writes")
    for label, values in stages.items():
        print(f"  {label:<34} p50 {pct(values, 0.5):6.0f} ms  p99 {pct(values, 0.99):6.0f} ms")
    return {"p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99), "files/s": pace}


def memory(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    copies = args.contacts // 1000
    sample = folder / "sample"
    sample.mkdir()
    log = folder / "log.jsonl"
    lines = flowio_log(log, 10_000, 1_000, time.time() - 120)
    batches = folder / "batches"
    write_batches(batches, lines)
    unique = folder / "batches.unique"
    fill_unique(batches, unique)
    d = Daemon(sample, [str(FLOWIO)]).start()
    try:
        client("post", d.url + "/v1/batch", str(unique), "4").wait(300)
        while d.pending():
            time.sleep(0.1)
    finally:
        d.stop()
    started = time.perf_counter()
    con = sqlite3.connect(sample / "x.db")
    contacts = con.execute("SELECT id, state, wake, clock, rank_t, rank_id, updated FROM contacts")
    contacts = contacts.fetchall()
    positions = con.execute("SELECT contact, flow, version, step, waiting_until FROM positions")
    positions = positions.fetchall()
    events = con.execute("SELECT contact, t, received, body FROM events").fetchall()
    soon = time.time() + 3600
    with con:
        con.execute("DELETE FROM contacts")
        con.execute("DELETE FROM positions")
        con.execute("DELETE FROM events")
        con.execute("DELETE FROM effects")
        con.execute("DELETE FROM outbox")
    for k in range(copies):
        prefix = f"m{k}-"

        def rename(text: str, old: str, new: str) -> str:
            return text.replace(f'"id":"{old}"', f'"id":"{new}"', 1)

        with con:
            con.executemany(
                "INSERT INTO contacts VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        prefix + c[0],
                        rename(c[1], c[0], prefix + c[0]),
                        None if c[2] is None else max(c[2], soon),
                        *c[3:],
                    )
                    for c in contacts
                ),
            )
            con.executemany(
                "INSERT INTO positions VALUES (?, ?, ?, ?, ?)",
                ((prefix + p[0], *p[1:]) for p in positions),
            )
            con.executemany(
                "INSERT INTO events (contact, t, received, body, pending) VALUES (?, ?, ?, ?, 0)",
                ((prefix + e[0], *e[1:]) for e in events),
            )
    total = con.execute("SELECT count(*) FROM contacts").fetchone()[0]
    con.close()
    fill_s = time.perf_counter() - started
    size = (sample / "x.db").stat().st_size / 1e6
    d = Daemon(sample, [str(FLOWIO)]).start()
    try:
        time.sleep(2)
        idle = d.rss()
        # then batches to random contacts among them, as long as --seconds
        rng = random.Random(3)
        body = folder / "random.bodies"
        with body.open("wb") as out:
            for _ in range(500):
                batch = []
                for _ in range(100):
                    line = dict(rng.choice(lines))
                    line["userId"] = f"m{rng.randrange(copies)}-user{rng.randrange(1000)}"
                    batch.append(segment(line))
                out.write(orjson.dumps({"batch": batch}) + b"\n")
        r = wrk(d.url + "/v1/batch", body, args.seconds, 4)
        deadline = time.time() + args.max_wait
        while d.pending() and time.time() < deadline:
            time.sleep(0.2)
        loaded = d.rss()
    finally:
        d.stop()
    print(
        f"\nmemory: {total:,} contacts in the store ({size:,.0f} MB file, filled in {fill_s:.0f} s;"
        f" start-up {d.listening:.1f} s)"
    )
    print(f"  RSS listening, idle: {idle[0] / 1024:.0f} MB (the daemon and its back end)")
    print(
        f"  after {r['requests'] * 100:,} events to random contacts ({int(args.seconds)} s of "
        f"wrk) and their processing: RSS {loaded[0] / 1024:.0f} MB, peak {loaded[1] / 1024:.0f} MB"
    )
    return {"idle": idle[0] / 1024, "peak": loaded[1] / 1024}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", action="append", choices=WORKLOADS)
    parser.add_argument("--seconds", type=float, default=10.0, help="each wrk run")
    parser.add_argument("--batch-connections", type=int, default=16)
    parser.add_argument("--events", type=int, default=100_000, help="processing's log")
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--timer-wait", type=int, default=90, help="seconds")
    parser.add_argument("--mail-rate", type=float, default=1000.0)
    parser.add_argument("--mail-seconds", type=float, default=20.0)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--max-wait", type=float, default=120.0, help="for any queue to drain")
    parser.add_argument(
        "--script", type=Path, default=FLOWIO, help="of the ingest workloads (default flowio)"
    )
    parser.add_argument(
        "--keep", type=Path, help="keep the files in a folder made here (/dev/shm: no fsync cost)"
    )
    parser.add_argument(
        "--pythonpath",
        help="PYTHONPATH of the daemons: measure a working copy of `leadlang` (a candidate fix)",
    )
    args = parser.parse_args()
    if args.pythonpath:
        ENV["PYTHONPATH"] = args.pythonpath
        print(f"daemons run `leadlang` from {args.pythonpath}")
    chosen = args.workload or list(WORKLOADS)
    print(
        f"bench_serve: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}"
    )
    root = Path(tempfile.mkdtemp(prefix="bench_serve_", dir=args.keep))
    try:
        for name in chosen:
            folder = root / name
            folder.mkdir()
            if name == "ingest-batch":
                ingest(folder, args, "batch")
            elif name == "ingest-track":
                ingest(folder, args, "track")
            elif name == "processing":
                processing(folder, args)
            elif name == "timers":
                timers(folder, args)
            elif name == "maildir":
                maildir(folder, args)
            else:
                memory(folder, args)
            sys.stdout.flush()
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
