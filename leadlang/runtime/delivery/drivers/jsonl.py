"""SMS and push as JSON lines (RUNTIME.md section 1): `outbox/sms.jsonl`, `outbox/push.jsonl`.

Each delivery appends one object: `at`, `contact`, `flow`, `message`, `channel`, `message_id`
(the send's key), `to`, and the rendered content (`text` for SMS; `url`, `json`, and `title`
or `text` when set, for push). A message's `headers` are left out: they carry credentials.

Exactly once across crashes: a line is appended only when no complete line of the file has its
`message_id` yet. The keys are read once from the file (at the first delivery) and kept with
those written since, as one hash per line: about 70 bytes each, at most `max_keys` of them
(1,000,000 lines by default, about 70 MB), the oldest forgotten first. A row is re-attempted
within its lease or its backoff (at most an hour), long before a million more lines are
written. A hash that matches is confirmed against the file, so a collision never drops a send.
The file replaced or truncated (rotation) is noticed and read again; a half line left by a
crash in the middle of a write is cut off before the next append.

One writer per file: deliveries queue their lines and a single task appends whatever has
queued, in a thread, with one flush and fsync for the lot (group commit), so concurrent
deliveries never interleave and a burst costs one fsync.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from leadlang.runtime.delivery.drivers.files import fsync_dir
from leadlang.runtime.delivery.outbox import Delivery, Outcome
from leadlang.runtime.group_commit import settle

MAX_KEYS = 1_000_000
_MESSAGE_ID = re.compile(rb'"message_id"\s*:\s*("(?:[^"\\]|\\.)*")')
_LEFT_OUT = frozenset({"headers"})


class JsonLinesDriver:
    def __init__(self, path: str | os.PathLike[str], max_keys: int = MAX_KEYS) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = _LinesFile(self.path, max_keys)
        self._queue: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def deliver(self, delivery: Delivery) -> Outcome:
        try:
            line = orjson.dumps(self.row(delivery)) + b"\n"
        except TypeError as error:
            return Outcome.failed(f"the content is not JSON: {error}")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((delivery.key, line, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued())
        await done
        return Outcome.sent()

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    @staticmethod
    def row(delivery: Delivery) -> dict[str, Any]:
        """The object one line holds."""
        row: dict[str, Any] = {
            "at": delivery.at,
            "contact": delivery.contact,
            "flow": delivery.flow,
            "message": delivery.message,
            "channel": delivery.channel,
            "message_id": delivery.key,
            "to": delivery.to,
        }
        for name, value in delivery.content.items():
            if name not in _LEFT_OUT:
                row.setdefault(name, value)
        return row

    async def _write_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            await settle(
                asyncio.to_thread(self._file.append, [(k, line) for k, line, _ in batch]),
                [done for _, _, done in batch],
            )


class _LinesFile:
    """The file and the keys of its complete lines; used from one thread at a time."""

    def __init__(self, path: Path, max_keys: int) -> None:
        self.path = path
        self.max_keys = max(1, max_keys)
        self.hashes: set[int] = set()
        self.order: deque[int] = deque()
        self.identity: tuple[int, int] | None = None
        self.size = 0  # bytes read, up to the end of the last complete line
        self.ends_clean = True  # nothing follows the last complete line

    def append(self, lines: list[tuple[str, bytes]]) -> None:
        self._refresh()
        out: list[bytes] = []
        batch: dict[str, None] = {}  # the keys written, in file order
        for key, line in lines:
            if key in batch or self._has(key):
                continue
            batch[key] = None
            out.append(line)
        if not out:
            return
        if not self.ends_clean:
            # A crash cut the last write short: drop the half line (it was never acknowledged,
            # and its send is among those being written now or will be retried).
            os.truncate(self.path, self.size)
        data = b"".join(out)
        created = not self.path.exists()
        with open(self.path, "ab") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
            stat = os.fstat(file.fileno())
        if created:
            fsync_dir(self.path.parent)
        self.identity = (stat.st_dev, stat.st_ino)
        self.size = stat.st_size
        self.ends_clean = True
        for key in batch:
            self._remember(hash(key))

    def _has(self, key: str) -> bool:
        return hash(key) in self.hashes and self._in_file(key)

    def _remember(self, digest: int) -> None:
        if digest in self.hashes:
            return
        self.hashes.add(digest)
        self.order.append(digest)
        if len(self.order) > self.max_keys:
            self.hashes.discard(self.order.popleft())

    def _refresh(self) -> None:
        """Catch up with the file: read it at first, again if it was replaced or truncated."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._forget()
            return
        identity = (stat.st_dev, stat.st_ino)
        if identity != self.identity or stat.st_size < self.size:
            self._forget()
            self.identity = identity
        if stat.st_size == self.size:
            return
        with open(self.path, "rb") as file:
            file.seek(self.size)
            for line in file:
                if not line.endswith(b"\n"):
                    self.ends_clean = False
                    break
                self.size += len(line)
                self.ends_clean = True
                key = _message_id(line)
                if key is not None:
                    self._remember(hash(key))

    def _forget(self) -> None:
        self.hashes.clear()
        self.order.clear()
        self.identity = None
        self.size = 0
        self.ends_clean = True

    def _in_file(self, key: str) -> bool:
        """Confirm a matching hash: some complete line has this very `message_id`."""
        with open(self.path, "rb") as file:
            return any(
                line.endswith(b"\n") and _message_id(line) == key
                for line in file
                if key.encode() in line
            )


def _message_id(line: bytes) -> str | None:
    match = _MESSAGE_ID.search(line)
    if match is None:
        return None
    try:
        value = orjson.loads(match.group(1))
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, str) else None
