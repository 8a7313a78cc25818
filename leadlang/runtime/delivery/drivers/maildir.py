"""Email into a Maildir folder (RUNTIME.md section 4): one file per send, named from its key.

Each message is a real RFC 5322 message (`email.message.EmailMessage`) written to `tmp/`,
fsynced and renamed into `new/`, so a reader never sees half a file. A send whose file is
already in `new/` or `cur/` (where a mail client moves it, as `KEY:2,FLAGS`) is `sent`
without writing again: a retry after a crash delivers nothing twice.

`Date` is the instant the engine decided the send, so every attempt writes the same bytes.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from leadlang.runtime.delivery.drivers.files import fsync_dir
from leadlang.runtime.delivery.outbox import Delivery, Outcome
from leadlang.runtime.delivery.render import html_to_text

DEFAULT_FROM = "leadlang <leadlang@localhost>"


class _HeaderClasses(HeaderRegistry):
    """The standard registry, keeping the class it makes per header name: the standard one
    makes a new class for every header set, a third of the cost of building a message."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        lower = name.lower()
        made = self._made.get(lower)
        if made is None:
            made = self._made[lower] = super().__getitem__(name)
        return made


# (headers on one line: a folded List-Unsubscribe URL would be written as encoded words,
# which mail clients do not decode in that header)
_POLICY = default_policy.clone(header_factory=_HeaderClasses(), max_line_length=998)
_KEY = re.compile(r"[0-9A-Za-z_-]{1,128}")
_INFO_SEPARATORS = (":", "!", ";")  # `KEY:2,S` in cur/ (";" and "!" on some platforms)


class MaildirDriver:
    def __init__(
        self, path: str | os.PathLike[str], from_address: str = DEFAULT_FROM, threads: int = 16
    ) -> None:
        self.path = Path(path)
        self.from_address = from_address
        # Its own threads: fsyncs made side by side share the journal's commits (about 0.4 ms
        # a file with 16 threads against 5 ms one after another on ext4), and a slow disk
        # never holds up the default executor.
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="leadlang-maildir")
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        # cur/ is listed again only when its modification time changes (a client moved mail)
        # or was too recent to be sure nothing else arrived within the same clock tick.
        self._cur_seen: tuple[int, frozenset[str]] | None = None

    async def deliver(self, delivery: Delivery) -> Outcome:
        # Building a message costs milliseconds of CPU in the email package: off the loop.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._deliver, delivery)

    async def close(self) -> None:
        await asyncio.to_thread(self._threads.shutdown)

    def _deliver(self, delivery: Delivery) -> Outcome:
        key = delivery.key
        if not _KEY.fullmatch(key):
            return Outcome.failed(f"the key {key!r} cannot name a file")
        final = self.path / "new" / key
        if final.exists() or self._in_cur(key):
            return Outcome.sent()  # delivered before a crash or a lost acknowledgement
        if not delivery.to:
            return Outcome.failed("no email address")
        try:
            message = build_message(delivery, self.from_address)
            data = message.as_bytes()
        except (ValueError, TypeError, LookupError) as error:
            return Outcome.failed(f"cannot build the email: {error}")
        sender = delivery.content.get("from") or self.from_address
        for name, raw in (("To", delivery.to), ("From", sender)):
            if not _one_address(message, name):
                return Outcome.failed(f"`{name}` is not one email address: {raw!r}")
        temporary = self.path / "tmp" / f"{key}.{os.getpid()}.{secrets.token_hex(4)}"
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, final)
        fsync_dir(self.path / "new")
        return Outcome.sent()

    def _in_cur(self, key: str) -> bool:
        cur = self.path / "cur"
        mtime = cur.stat().st_mtime_ns
        seen = self._cur_seen
        if seen is not None and seen[0] == mtime:
            return key in seen[1]
        names = frozenset(_strip_info(name) for name in os.listdir(cur))
        settled = time.time_ns() - mtime > 2_000_000_000
        self._cur_seen = (mtime, names) if settled else None
        return key in names


def build_message(delivery: Delivery, from_address: str = DEFAULT_FROM) -> EmailMessage:
    """The RFC 5322 message of an email delivery (the SMTP driver will send the same)."""
    content = delivery.content
    message = EmailMessage(policy=_POLICY)
    message["Message-ID"] = f"<{delivery.key}@leadlang>"
    message["Date"] = format_datetime(_instant(delivery.at))
    message["From"] = _one_line(content.get("from") or from_address)
    message["To"] = _one_line(delivery.to or "")
    if content.get("reply_to"):
        message["Reply-To"] = _one_line(content["reply_to"])
    message["Subject"] = _one_line(content.get("subject") or "")
    message["X-Leadlang-Contact"] = _one_line(delivery.contact)
    message["X-Leadlang-Flow"] = _one_line(delivery.flow)
    message["X-Leadlang-Message"] = _one_line(delivery.message)
    for name, value in (content.get("headers") or {}).items():
        message[_one_line(str(name))] = _one_line(str(value))  # e.g. List-Unsubscribe
    html = content.get("html")
    text = content.get("text")
    if text is None:
        text = html_to_text(html) if html else ""
    message.set_content(text, cte=_transfer_encoding(text))
    if html:
        message.add_alternative(html, subtype="html", cte=_transfer_encoding(html))
        message.set_boundary(f"=_leadlang_{delivery.key}")  # the same bytes every attempt
    return message


def _transfer_encoding(body: str) -> str:
    """7-bit safe files: quoted-printable once a body is not plain ASCII with short lines."""
    if body.isascii() and all(len(line) <= 998 for line in body.splitlines()):
        return "7bit"
    return "quoted-printable"


def _one_address(message: EmailMessage, name: str) -> bool:
    header = message[name]
    addresses: tuple[Any, ...] = tuple(getattr(header, "addresses", ()))
    return len(addresses) == 1 and bool(addresses[0].domain) and not header.defects


def _strip_info(name: str) -> str:
    for separator in _INFO_SEPARATORS:
        name = name.split(separator, 1)[0]
    return name


def _one_line(value: str) -> str:
    """Header values never span lines (a trait with a newline cannot inject a header)."""
    return " ".join(str(value).split())


def _instant(at: str) -> datetime:
    try:
        return datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(UTC)
