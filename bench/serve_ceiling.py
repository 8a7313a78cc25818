"""The ceiling for bench/bench_serve.py's ingest figures: a bare aiohttp handler.

    python bench/serve_ceiling.py DB_FILE PORT

`POST /v1/batch` (and `/v1/track`, one message) decodes the body with orjson, checks the
Authorization header, reads each message's contact, timestamp and properties, and inserts
the rows with `sqlite3` `executemany` in one transaction per request into a WAL SQLite file
(`synchronous=FULL`, as serve's store), then answers 200 `{"success":true}`. No validation
beyond that, no deduplication, no secondary index, no group commit, no processing: what
ingest would cost with nothing but decoding and a durable insert. Prints `ready` when it
listens.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from datetime import datetime

import orjson
import uvloop
from aiohttp import web

AUTH = ("Basic azo=", "Bearer k")  # the bench's write key `k`
OK = b'{"success":true}'


def main() -> None:
    path, port = sys.argv[1], int(sys.argv[2])
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, message_id TEXT, "
        "contact TEXT NOT NULL, t REAL NOT NULL, received REAL NOT NULL, body TEXT NOT NULL)"
    )

    def row(item: dict, received: float) -> tuple:
        stamp = item.get("timestamp")
        t = datetime.fromisoformat(stamp).timestamp() if stamp else received
        body = {"n": item.get("event") or item.get("type"), "p": item.get("properties") or {}}
        if item.get("traits"):
            body["tr"] = item["traits"]
        return (
            item.get("messageId"),
            item.get("userId") or item.get("anonymousId"),
            t,
            received,
            orjson.dumps(body).decode(),
        )

    def store(rows: list[tuple]) -> None:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO events (message_id, contact, t, received, body) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        db.execute("COMMIT")

    async def batch(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") not in AUTH:
            return web.Response(status=401)
        received = time.time()
        body = orjson.loads(await request.read())
        store([row(item, received) for item in body["batch"]])
        return web.Response(body=OK, content_type="application/json")

    async def track(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") not in AUTH:
            return web.Response(status=401)
        received = time.time()
        item = orjson.loads(await request.read())
        item["type"] = "track"
        store([row(item, received)])
        return web.Response(body=OK, content_type="application/json")

    app = web.Application(client_max_size=1024 * 1024)
    app.add_routes([web.post("/v1/batch", batch), web.post("/v1/track", track)])

    async def ready(app: web.Application) -> None:
        print("ready", flush=True)

    app.on_startup.append(ready)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        backlog=1024,
        loop=uvloop.new_event_loop(),  # as serve runs
    )


if __name__ == "__main__":
    main()
