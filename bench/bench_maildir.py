"""Benchmark email delivery into a Maildir through the outbox worker, on a real SQLite store.

    python bench/bench_maildir.py [--sends 4000] [--rounds 3] [--dir /tmp]

Each round, alternating (so a slow spell of the shared disk hits both):

- **worker**: `--sends` pending email rows (a 2.7 KB message each) committed to a fresh
  SQLite store made by serve's `open_store`, then `OutboxWorker.run` with the Maildir driver,
  as serve's back end runs them, until every file is in `new/`: sends/s.
- **files, fsync each**: the disk's pace for one durable file per send done the classic way,
  in the same round: the same number of files of the same size written by 16 threads, each
  written to `tmp/`, fsynced, renamed into `new/`, `new/` fsynced (what the driver did
  before it wrote groups): files/s.

Prints both and their ratio (worker / files) per round. Files go under `--dir` (a disk, not
tmpfs: fsync is the point) and are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from leadlang.runtime.delivery.drivers.maildir import MaildirDriver
from leadlang.runtime.delivery.worker import OutboxWorker
from leadlang.runtime.store.sql import open_store

CONTENT = {
    "subject": "Welcome aboard, Ann",
    "text": "Hello Ann, thanks for signing up. " * 12,
    "html": "<p>Hello <b>Ann</b>, thanks for signing up.</p>" * 40,
}


async def worker_round(folder: Path, sends: int) -> float:
    store = await open_store(f"sqlite:///{folder / 'store.db'}")
    now = time.time()
    con = sqlite3.connect(folder / "store.db")
    with con:
        con.executemany(
            "INSERT INTO outbox (key, contact, flow, message, channel, at, recipient, content,"
            " status, attempts, next_attempt, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    f"k{i:07d}",
                    f"c{i}",
                    "welcome",
                    "hello",
                    "email",
                    "2026-11-30T10:00:00Z",
                    f"c{i}@example.com",
                    json.dumps(CONTENT),
                    "pending",
                    0,
                    now,
                    now,
                )
                for i in range(sends)
            ],
        )
    con.close()
    worker = OutboxWorker(store, {"email": MaildirDriver(folder / "outbox")}, time.time)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    new = folder / "outbox" / "new"
    while len(os.listdir(new)) < sends:
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    await worker.close()
    await store.close()
    return sends / elapsed


def files_round(folder: Path, sends: int, size: int) -> float:
    for sub in ("tmp", "new"):
        (folder / sub).mkdir(parents=True)
    data = b"x" * size

    def one(i: int) -> None:
        temporary = folder / "tmp" / f"k{i:07d}"
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, folder / "new" / f"k{i:07d}")
        fd = os.open(folder / "new", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(sends)))
    return sends / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    print(f"bench_maildir: {args.sends:,} sends a run, {os.cpu_count()} CPUs, under {args.dir}")
    for n in range(args.rounds):
        with (
            tempfile.TemporaryDirectory(dir=args.dir) as a,
            tempfile.TemporaryDirectory(dir=args.dir) as b,
        ):
            worker = runner(worker_round(Path(a), args.sends))
            size = next((Path(a) / "outbox" / "new").iterdir()).stat().st_size
            shutil.rmtree(Path(a) / "outbox")
            files = files_round(Path(b), args.sends, size)
        print(
            f"  round {n + 1}: worker + SQLite + Maildir {worker:7,.0f} sends/s;"
            f" files fsynced one by one (16 threads) {files:7,.0f}/s; ratio {worker / files:.2f}"
        )


if __name__ == "__main__":
    main()
