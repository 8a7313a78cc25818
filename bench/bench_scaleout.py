"""Benchmark several `leadlang serve` daemons on one PostgreSQL database, next to SQLite.

    python bench/bench_scaleout.py [--workload NAME ...] [--pg URL] [--rounds 2]

`--pg` is a PostgreSQL server URL without a database (default
`postgresql://postgres@127.0.0.1:5432`); each run makes its own database `bench_claims_N` there
and drops it after. Workloads (all by default):

- `processing`: the flowio log (100,000 events, 10,000 contacts) as pending rows (each made
  by serve's own `parse_message`), committed in one transaction to a fresh store on which
  1 or 2 daemons are already listening, idle: events/s from that commit until none is pending
  (polled every 50 ms), then until every send is delivered too (the whole workload: the
  Maildir files written), and the cores each kind of process used until the events were
  processed (the daemons'
  HTTP processes, their back ends, PostgreSQL's server processes: where the time went). One run
  each of SQLite (1 daemon), PostgreSQL with 1 daemon and with 2, `--rounds` times in turn,
  and the ratio 2 daemons / 1 daemon of each round.
- `processors`: the processing loop alone, 1 or 2 processes each running
  `Processor.run_once` in a loop on its own store (no HTTP, no delivery) on one database
  filled with the flowio log: events/s (the slower process's time) and the cores used by the
  processes and PostgreSQL, `--rounds` times.
- `timers`: `on ping then wait Ws ; tag "x"`, 100,000 contacts' `ping` at one instant T0
  written as pending rows, 1 or 2 daemons started and left to enrol them all; then timers
  fired/s from the due instant T0 + W until no contact's wake is due (`min(contacts.wake)`,
  polled every 50 ms).
- `ingest`: `/v1/batch` of 100 flowio events by `wrk -t2 -c16` (bench_serve's bodies and
  command) to one daemon on SQLite, then one on PostgreSQL: events/s acknowledged, p50/p99.
- `statements` (only when named): the `processing` drain with 1 and 2 daemons on a private
  PostgreSQL server of its own (initdb, as the chaos tests' `tests/pg_cluster.py`) that loads
  `pg_stat_statements`: what the database did per event processed, by statement (calls, rows
  and execution time per event). Counts do not depend on the machine's load, unlike seconds.
  With `--statements-of timers`, the same for the `timers` workload's firing (counted from
  its due instant), per timer.
- `quota` (only when named): the `processing` drain on PostgreSQL with 1 and 2 daemons, each
  daemon's processes held to `--daemon-cores` of CPU (0.5 by default) by a cgroup v1 CPU
  quota (root): the two daemons then do not compete with each other and PostgreSQL for the
  machine's two cores, as daemons on machines of their own would not.
- `wakeup`: an event committed by another process (`store.accept`, as daemon A's ingest does)
  and processed by an idle processor (daemon B's, on its own store): the latency from the
  commit to the event processed, 40 events 0-300 ms apart, for B polling every 1 s, every
  0.1 s, and woken by LISTEN/NOTIFY (a NOTIFY after each commit).

Every daemon is stopped (SIGTERM, then SIGKILL) and every database dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_serve import (  # noqa: E402
    FLOWIO,
    TIMER_SCRIPT,
    Daemon,
    flowio_log,
    iso,
    rate_row,
    write_batches,
    wrk,
)

WORKLOADS = ("processing", "processors", "timers", "ingest", "wakeup")
EXTRA = ("statements", "quota")  # (only when asked for)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- PostgreSQL


class Pg:
    """A connection of the bench's own to one database, for its polls (its own event loop)."""

    def __init__(self, url: str) -> None:
        import asyncpg

        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(url))

    def value(self, sql: str, *args: Any) -> Any:
        return self.loop.run_until_complete(self.conn.fetchval(sql, *args))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


@contextmanager
def database(server: str, name: str) -> Iterator[str]:
    """A fresh database `name` on `server` with serve's schema (its migrations), dropped after."""
    admin = Pg(f"{server}/postgres")
    try:
        admin.run(admin.conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.run(admin.conn.execute(f'CREATE DATABASE "{name}"'))
        url = f"{server}/{name}"
        asyncio.run(_schema(url))
        yield url
    finally:
        admin.run(admin.conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.close()


async def _schema(url: str) -> None:
    from leadlang.runtime.store.sql import open_store

    store = await open_store(url)
    await store.close()


def prefill_pg(url: str, rows: list[tuple[Any, ...]]) -> None:
    """`pending_rows` into `events` (`_copy_events`)."""
    pg = Pg(url)
    try:
        pg.run(_copy_events(pg.conn, rows))
    finally:
        pg.close()


async def _copy_events(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    """COPY the rows into `events` and ANALYZE it, in one transaction: the planner knows the
    table as autovacuum's ANALYZE would soon after such a load (on a table that had been
    empty, its empty-table statistics would choose a sort of every pending event over the
    queue's index, for the first minute)."""
    async with conn.transaction():
        await conn.copy_records_to_table(
            "events", records=rows, columns=["contact", "t", "received", "body", "pending"]
        )
        await conn.execute("ANALYZE events")


# ---------------------------------------------------------------- CPU accounting


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    out = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def postgres_pids(database: str | None = None) -> list[int]:
    """PostgreSQL's processes on this machine; with `database`, only the connections to it
    (other sessions' work on the same server, and the server's own background processes,
    are left out)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() != "postgres":
                    continue
                words = (
                    (entry / "cmdline")
                    .read_bytes()
                    .replace(b"\0", b" ")
                    .decode(errors="replace")
                    .split()
                )
            except OSError:
                continue
            # ("postgres: [CLUSTER:] USER DATABASE HOST STATE")
            if database is None or database in words[:5]:
                pids.append(int(entry.name))
    return pids


class Cpu:
    """CPU seconds of the daemons' HTTP processes, their back ends and PostgreSQL's
    connections to the database `postgres` (each process's time counted from its first
    sight: connections come and go)."""

    def __init__(self, daemons: list[Daemon], postgres: str | None) -> None:
        self.daemons, self.postgres = daemons, postgres
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}

    def sample(self) -> None:
        for d in self.daemons:
            self._see("http", d.pid)
            for child in children(d.pid):
                self._see("back end", child)
        if self.postgres:
            for pid in postgres_pids(self.postgres):
                self._see("postgres", pid)

    def _see(self, kind: str, pid: int) -> None:
        t = cpu_seconds(pid)
        self.first.setdefault((kind, pid), t)
        self.last[(kind, pid)] = t

    def spent(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, t in self.last.items():
            out[key[0]] = out.get(key[0], 0.0) + t - self.first[key]
        return out


def cores(spent: dict[str, float], seconds: float) -> str:
    return ", ".join(f"{kind} {t / seconds:.2f}" for kind, t in sorted(spent.items()))


# ---------------------------------------------------------------- workloads


def start_daemons(folder: Path, paths: list[str], url: str | None, n: int) -> list[Daemon]:
    daemons: list[Daemon] = []
    try:
        for i in range(n):
            sub = folder / f"d{i}"
            sub.mkdir()
            daemons.append(Daemon(sub, paths, url).start())
    except BaseException:
        for d in daemons:
            d.stop()
        raise
    return daemons


PENDING = "SELECT EXISTS (SELECT 1 FROM events WHERE pending = 1)"
UNSENT = "SELECT EXISTS (SELECT 1 FROM outbox WHERE status = 'pending')"


def drain(
    folder: Path,
    url: str | None,
    n_daemons: int,
    rows: list[tuple[Any, ...]],
    limit: float,
    confine: Any = None,
) -> dict[str, Any]:
    """Start the daemons on an empty store, commit `rows` (pending events) in one
    transaction, and time from that commit until none is pending (polled every 50 ms with a
    query that reads an index's first live entry: a count would cost the database more than
    the daemons' own work). `confine(daemons)`, if given, is called once they are idle."""
    paths = [str(FLOWIO)]
    if url is None:
        (folder / "d0").mkdir()
        daemons = [Daemon(folder / "d0", paths).start()]
        path = folder / "d0" / "x.db"
        poll: Any = sqlite3.connect(path)
        pending = lambda: poll.execute(PENDING).fetchone()[0]  # noqa: E731
        unsent = lambda: poll.execute(UNSENT).fetchone()[0]  # noqa: E731
    else:
        daemons = start_daemons(folder, paths, url, n_daemons)
        pg = Pg(url)
        pending = lambda: pg.value(PENDING)  # noqa: E731
        unsent = lambda: pg.value(UNSENT)  # noqa: E731
    cpu = Cpu(daemons, url and url.rsplit("/", 1)[1])
    try:
        time.sleep(2.0)  # (the daemons idle: their start-up work done)
        if confine is not None:
            confine(daemons)
        cpu.sample()
        if url is None:
            with poll:
                poll.executemany(
                    "INSERT INTO events (contact, t, received, body, pending) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
        else:
            pg.run(_copy_events(pg.conn, rows))
        started = time.perf_counter()
        done = delivered = 0.0
        spent: dict[str, float] = {}
        while time.perf_counter() - started < limit:
            cpu.sample()
            if not done and not pending():
                done = time.perf_counter()
                spent = cpu.spent()
            if done and not unsent():  # (and every send delivered: the whole workload)
                delivered = time.perf_counter()
                break
            time.sleep(0.05)
    finally:
        cpu.sample()
        for d in daemons:
            d.stop()
        if url is None:
            poll.close()
        else:
            pg.close()
    seconds = (done or time.perf_counter()) - started
    return {
        "rate": len(rows) / seconds if done else 0.0,
        "seconds": seconds,
        "cpu": spent if done else cpu.spent(),
        # until every send was delivered too (0: not within `limit`)
        "whole": (delivered - started) if delivered else 0.0,
    }


def pending_rows(items: list[dict[str, Any]], received: float) -> list[tuple[Any, ...]]:
    """Pending `events` rows, each made by serve's `parse_message` (what `/v1/batch` commits)."""
    from leadlang.runtime.server.ingest import parse_message

    rows = []
    for index, item in enumerate(items):
        e = parse_message(item, None, received, index)
        if e is not None:
            rows.append((e.contact, e.t, e.received, e.body, 1))
    return rows


def processing(root: Path, args: argparse.Namespace) -> None:
    n = args.events
    rows = flowio_rows(root, n)
    print(
        f"\nprocessing: flowio, {n:,} events from {n // 10:,} contacts, committed at once to "
        "idle daemons"
    )
    ratios = []
    for r in range(args.rounds):
        results: dict[str, dict[str, Any]] = {}
        for label, n_daemons in (
            ("sqlite, 1 daemon", 1),
            ("pg, 1 daemon", 1),
            ("pg, 2 daemons", 2),
        ):
            folder = root / f"p{r}-{label.replace(' ', '').replace(',', '-')}"
            folder.mkdir()
            if label.startswith("sqlite"):
                out = drain(folder, None, 1, rows, args.max_wait)
            else:
                with database(args.pg, f"bench_claims_{n_daemons}") as url:
                    out = drain(folder, url, n_daemons, rows, args.max_wait)
            results[label] = out
            print(
                f"  round {r + 1}  {label:<17} {out['rate']:>8,.0f} events/s  "
                f"({out['seconds']:.2f} s; every send delivered at {out['whole']:.2f} s); "
                f"cores: {cores(out['cpu'], out['seconds'])}",
                flush=True,
            )
        one, two = results["pg, 1 daemon"]["rate"], results["pg, 2 daemons"]["rate"]
        ratios.append(two / max(one, 1e-9))
        whole = results["pg, 1 daemon"]["whole"] / max(results["pg, 2 daemons"]["whole"], 1e-9)
        print(
            f"  round {r + 1}  2 daemons / 1 daemon on PostgreSQL: {ratios[-1]:.2f}x "
            f"(the whole workload, processed and delivered: {whole:.2f}x); "
            f"PostgreSQL / SQLite with 1 daemon: "
            f"{one / max(results['sqlite, 1 daemon']['rate'], 1e-9):.2f}",
            flush=True,
        )
    print(f"  ratios 2/1: {', '.join(f'{x:.2f}' for x in ratios)}")


CGROUP_CPU = Path("/sys/fs/cgroup/cpu")  # (cgroup v1's cpu controller, as on this VM)


class CpuQuotas:
    """One cgroup per daemon under cgroup v1's cpu controller, each allowed `cores` of CPU
    (CFS quota), holding the daemon's processes; removed, and the processes put back, at
    the end."""

    def __init__(self, cores: float) -> None:
        self.cores = cores
        self.groups: list[Path] = []

    @staticmethod
    def available() -> bool:
        return (CGROUP_CPU / "cpu.cfs_quota_us").exists() and os.access(CGROUP_CPU, os.W_OK)

    def __call__(self, daemons: list[Daemon]) -> None:
        for i, d in enumerate(daemons):
            group = CGROUP_CPU / f"leadlang_bench_{os.getpid()}_{len(self.groups)}_{i}"
            group.mkdir()
            self.groups.append(group)
            period = 100_000
            (group / "cpu.cfs_period_us").write_text(str(period))
            (group / "cpu.cfs_quota_us").write_text(str(int(self.cores * period)))
            for pid in [d.pid, *descendants(d.pid)]:
                (group / "cgroup.procs").write_text(str(pid))

    def release(self) -> None:
        for group in self.groups:
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):  # (gone)
                    (CGROUP_CPU / "cgroup.procs").write_text(pid)
            group.rmdir()
        self.groups.clear()


def descendants(pid: int) -> list[int]:
    out = children(pid)
    for child in list(out):
        out += descendants(child)
    return out


def quota(root: Path, args: argparse.Namespace) -> None:
    """The flowio drain on PostgreSQL with 1 and 2 daemons, each daemon's processes held to
    `--daemon-cores` of CPU: two daemons no longer compete with each other and PostgreSQL
    for this machine's two cores, as daemons on machines of their own would not."""
    if not CpuQuotas.available():
        print("\nquota: no writable cgroup v1 cpu controller here (run as root); skipped")
        return
    n = args.events
    rows = flowio_rows(root, n)
    print(
        f"\nquota: flowio, {n:,} events, each daemon held to {args.daemon_cores} cores "
        "(cgroup cpu quota), PostgreSQL"
    )
    ratios, wholes = [], []
    for r in range(args.rounds):
        results: dict[int, dict[str, Any]] = {}
        for n_daemons in (1, 2):
            folder = root / f"q{r}-{n_daemons}"
            folder.mkdir()
            quotas = CpuQuotas(args.daemon_cores)
            try:
                with database(args.pg, f"bench_claims_q{n_daemons}") as url:
                    out = drain(folder, url, n_daemons, rows, args.max_wait, confine=quotas)
            finally:
                quotas.release()
            results[n_daemons] = out
            print(
                f"  round {r + 1}  {n_daemons} daemon(s) {out['rate']:>8,.0f} events/s  "
                f"({out['seconds']:.2f} s; every send delivered at {out['whole']:.2f} s); "
                f"cores: {cores(out['cpu'], out['seconds'])}",
                flush=True,
            )
        ratios.append(results[2]["rate"] / max(results[1]["rate"], 1e-9))
        wholes.append(results[1]["whole"] / max(results[2]["whole"], 1e-9))
        print(
            f"  round {r + 1}  2 daemons / 1 daemon: {ratios[-1]:.2f}x events processed/s, "
            f"{wholes[-1]:.2f}x the whole workload",
            flush=True,
        )
    print(
        f"  ratios 2/1: events {', '.join(f'{x:.2f}' for x in ratios)}; "
        f"whole {', '.join(f'{x:.2f}' for x in wholes)}"
    )


def _processor_main(url: str, go: Any, out: Any) -> None:
    """One processor process (`processors`): rounds until nothing is pending or due."""
    from leadlang.interpreter.check import check_paths
    from leadlang.interpreter.compile import compile_program
    from leadlang.runtime.engine import Engine
    from leadlang.runtime.processor import Processor
    from leadlang.runtime.store.sql import open_store

    checked = check_paths([str(FLOWIO)])
    assert checked.program is not None
    ir = compile_program(checked.program)
    ir["event_types"] = {}

    async def main() -> None:
        store = await open_store(url)
        p = Processor(store, Engine(ir), ir, time.time)
        await store.counts()  # (its connection open)
        out.put(None)  # ready
        while not go.is_set():
            await asyncio.sleep(0.001)
        started, contacts = time.perf_counter(), 0
        while True:
            n = await p.run_once()
            contacts += n
            if not n:
                if not (await store.counts())["pending_events"]:
                    break
                await asyncio.sleep(0.02)
        out.put((time.perf_counter() - started, contacts))
        await store.close()

    asyncio.run(main())


def processors(root: Path, args: argparse.Namespace) -> None:
    """The processing loop alone: 1 or 2 processes, each `Processor.run_once` in a loop on
    its own store (no HTTP, no delivery), on one database filled with the flowio log."""
    import multiprocessing

    n = args.events
    rows = flowio_rows(root, n)
    print(f"\nprocessors: the processing loop alone, flowio, {n:,} events, PostgreSQL")
    ctx = multiprocessing.get_context("spawn")
    for r in range(args.rounds):
        rates = {}
        for k in (1, 2):
            with database(args.pg, f"bench_claims_p{k}") as url:
                prefill_pg(url, rows)
                pg = Pg(url)
                wal_from = pg.value("SELECT pg_current_wal_lsn()")
                out, go = ctx.Queue(), ctx.Event()
                procs = [ctx.Process(target=_processor_main, args=(url, go, out)) for _ in range(k)]
                for proc in procs:
                    proc.start()
                for _ in procs:
                    out.get(timeout=120)  # each one ready, its connection open
                cpu: dict[tuple[str, int], float] = {}
                first = {("processor", p.pid or 0): cpu_seconds(p.pid or 0) for p in procs}
                name = url.rsplit("/", 1)[1]
                first |= {("postgres", pid): cpu_seconds(pid) for pid in postgres_pids(name)}
                go.set()
                results = [out.get(timeout=args.max_wait) for _ in procs]
                for kind, pid in first:
                    cpu[(kind, pid)] = cpu_seconds(pid)
                for proc in procs:
                    proc.join(30)
                wal = pg.value("SELECT pg_current_wal_lsn() - $1::pg_lsn", wal_from)
                pg.close()
            wall = max(seconds for seconds, _ in results)
            rates[k] = n / wall
            spent: dict[str, float] = {}
            for (kind, pid), t in cpu.items():
                spent[kind] = spent.get(kind, 0.0) + max(0.0, t - first[(kind, pid)])
            print(
                f"  round {r + 1}  {k} processor(s) {rates[k]:>8,.0f} events/s ({wall:.2f} s; "
                f"contacts {', '.join(str(c) for _, c in results)}); cores: "
                f"{cores(spent, wall)}; WAL {float(wal) / n:,.0f} bytes/event (server-wide)",
                flush=True,
            )
        print(f"  round {r + 1}  2 processors / 1: {rates[2] / rates[1]:.2f}x", flush=True)


def timers(root: Path, args: argparse.Namespace) -> None:
    n = args.timers
    script = root / "timers.lead"
    script.write_text(TIMER_SCRIPT.format(wait=args.timer_wait), encoding="utf-8")
    print(f"\ntimers: {n:,} waits due at one instant (`wait {args.timer_wait}s`), PostgreSQL")
    for n_daemons in args.timer_daemons:
        folder = root / f"t{n_daemons}"
        folder.mkdir()
        with database(args.pg, f"bench_claims_t{n_daemons}") as url:
            out = fire_timers(folder, script, url, n_daemons, args)
        print(
            f"  {n_daemons} daemon(s): enrolled {out['early']:.1f} s before due; "
            f"{out['tags']:,} of {n:,} fired by {out['seconds']:.2f} s after due: "
            f"{out['rate']:,.0f} timers/s; cores: {cores(out['cpu'], out['seconds'])}",
            flush=True,
        )


def fire_timers(
    folder: Path,
    script: Path,
    url: str,
    n_daemons: int,
    args: argparse.Namespace,
    at_due: Any = None,
) -> dict[str, Any]:
    """`args.timers` contacts enrolled by `n_daemons` daemons on `url`, then timed from their
    timers' due instant until none is due (`at_due()`, if given, is called just before)."""
    n = args.timers
    t0 = time.time()
    items = [
        {"type": "track", "userId": f"c{i}", "event": "ping", "timestamp": iso(t0)}
        for i in range(n)
    ]
    prefill_pg(url, pending_rows(items, t0))
    due = datetime.fromisoformat(iso(t0)).timestamp() + args.timer_wait
    daemons = start_daemons(folder, [str(script)], url, n_daemons)
    pg = Pg(url)
    try:
        while pg.value(PENDING):
            if time.time() > due:
                raise SystemExit("enrolment did not finish before the timers were due")
            time.sleep(0.2)
        enrolled = time.time()
        cpu = Cpu(daemons, url.rsplit("/", 1)[1])
        while time.time() < due - 0.5:
            time.sleep(0.01)
        if at_due is not None:
            at_due()
        while time.time() < due:
            time.sleep(0.01)
        cpu.sample()
        last = 0.0
        while time.time() < due + args.max_wait:
            # (the first live entry of an index: a count would load the database)
            wake = pg.value("SELECT min(wake) FROM contacts")
            cpu.sample()
            if wake is None or wake > due:
                last = time.time()
                break
            time.sleep(0.05)
        tags = pg.value("SELECT count(*) FROM effects WHERE action = 'tag'")
    finally:
        pg.close()
        for d in daemons:
            d.stop()
    fire = (last or time.time()) - due
    return {
        "early": due - enrolled,
        "tags": tags,
        "seconds": fire,
        "rate": tags / fire,
        "cpu": cpu.spent(),
    }


def ingest(root: Path, args: argparse.Namespace) -> None:
    lines = flowio_log(root / "log.jsonl", 100_000, 10_000, time.time() - 120)
    bodies = root / "batch.bodies"
    write_batches(bodies, lines)
    connections = 16
    print(
        f"\ningest: /v1/batch, 100 flowio events a request, wrk -t2 -c{connections} "
        f"-d{int(args.seconds)}s, one daemon"
    )
    for label in ("sqlite", "pg"):
        folder = root / f"i-{label}"
        folder.mkdir()
        ctx: Any = database(args.pg, "bench_claims_i") if label == "pg" else _none()
        with ctx as url:
            d = Daemon(folder, [str(FLOWIO)], url).start()
            try:
                r = wrk(d.url + "/v1/batch", bodies, args.seconds, connections)
            finally:
                d.stop()
        row = rate_row(label, r["requests"] * 100, r, 100)
        print(
            f"  {label:<7} {row['events_s']:>10,.0f} events/s  {row['requests_s']:>7,.0f} req/s"
            f"  p50 {row['p50_ms']:.1f} ms  p99 {row['p99_ms']:.1f} ms  errors {row['errors']}",
            flush=True,
        )


@contextmanager
def _none() -> Iterator[None]:
    yield None


def wakeup(root: Path, args: argparse.Namespace) -> None:
    print(
        "\nwakeup: an event committed by another process's store, processed by an idle "
        "processor on PostgreSQL (40 events, 0-300 ms apart)"
    )
    for mode in ("poll 1.0 s", "poll 0.1 s", "listen/notify"):
        idle: dict[str, float] = {}
        with database(args.pg, "bench_claims_w") as url:
            latencies = asyncio.run(_wakeup(url, mode, root, idle))
        latencies.sort()
        print(
            f"  {mode:<14} p50 {latencies[len(latencies) // 2] * 1000:7.1f} ms  "
            f"max {latencies[-1] * 1000:7.1f} ms; idle, cores: processor "
            f"{idle['processor']:.3f}, postgres {idle['postgres']:.3f}",
            flush=True,
        )


async def _wakeup(url: str, mode: str, root: Path, idle_cpu: dict[str, float]) -> list[float]:
    import asyncpg

    from leadlang.interpreter.check import check_paths
    from leadlang.interpreter.compile import compile_program
    from leadlang.runtime import processor as processing
    from leadlang.runtime.engine import Engine
    from leadlang.runtime.server.ingest import parse_message
    from leadlang.runtime.store.sql import open_store

    script = root / "wake.lead"
    script.write_text('on ping then tag "x"\n', encoding="utf-8")
    checked = check_paths([str(script)])
    assert checked.program is not None
    ir = compile_program(checked.program)
    ir["event_types"] = {}
    a, b = await open_store(url), await open_store(url)
    idle = {"poll 1.0 s": 1.0, "poll 0.1 s": 0.1}.get(mode, 1.0)
    saved = processing.IDLE_POLL_SHARED
    processing.IDLE_POLL_SHARED = idle
    p = processing.Processor(b, Engine(ir), ir, time.time)
    stop = asyncio.Event()
    listener = await asyncpg.connect(url)
    notifier = await asyncpg.connect(url)
    if mode == "listen/notify":
        await listener.add_listener("leadlang_events", lambda *_: p.wakeup.set())
    task = asyncio.create_task(p.run(stop))
    rng = random.Random(5)
    latencies = []
    try:
        await asyncio.sleep(1.5)
        for i in range(40):
            await asyncio.sleep(rng.uniform(0, 0.3))
            now = time.time()
            item = {"type": "track", "userId": f"w{i}", "event": "ping", "timestamp": iso(now)}
            e = parse_message(item, None, now, 0)
            assert e is not None
            await a.accept([[e]], now)
            committed = time.perf_counter()
            if mode == "listen/notify":
                await notifier.execute("NOTIFY leadlang_events")
            while await notifier.fetchval(
                "SELECT count(*) FROM events WHERE contact = $1 AND pending = 1", f"w{i}"
            ):
                await asyncio.sleep(0.001)
            latencies.append(time.perf_counter() - committed)
        # what idling costs: the processor's looks for 5 s (this process; the database's side)
        before = {pid: cpu_seconds(pid) for pid in postgres_pids(url.rsplit("/", 1)[1])}
        mine = time.process_time()
        await asyncio.sleep(5.0)
        idle_cpu["processor"] = (time.process_time() - mine) / 5.0
        idle_cpu["postgres"] = sum(cpu_seconds(p) - t for p, t in before.items()) / 5.0
    finally:
        stop.set()
        p.wakeup.set()
        await task
        processing.IDLE_POLL_SHARED = saved
        await listener.close()
        await notifier.close()
        await a.close()
        await b.close()
    return latencies


# (the bench's own statements left out: its COPY, ANALYZE and polls)
BENCH_OWN = """AND query NOT LIKE 'COPY %' AND query NOT LIKE 'ANALYZE %'
AND query NOT LIKE 'SELECT EXISTS (SELECT $1 FROM events%'
AND query NOT LIKE 'SELECT min(wake) FROM contacts%'
AND query NOT LIKE 'SELECT count(*) FROM effects%'"""
STATEMENT_TOTALS = f"""SELECT sum(calls), sum(rows), sum(total_exec_time) FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1) {BENCH_OWN}"""
STATEMENT_TOP = f"""SELECT calls, rows, total_exec_time, regexp_replace(query, '\\s+', ' ', 'g')
FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)
{BENCH_OWN} ORDER BY total_exec_time DESC LIMIT 12"""


def statements(root: Path, args: argparse.Namespace) -> None:
    """The processing drain (or, with `--statements-of timers`, the timers' firing) on a
    private server with pg_stat_statements: per event (or timer), what the daemons asked of
    the database (the bench's own COPY, ANALYZE and polls left out)."""
    sys.path.insert(0, str(BENCH.parent))
    from tests.pg_cluster import PgCluster, server_binaries

    binaries = server_binaries()
    if binaries is None:
        print("\nstatements: no PostgreSQL server binaries on this machine; skipped")
        return
    of_timers = args.statements_of == "timers"
    n = args.timers if of_timers else args.events
    script = root / "timers.lead"
    script.write_text(TIMER_SCRIPT.format(wait=args.timer_wait), encoding="utf-8")
    rows = [] if of_timers else flowio_rows(root, n)
    cluster = PgCluster(binaries).init()
    with open(cluster.data / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write(
            "fsync = on\nshared_buffers = 128MB\n"
            "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n"
        )
    what = f"{n:,} timers firing" if of_timers else f"flowio, {n:,} events"
    print(f"\nstatements: {what}, a private PostgreSQL with pg_stat_statements")
    try:
        cluster.start()
        server = cluster.url("postgres").rsplit("/", 1)[0]
        admin = Pg(f"{server}/postgres")
        admin.run(admin.conn.execute("CREATE EXTENSION pg_stat_statements"))

        def reset() -> None:
            admin.run(admin.conn.execute("SELECT pg_stat_statements_reset()"))

        try:
            for n_daemons in (1, 2):
                folder = root / f"s{n_daemons}"
                folder.mkdir()
                name = f"bench_claims_{n_daemons}"
                with database(server, name) as url:
                    reset()
                    if of_timers:
                        out = fire_timers(folder, script, url, n_daemons, args, at_due=reset)
                    else:
                        out = drain(folder, url, n_daemons, rows, args.max_wait)
                    calls, found, ms = admin.run(admin.conn.fetchrow(STATEMENT_TOTALS, name))
                    top = admin.run(admin.conn.fetch(STATEMENT_TOP, name))
                print(
                    f"  {n_daemons} daemon(s): {out['rate']:,.0f}/s; per event "
                    f"{calls / n:.3f} statements, {found / n:.2f} rows, "
                    f"{ms * 1000 / n:.1f} us executing; cores: {cores(out['cpu'], out['seconds'])}"
                )
                for c, r, t, q in top:
                    print(
                        f"    {c / n:8.4f} calls {r / n:6.2f} rows {t * 1000 / n:6.1f} us  {q[:110]}"
                    )
        finally:
            admin.close()
    finally:
        cluster.destroy()


def flowio_rows(root: Path, n: int) -> list[tuple[Any, ...]]:
    """The flowio log of `n` events (n / 10 contacts) as pending rows."""
    return pending_rows(flowio_log(root / "log.jsonl", n, n // 10, time.time() - 120), time.time())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", action="append", choices=WORKLOADS + EXTRA)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--rounds", type=int, default=2, help="of processing's three runs")
    parser.add_argument("--events", type=int, default=100_000, help="processing's log")
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--timer-wait", type=int, default=60, help="seconds")
    parser.add_argument("--timer-daemons", type=int, action="append", help="default: 1 and 2")
    parser.add_argument("--seconds", type=float, default=10.0, help="each wrk run")
    parser.add_argument("--max-wait", type=float, default=300.0, help="for any queue to drain")
    parser.add_argument("--daemon-cores", type=float, default=0.5, help="quota's CPU cap")
    parser.add_argument("--statements-of", choices=("processing", "timers"), default="processing")
    args = parser.parse_args()
    args.timer_daemons = args.timer_daemons or [1, 2]
    chosen = args.workload or list(WORKLOADS)
    pg = Pg(f"{args.pg}/postgres")
    version = pg.value("SHOW server_version")
    pg.close()
    print(
        f"bench_scaleout: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, PostgreSQL {version}, SQLite {sqlite3.sqlite_version}"
    )
    root = Path(tempfile.mkdtemp(prefix="bench_scaleout_"))
    try:
        for name in chosen:
            folder = root / name
            folder.mkdir()
            workloads = {
                "processing": processing,
                "processors": processors,
                "timers": timers,
                "ingest": ingest,
                "wakeup": wakeup,
                "statements": statements,
                "quota": quota,
            }
            workloads[name](folder, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
