"""Benchmark delivery: sends per second through the SMTP and webhook drivers, against the
ceiling of the same client libraries alone, measured in the same round.

The receivers (an aiosmtpd server and an aiohttp receiver, bench/delivery_servers.py) run in
their own process on 127.0.0.1; their CPU use is reported for every run, so one can tell when
they, not the client, set the pace. The client side runs on uvloop, as `leadlang serve` does.
Each round, for each channel (alternating, so a slow spell of the shared machine hits all):

- **ceiling**: the client library alone. SMTP: aiosmtplib sending the very bytes the driver
  sends (built beforehand with the driver's own `prepare`) over the same number of
  connections (the driver's default pool, 4), each `sendmail` after the other on its
  connection. Webhook: one aiohttp `ClientSession` POSTing the same bodies with the same
  Standard Webhooks headers (signed beforehand) from as many concurrent tasks as the worker
  runs attempts per channel (16).
- **driver**: `await driver.deliver(d)` from 16 concurrent tasks (the worker's concurrency),
  a fresh driver each round (so its pool connects in the timed part, as the ceiling's does).
- **worker run()**: `OutboxWorker.run(stop)`, as the daemon runs it, over an in-memory
  outbox holding every row (its queries are O(1), so the store costs next to nothing), until
  the last outcome is recorded.
- **worker run_once()**: `run_once()` in a loop (batches of 100, each awaited to the end).

Every run checks that the receiver got each message once (distinct `Message-ID`s /
`webhook-id`s) and that no attempt failed. Figures: sends/s, best / median of the rounds, and
each run's ratio to the ceiling of the same round (best / median of those ratios).

    python bench/bench_delivery.py [--channel smtp|webhook|both] [--messages 3000]
        [--repeat 5] [--timeout 120] [--smtp-connections 4] [--runs ceiling,driver,...]
        [--no-uvloop] [--profile RUN]

`--profile RUN` (e.g. `smtp-worker-run`) runs that one once under cProfile and prints the top
functions by own time. For a sampling profile of the whole process, threads included:
`py-spy record --format raw -o /tmp/d.txt -- python bench/bench_delivery.py --channel smtp`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import aiohttp
import aiosmtplib
import orjson
from standardwebhooks import Webhook

from leadlang.runtime.delivery.drivers import SmtpDriver, WebhookDriver
from leadlang.runtime.delivery.outbox import OTHER_CHANNELS, Delivery, Outcome
from leadlang.runtime.delivery.worker import OutboxWorker

HERE = Path(__file__).resolve().parent
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SMTP_CONNECTIONS = 4  # the smtp driver's default `connections`
CONCURRENCY = 16  # the worker's default attempts at once per channel
FROM = "Shop <shop@example.com>"

HTML = (
    "<html><body><h1>Hi {name},</h1>"
    + "".join(
        f"<p>Item {i}: a pair of <b>winter boots</b>, 15% off this week only. "
        f'<a href="https://shop.example.com/p/{i}?utm_source=leadlang">See it</a></p>'
        for i in range(12)
    )
    + '<p><a href="https://shop.example.com/u/TOKEN">Unsubscribe</a></p></body></html>'
)


def _delivery(i: int, tag: str, message: str, channel: str, content: dict[str, Any]) -> Delivery:
    """The `i`-th delivery of a run (its key made from `tag`), to `user{i}`."""
    name = f"user{i}"
    return Delivery(
        key=f"{tag}{i:08d}".ljust(32, "0")[:32],
        contact=name,
        flow="potential_offer",
        message=message,
        channel=channel,
        at="2026-11-30T12:00:00Z",
        to=f"{name}@example.com" if channel == "email" else None,
        content=content,
        attempts=0,
    )


def emails(n: int, tag: str) -> list[Delivery]:
    """Realistic emails: subject, text and HTML (about 2.7 KB), List-Unsubscribe headers."""
    return [
        _delivery(
            i,
            tag,
            "coupon",
            "email",
            {
                "subject": "15% off your next order",
                "text": f"Hi user{i},\n\nYour coupon: SAVE15.\n\n-- The shop\n" * 3,
                "html": HTML.format(name=f"user{i}"),
                "headers": {
                    "List-Unsubscribe": f"<https://shop.example.com/u/{'t' * 60}{i}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
            },
        )
        for i in range(n)
    ]


def pushes(n: int, tag: str, port: int) -> list[Delivery]:
    """Push webhooks: the message's URL, a header and a JSON body (about 300 bytes)."""
    return [
        _delivery(
            i,
            tag,
            "push_coupon",
            "push",
            {
                "url": f"http://127.0.0.1:{port}/hook",
                "headers": {"Authorization": "Bearer bench-token", "X-Shop": "bench"},
                "json": {
                    "to": f"device-{i:06d}",
                    "title": "15% off",
                    "text": f"Hi user{i}, your coupon SAVE15 is waiting",
                    "data": {"contact": f"user{i}", "flow": "potential_offer", "n": i},
                },
            },
        )
        for i in range(n)
    ]


class BenchOutbox:
    """The OutboxStore interface over a queue: claims and records in O(1), so the figure is
    the worker's and the driver's. Every row is due at once; a retry or a dead row is an
    error of the run (recorded, not re-queued)."""

    def __init__(self, deliveries: list[Delivery]) -> None:
        self.pending = deque(deliveries)
        self.total = len(deliveries)
        self.sent = 0
        self.errors: list[str] = []
        self.done = asyncio.Event()

    def _finished(self) -> None:
        if self.sent + len(self.errors) >= self.total:
            self.done.set()

    async def claim_outbox(
        self, now: float, limit: int, lease: float, rooms: Mapping[str, int] | None = None
    ) -> list[Delivery]:
        pending = self.pending
        if rooms is not None and pending:  # (every row is of one channel)
            limit = min(limit, rooms.get(pending[0].channel, rooms.get(OTHER_CHANNELS, 0)))
        return [pending.popleft() for _ in range(max(0, min(limit, len(pending))))]

    async def outbox_sent(self, key: str, now: float) -> None:
        self.sent += 1
        self._finished()

    async def outbox_retry(self, key: str, attempts: int, next_attempt: float, error: str) -> None:
        self.errors.append(f"retry: {error}")
        self._finished()

    async def outbox_dead(self, key: str, attempts: int, error: str) -> None:
        self.errors.append(f"dead: {error}")
        self._finished()


class Servers:
    """The receivers' process: started here, ended here (and it ends itself when our end of
    its standard input closes, or after `max_seconds`)."""

    def __init__(self, max_seconds: float, uvloop: bool) -> None:
        argv = [
            sys.executable,
            str(HERE / "delivery_servers.py"),
            "--max-seconds",
            str(max_seconds),
        ]
        if not uvloop:
            argv.append("--no-uvloop")
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the receivers did not start")
        ports = json.loads(line)
        self.smtp_port, self.http_port = int(ports["smtp"]), int(ports["http"])

    def stats(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.http_port}/stats"
        with urllib.request.urlopen(url, timeout=10) as answer:
            return dict(json.loads(answer.read()))

    def stop(self) -> None:
        process = self.process
        if process.poll() is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        else:
            process.wait()


async def pool(items: Iterable[Any], tasks: int, each: Callable[[Any], Awaitable[Any]]) -> list:
    """Run `each` over `items` from `tasks` concurrent tasks; the results, in no order."""
    queue = deque(items)
    results: list[Any] = []

    async def runner() -> None:
        while queue:
            results.append(await each(queue.popleft()))

    await asyncio.gather(*(runner() for _ in range(tasks)))
    return results


def smtp_driver(port: int) -> SmtpDriver:
    return SmtpDriver("127.0.0.1", port, FROM, connections=SMTP_CONNECTIONS)


# ---- the runs: each an async function of (deliveries, servers) -> errors


async def smtp_ceiling(deliveries: list[Delivery], servers: Servers, timer: Timer) -> list[str]:
    builder = smtp_driver(servers.smtp_port)
    prepared = [builder.prepare(d) for d in deliveries]  # the driver's bytes, untimed
    timer.start()
    clients = [
        aiosmtplib.SMTP(hostname="127.0.0.1", port=servers.smtp_port, timeout=30)
        for _ in range(SMTP_CONNECTIONS)
    ]
    await asyncio.gather(*(client.connect() for client in clients))
    queue = deque(prepared)

    async def one(client: aiosmtplib.SMTP) -> None:
        while queue:
            sender, recipient, data = queue.popleft()
            await client.sendmail(sender, [recipient], data)

    await asyncio.gather(*(one(client) for client in clients))
    timer.stop()
    for client in clients:
        await client.quit()
    return []


async def driver_alone(driver: Any, deliveries: list[Delivery], timer: Timer) -> list[str]:
    timer.start()
    outcomes: list[Outcome] = await pool(deliveries, CONCURRENCY, driver.deliver)
    timer.stop()
    await driver.close()
    return [f"{o.status}: {o.error}" for o in outcomes if o.status != "sent"]


async def worker_run(driver: Any, deliveries: list[Delivery], timer: Timer) -> list[str]:
    outbox = BenchOutbox(deliveries)
    worker = OutboxWorker(outbox, {deliveries[0].channel: driver}, time.time)
    stop = asyncio.Event()
    timer.start()
    running = asyncio.create_task(worker.run(stop))
    await outbox.done.wait()
    timer.stop()
    stop.set()
    await running
    await worker.close()
    return outbox.errors


async def worker_run_once(driver: Any, deliveries: list[Delivery], timer: Timer) -> list[str]:
    outbox = BenchOutbox(deliveries)
    worker = OutboxWorker(outbox, {deliveries[0].channel: driver}, time.time)
    timer.start()
    while await worker.run_once():
        pass
    timer.stop()
    await worker.close()
    return outbox.errors


async def webhook_ceiling(deliveries: list[Delivery], servers: Servers, timer: Timer) -> list[str]:
    webhook = Webhook(SECRET)
    stamp = int(time.time())
    requests = []
    for d in deliveries:  # signed beforehand, untimed
        body = orjson.dumps(d.content["json"])
        signature = webhook.sign(d.key, datetime.fromtimestamp(stamp, UTC), body.decode())
        headers = dict(d.content["headers"])
        headers.update(
            {
                "Content-Type": "application/json",
                "webhook-id": d.key,
                "webhook-timestamp": str(stamp),
                "webhook-signature": signature,
            }
        )
        requests.append((d.content["url"], headers, body))
    timer.start()
    async with aiohttp.ClientSession(headers={"User-Agent": "bench"}) as session:

        async def one(request: tuple[str, dict[str, str], bytes]) -> int:
            url, headers, body = request
            async with session.post(url, data=body, headers=headers) as answer:
                await answer.read()
                return answer.status

        statuses = await pool(requests, CONCURRENCY, one)
        timer.stop()
    return [f"HTTP {s}" for s in statuses if not 200 <= s < 300]


class Timer:
    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def start(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


RUNS = ("ceiling", "driver", "worker-run", "worker-run_once")


def make_run(channel: str, run: str, servers: Servers, n: int, tag: str) -> Callable[[Timer], Any]:
    if channel == "smtp":
        deliveries = emails(n, tag)
        if run == "ceiling":
            return lambda timer: smtp_ceiling(deliveries, servers, timer)
        driver: Any = smtp_driver(servers.smtp_port)
    else:
        deliveries = pushes(n, tag, servers.http_port)
        if run == "ceiling":
            return lambda timer: webhook_ceiling(deliveries, servers, timer)
        driver = WebhookDriver(SECRET)
    body = {"driver": driver_alone, "worker-run": worker_run, "worker-run_once": worker_run_once}
    return lambda timer: body[run](driver, deliveries, timer)


def measure(
    runner: asyncio.Runner,
    servers: Servers,
    channel: str,
    run: str,
    n: int,
    tag: str,
    timeout: float,
    profile: bool = False,
) -> tuple[float, float, float]:
    """(sends/s, client CPU share, receivers' CPU share) of one run, checked."""
    body = make_run(channel, run, servers, n, tag)
    timer = Timer()
    before = servers.stats()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    errors = runner.run(asyncio.wait_for(body(timer), timeout))
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    after = servers.stats()
    kind = "smtp" if channel == "smtp" else "http"
    got, ids = after[kind] - before[kind], after[f"{kind}_ids"] - before[f"{kind}_ids"]
    if errors or got != n or ids != n:
        raise SystemExit(
            f"{channel} {run}: {len(errors)} errors ({errors[:3]}), {got} received, {ids} distinct"
        )
    server_cpu = (after["cpu"] - before["cpu"]) / timer.wall  # (includes the stats request)
    return n / timer.wall, timer.cpu / timer.wall, server_cpu


def main() -> None:
    global SMTP_CONNECTIONS
    parser = argparse.ArgumentParser()
    parser.add_argument("--channel", choices=["smtp", "webhook", "both"], default="both")
    parser.add_argument("--messages", type=int, default=3000, help="sends per run")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (best and median shown)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds, per run")
    parser.add_argument(
        "--smtp-connections",
        type=int,
        default=SMTP_CONNECTIONS,
        help="the driver's `connections` and the ceiling's (default 4, the driver's default)",
    )
    parser.add_argument("--no-uvloop", action="store_true", help="the default asyncio loop")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"some of {','.join(RUNS)}")
    parser.add_argument("--profile", metavar="CHANNEL-RUN", help="e.g. smtp-worker-run")
    args = parser.parse_args()
    SMTP_CONNECTIONS = args.smtp_connections
    channels = ["smtp", "webhook"] if args.channel == "both" else [args.channel]
    runs = [r for r in args.runs.split(",") if r]
    if "ceiling" not in runs or any(r not in RUNS for r in runs):
        raise SystemExit(f"--runs: the ceiling and any of {', '.join(RUNS[1:])}")
    factory = None
    if not args.no_uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    budget = args.timeout * len(runs) * len(channels) * (args.repeat + 1) + 60
    servers = Servers(budget, not args.no_uvloop)
    load = [os.getloadavg()]
    figures: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            if args.profile:
                channel, _, run = args.profile.partition("-")
                measure(runner, servers, channel, run, args.messages, "p", args.timeout, True)
                return
            for channel in channels:  # warm-up: connections, imports, caches
                for run in runs:
                    measure(runner, servers, channel, run, 200, f"w{RUNS.index(run)}", args.timeout)
            for round_ in range(args.repeat):
                for channel in channels:
                    ceiling = 0.0
                    for run in runs:
                        tag = f"r{round_}{channel[0]}{RUNS.index(run)}"
                        result = measure(
                            runner, servers, channel, run, args.messages, tag, args.timeout
                        )
                        figures.setdefault((channel, run), []).append(result)
                        if run == "ceiling":
                            ceiling = result[0]
                        ratios.setdefault((channel, run), []).append(result[0] / ceiling)
                load.append(os.getloadavg())
    finally:
        servers.stop()
    loop_name = "asyncio" if args.no_uvloop else "uvloop"
    print(
        f"{args.messages:,} sends per run, {args.repeat} rounds (best / median), client on "
        f"{loop_name}; SMTP over {SMTP_CONNECTIONS} connections, webhooks from {CONCURRENCY} tasks"
    )
    print(
        "load average (1 min) during the rounds: "
        + ", ".join(f"{one:.1f}" for one, _, _ in load)
        + f"  ({os.cpu_count()} CPUs)"
    )
    print(
        "columns: sends/s best / median; vs the ceiling: best / best, then the median of each"
        " round's ratio; client CPU us per send, best / median (threads included), and the"
        " CPU ratio ceiling / run (what a CPU-bound client would reach); median CPU shares"
        " of a core (client, receivers' process)"
    )
    for channel in channels:
        print(f"{channel}:")
        top = max(r[0] for r in figures[(channel, "ceiling")])
        base_cpu = median(r[1] / r[0] for r in figures[(channel, "ceiling")])
        for run in runs:
            rows = figures[(channel, run)]
            rates = [r[0] for r in rows]
            ratio = ratios[(channel, run)]
            cpu = [r[1] / r[0] for r in rows]
            line = f"  {run:16} {max(rates):6,.0f} / {median(rates):6,.0f} sends/s"
            if run != "ceiling":
                line += f"  {max(rates) / top:.2f}x / {median(ratio):.2f}x"
            else:
                line += " " * 15
            line += f"  CPU {min(cpu) * 1e6:5.0f} / {median(cpu) * 1e6:5.0f} us"
            if run != "ceiling":
                line += f" ({base_cpu / median(cpu):.2f}x)"
            else:
                line += " " * 8
            line += f"  shares {median(r[1] for r in rows):4.0%}, {median(r[2] for r in rows):4.0%}"
            print(line)


if __name__ == "__main__":
    main()
