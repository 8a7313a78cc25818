"""The receivers for bench/bench_delivery.py, in their own process: an aiosmtpd server and an
aiohttp receiver, both on 127.0.0.1 (ports chosen by the system), both answering at once.

    python bench/delivery_servers.py [--max-seconds 900]

Prints one JSON line `{"smtp": PORT, "http": PORT}` when both listen. `GET /stats` on the
HTTP port answers `{"smtp": messages, "smtp_ids": distinct Message-IDs, "http": posts,
"http_ids": distinct webhook-ids, "cpu": this process's CPU seconds}`, so the bench can tell
every message arrived once and how busy this process was. It exits when its standard input
closes (the bench ended, however it ended) or after `--max-seconds`, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time

import orjson
from aiohttp import web
from aiosmtpd.smtp import SMTP

MESSAGE_ID = re.compile(rb"^Message-ID: *(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


class Counts:
    def __init__(self) -> None:
        self.smtp = 0
        self.http = 0
        self.smtp_ids: set[bytes] = set()
        self.http_ids: set[str] = set()


class Handler:
    """Accepts every message: counts it and remembers its Message-ID."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts

    async def handle_DATA(self, server: SMTP, session: object, envelope: object) -> str:
        self.counts.smtp += 1
        found = MESSAGE_ID.search(envelope.content or b"")  # type: ignore[attr-defined]
        if found:
            self.counts.smtp_ids.add(found.group(1))
        return "250 OK"


async def serve(max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    counts = Counts()
    handler = Handler(counts)
    smtp_server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench.localhost", ident="bench"), "127.0.0.1", 0
    )

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        counts.http += 1
        counts.http_ids.add(request.headers.get("webhook-id", ""))
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        body = {
            "smtp": counts.smtp,
            "smtp_ids": len(counts.smtp_ids),
            "http": counts.http,
            "http_ids": len(counts.http_ids),
            "cpu": time.process_time(),
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = runner.addresses[0][1]
    smtp_port = smtp_server.sockets[0].getsockname()[1]
    sys.stdout.write(orjson.dumps({"smtp": smtp_port, "http": http_port}).decode() + "\n")
    sys.stdout.flush()

    closed = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: os.read(sys.stdin.fileno(), 4096) or closed.set())
    try:
        await asyncio.wait_for(closed.wait(), max_seconds)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(sys.stdin.fileno())
        smtp_server.close()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    factory = None
    if not args.no_uvloop:
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            pass
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.max_seconds))


if __name__ == "__main__":
    main()
