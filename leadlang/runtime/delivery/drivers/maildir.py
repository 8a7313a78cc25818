"""Email into a Maildir folder (RUNTIME.md section 4): one file per send, named from its key.

Each message is a real RFC 5322 message (`email.message.EmailMessage`) written to `tmp/`,
made durable and renamed into `new/`, so a reader never sees half a file; sends that arrive
together are written as a group and made durable together. A send whose file is already in
`new/` or `cur/` (where a mail client moves it, as `KEY:2,FLAGS`) is `sent` without writing
again: a retry after a crash delivers nothing twice.

`Date` is the instant the engine decided the send, so every attempt writes the same bytes.
`build_message` says what the message is; `email_bytes` writes the same bytes without it, 15
times faster, for the messages it can (both drivers use it first).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import itertools
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.policy import default as default_policy
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import attrs

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
GROUP = 256  # sends written and made durable together, at most
GROUPS = 2  # groups written at once (one fsyncs while the next is written)
# What the email package raises on a message it cannot build: the fault of the send's data,
# which fails it for good (IndexError on `Ann <`; AttributeError, from inside the package, on
# an unclosed domain literal such as `ann@[1.2` in Python 3.11; TypeError, from inside it too,
# on `ann@example.com, .\`).
UNBUILDABLE = (ValueError, TypeError, LookupError, AttributeError)


def _load_syncfs() -> Any:
    """libc's `syncfs` (Linux), or None."""
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int
    return syncfs


_SYNCFS = _load_syncfs()


def _fsync_close(file: Any) -> Exception | None:
    """fsync and close a file; the error, if any (the send is then retried)."""
    try:
        os.fsync(file.fileno())
        return None
    except Exception as exc:
        return exc
    finally:
        with contextlib.suppress(OSError):
            file.close()


class MaildirDriver:
    def __init__(
        self, path: str | os.PathLike[str], from_address: str = DEFAULT_FROM, threads: int = 16
    ) -> None:
        self.path = Path(path)
        self.from_address = from_address
        # Sends are written in groups (group commit for files): one thread writes a group's
        # files to tmp/, makes them durable together (`_sync`: one syncfs on Linux, else an
        # fsync each side by side on `threads` threads, which share the journal's commits),
        # renames them into new/ and fsyncs new/ once. One durable file at a time per send
        # capped delivery at a few hundred a second (docs/performance.md, session 11).
        self._groups = ThreadPoolExecutor(GROUPS, thread_name_prefix="leadlang-maildir")
        self._syncs = ThreadPoolExecutor(threads, thread_name_prefix="leadlang-maildir-sync")
        self._waiting: list[tuple[Delivery, asyncio.Future[Outcome]]] = []
        self._writers = 0  # groups being written now (at most GROUPS)
        self._tasks: set[asyncio.Task[None]] = set()
        self.concurrency = GROUP * GROUPS  # (the worker's attempts at once: whole groups)
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        # (the folders as text: a file's path is joined for every send, pathlib's way costs)
        self._tmp, self._new = str(self.path / "tmp"), str(self.path / "new")
        # a file in tmp/ is named by its key, this process and a number of its own: unique
        # among the living writers (a dead one's leftover of the same name is only replaced)
        self._tmp_name = f"{os.getpid()}_{time.time_ns()}"
        self._numbers = itertools.count()
        # cur/ is listed again only when its modification time changes (a client moved mail)
        # or was too recent to be sure nothing else arrived within the same clock tick.
        self._cur_seen: tuple[int, frozenset[str]] | None = None

    async def deliver(self, delivery: Delivery) -> Outcome:
        """Joins the next group to be written; answers once that group is durable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._waiting.append((delivery, future))
        if self._writers < GROUPS:
            self._writers += 1
            task = loop.create_task(self._write_waiting())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def close(self) -> None:
        await asyncio.to_thread(self._groups.shutdown)
        await asyncio.to_thread(self._syncs.shutdown)

    async def _write_waiting(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(0)  # (let the sends claimed together join this group)
            while self._waiting:
                group, self._waiting = self._waiting[:GROUP], self._waiting[GROUP:]
                # (a caller that timed out, or whose event loop is gone, waits no more)
                group = [(d, f) for d, f in group if not f.done() and f.get_loop() is loop]
                try:
                    outcomes = await loop.run_in_executor(
                        self._groups, self._write_group, [d for d, _ in group]
                    )
                except Exception as exc:  # (not expected: each send's fault is its own)
                    outcomes = [exc] * len(group)
                for (_, future), outcome in zip(group, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, Outcome):
                        future.set_result(outcome)
                    else:
                        future.set_exception(outcome)
        finally:
            self._writers -= 1

    def _write_group(self, group: list[Delivery]) -> list[Outcome | Exception]:
        """Each send's outcome, or the exception that stopped it (the worker retries it)."""
        outcomes: list[Outcome | Exception] = []
        files: dict[int, tuple[str, str, Any]] = {}  # index -> (temporary, final, file)
        keys: set[str] = set()
        for index, delivery in enumerate(group):
            try:
                ready = self._prepare(delivery)
                if isinstance(ready, bytes) and delivery.key in keys:
                    ready = Outcome.sent()  # (the same key twice in a group: one file)
                if isinstance(ready, bytes):
                    keys.add(delivery.key)
                    key = delivery.key
                    temporary = f"{self._tmp}/{key}.{self._tmp_name}.{next(self._numbers)}"
                    file = open(temporary, "wb")  # noqa: SIM115 (closed after the group's sync)
                    try:
                        file.write(ready)
                        file.flush()
                    except BaseException:  # (never renamed: half a file stays out of new/)
                        with contextlib.suppress(OSError):  # (its flush fails again)
                            file.close()
                        with contextlib.suppress(OSError):
                            os.unlink(temporary)
                        raise
                    files[index] = (temporary, f"{self._new}/{key}", file)
                    ready = Outcome.sent()
                outcomes.append(ready)
            except Exception as exc:
                outcomes.append(exc)
        synced = self._sync([file for _, _, file in files.values()])
        for (index, (temporary, final, _)), error in zip(files.items(), synced, strict=True):
            try:
                if error is not None:
                    raise error
                os.replace(temporary, final)
            except Exception as exc:
                outcomes[index] = exc
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
        if files:
            fsync_dir(self.path / "new")
        return outcomes

    def _sync(self, files: list[Any]) -> list[Exception | None]:
        """Make the files' contents durable: one `syncfs` of their file system where there is
        one (Linux: one journal commit for the group), else an fsync each, side by side."""
        if files and _SYNCFS is not None:
            try:
                if _SYNCFS(files[0].fileno()) != 0:
                    raise OSError(ctypes.get_errno(), "syncfs failed")
                error: Exception | None = None
            except Exception as exc:
                error = exc
            for file in files:
                with contextlib.suppress(OSError):
                    file.close()
            return [error] * len(files)
        return list(self._syncs.map(_fsync_close, files))

    def _prepare(self, delivery: Delivery) -> Outcome | bytes:
        """The bytes of the send's file, or its outcome when there is nothing to write."""
        key = delivery.key
        if not _KEY.fullmatch(key):
            return Outcome.failed(f"the key {key!r} cannot name a file")
        if os.path.exists(f"{self._new}/{key}") or self._in_cur(key):
            return Outcome.sent()  # delivered before a crash or a lost acknowledgement
        if not delivery.to:
            return Outcome.failed("no email address")
        quick = None
        with contextlib.suppress(Exception):  # (the email package's path names the fault)
            quick = email_bytes(delivery, self.from_address, _FILE_LAYOUT)
        if quick is not None:
            return quick.data
        try:
            message = build_message(delivery, self.from_address)
            data = message.as_bytes()
        except UNBUILDABLE as error:
            return Outcome.failed(f"cannot build the email: {error}")
        sender = delivery.content.get("from") or self.from_address
        for name, raw in (("To", delivery.to), ("From", sender)):
            if not _one_address(message, name):
                return Outcome.failed(f"`{name}` is not one email address: {raw!r}")
        return data

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


class Layout:
    """How an email is written out: the policy the standard library would write it with
    (line ends, where headers fold), and a cache of the headers it had to fold itself."""

    def __init__(self, policy: EmailPolicy[Any], *, one_line_unsubscribe: bool = False) -> None:
        self.policy = policy
        self.linesep = policy.linesep
        self.max_line_length = policy.max_line_length or 998
        # (as the SMTP driver's policy does: List-Unsubscribe on one line up to 996 characters)
        self.one_line_unsubscribe = one_line_unsubscribe
        self.fold = functools.lru_cache(maxsize=512)(self._fold)
        self.address = functools.lru_cache(maxsize=512)(self._address)

    def _fold(self, name: str, value: str) -> bytes:
        return self.policy.fold_binary(name, _POLICY.header_factory(name, value))

    def _address(self, name: str, value: str) -> tuple[bytes, str | None]:
        """The folded header and its one address (None when it is not one address)."""
        header = _POLICY.header_factory(name, value)
        addresses: tuple[Any, ...] = tuple(getattr(header, "addresses", ()))
        one = len(addresses) == 1 and bool(addresses[0].domain) and not header.defects
        spec = str(addresses[0].addr_spec) if one else None
        return self.policy.fold_binary(name, header), spec


@attrs.frozen
class EmailBytes:
    """An email as sent: its bytes, the envelope's addresses, and its top-level header names."""

    data: bytes
    sender: str
    recipient: str
    headers: tuple[str, ...]


def email_bytes(
    delivery: Delivery,
    from_address: str,
    layout: Layout,
    mailto_unsubscribe: str | None = None,
) -> EmailBytes | None:
    """The very bytes `build_message` gives once written with `layout.policy` (with the
    `mailto:` entry joined to List-Unsubscribe as the SMTP driver does), written directly:
    an `EmailMessage` costs about a millisecond to build and write, nearly all of it parsing
    and folding headers that need neither. Headers that do (non-ASCII, long, addresses
    beyond `Name <local@domain>`) are folded by the standard library, one header at a time.

    None when only `build_message` can say what happens: an address that is not one address
    (its error message), a custom header the standard library treats specially (`Subject`,
    `Content-Type`, ...), a key that does not make a plain boundary."""
    if not _PLAIN_KEY.fullmatch(delivery.key):
        return None
    content = delivery.content
    custom = [
        (_one_line(str(name)), _one_line(str(value)))
        for name, value in (content.get("headers") or {}).items()
    ]
    for name, _ in custom:
        if not _FIELD_NAME.fullmatch(name) or name.lower() in _STRUCTURED:
            return None
    nl = layout.linesep
    message_id = f"<{delivery.key}@leadlang>"
    out: list[bytes] = [
        f"Message-ID: {message_id}{nl}".encode("ascii")
        if len(message_id) + 12 <= layout.max_line_length
        else layout.fold("Message-ID", message_id),
        f"Date: {format_datetime(_instant(delivery.at))}{nl}".encode("ascii"),
    ]
    names = ["Message-ID", "Date", "From", "To"]
    sender = recipient = None
    for name, raw in (("From", content.get("from") or from_address), ("To", delivery.to or "")):
        value = _one_line(raw)
        simple = _SIMPLE_ADDRESS.fullmatch(value)
        if simple and len(name) + 2 + len(value) <= layout.max_line_length and "=?" not in value:
            out.append(f"{name}: {value}{nl}".encode("ascii"))
            spec = simple.group("spec") or value
        else:
            line, found = layout.address(name, value)
            if found is None:
                return None
            out.append(line)
            spec = found
        if name == "From":
            sender = spec
        else:
            recipient = spec
    assert sender is not None and recipient is not None
    plain = [("Subject", _one_line(content.get("subject") or ""))]
    if content.get("reply_to"):
        value = _one_line(content["reply_to"])
        simple = _SIMPLE_ADDRESS.fullmatch(value)
        if simple and len(value) + 10 <= layout.max_line_length and "=?" not in value:
            out.append(f"Reply-To: {value}{nl}".encode("ascii"))
        else:
            out.append(layout.fold("Reply-To", value))
        names.append("Reply-To")
    plain += [
        ("X-Leadlang-Contact", _one_line(delivery.contact)),
        ("X-Leadlang-Flow", _one_line(delivery.flow)),
        ("X-Leadlang-Message", _one_line(delivery.message)),
    ]
    unsubscribe: str | None = None
    if mailto_unsubscribe:
        entry = mailto_unsubscribe
        entry = f"<{entry if entry.lower().startswith('mailto:') else 'mailto:' + entry}>"
        listed = [value for name, value in custom if name.lower() == "list-unsubscribe"]
        if len(listed) > 1 or (listed and "=?" in listed[0]):
            return None  # (the email package joins the decoded header: its business)
        custom = [(n, v) for n, v in custom if n.lower() != "list-unsubscribe"]
        unsubscribe = f"{listed[0]}, {entry}" if listed else entry
        if _one_line(unsubscribe) != unsubscribe:
            return None
    for name, value in [*plain, *custom]:
        out.append(_unstructured(layout, name, value))
        names.append(name)
    html = content.get("html")
    text = content.get("text")
    if text is None:
        text = html_to_text(html) if html else ""
    text_cte, text_body = _body(text)
    text_type = b'Content-Type: text/plain; charset="utf-8"'
    bnl = nl.encode("ascii")
    if html:
        html_cte, html_body = _body(html)
        boundary = f"=_leadlang_{delivery.key}"
        parameter = f'boundary="{boundary}"'
        content_type = f"Content-Type: multipart/alternative; {parameter}"
        if len(content_type) > layout.max_line_length:
            if len(parameter) + 1 > layout.max_line_length:
                return None
            content_type = f"Content-Type: multipart/alternative;{nl} {parameter}"
        out += [b"MIME-Version: 1.0" + bnl, content_type.encode("ascii") + bnl]
        names += ["MIME-Version", "Content-Type"]
        if unsubscribe is not None:
            out.append(_unstructured(layout, "List-Unsubscribe", unsubscribe))
            names.append("List-Unsubscribe")
        out += [
            bnl,
            f"--{boundary}{nl}".encode("ascii"),
            text_type + bnl,
            f"Content-Transfer-Encoding: {text_cte}{nl}{nl}".encode("ascii"),
            text_body.replace("\n", nl).encode("ascii"),
            f"{nl}--{boundary}{nl}".encode("ascii"),
            b'Content-Type: text/html; charset="utf-8"' + bnl,
            f"Content-Transfer-Encoding: {html_cte}{nl}MIME-Version: 1.0{nl}{nl}".encode("ascii"),
            html_body.replace("\n", nl).encode("ascii"),
            f"{nl}--{boundary}--{nl}".encode("ascii"),
        ]
    else:
        out += [
            text_type + bnl,
            f"Content-Transfer-Encoding: {text_cte}{nl}MIME-Version: 1.0{nl}".encode("ascii"),
        ]
        names += ["Content-Type", "Content-Transfer-Encoding", "MIME-Version"]
        if unsubscribe is not None:
            out.append(_unstructured(layout, "List-Unsubscribe", unsubscribe))
            names.append("List-Unsubscribe")
        out += [bnl, text_body.replace("\n", nl).encode("ascii")]
    return EmailBytes(b"".join(out), sender, recipient, tuple(names))


def _unstructured(layout: Layout, name: str, value: str) -> bytes:
    """`Name: value` and the line end, as the standard library folds an unstructured header
    (written directly when it needs no folding nor encoding)."""
    plain = value.isascii() and value.isprintable() and "=?" not in value and value != ""
    if plain and len(name) + 2 + len(value) <= layout.max_line_length:
        return f"{name}: {value}{layout.linesep}".encode("ascii")
    if (
        plain
        and layout.one_line_unsubscribe
        and name.lower() == "list-unsubscribe"
        and len(name) + len(value) < 996
    ):
        return f"{name}: {value}{layout.linesep}".encode("ascii")
    return layout.fold(name, value)


def _body(body: str) -> tuple[str, str]:
    """(Content-Transfer-Encoding, the encoded body with "\n" line ends), as `set_content`
    makes them with `_transfer_encoding`'s choice."""
    lines = body.encode("utf-8").splitlines()
    if _transfer_encoding(body) == "7bit":
        return "7bit", b"\n".join(lines).decode("ascii") + "\n"
    return "quoted-printable", _quoted_printable(b"\n".join(lines).decode("latin-1") + "\n")


def _quoted_printable(body: str, maxlinelen: int = 998) -> str:
    """`email.quoprimime.body_encode(body, maxlinelen)` (what `set_content` calls), with the
    characters to quote found by `str.replace` and a regular expression instead of a lookup
    per character."""
    body = body.replace("=", "=3D")  # (HTML has many: attributes)
    if _QP_QUOTED.search(body):
        body = _QP_QUOTED.sub(_qp_quote, body)
    encoded: list[str] = []
    append = encoded.append
    maxlinelen1 = maxlinelen - 1
    for line in body.splitlines():
        start = 0
        laststart = len(line) - 1 - maxlinelen
        while start <= laststart:
            stop = start + maxlinelen1
            if line[stop - 2] == "=":
                append(line[start : stop - 1])
                start = stop - 2
            elif line[stop - 1] == "=":
                append(line[start:stop])
                start = stop - 1
            else:
                append(line[start:stop] + "=")
                start = stop
        if line and line[-1] in " \t":
            room = start - laststart
            if room >= 3:
                q = f"={ord(line[-1]):02X}"
            elif room == 2:
                q = line[-1] + "=\n"
            else:
                q = f"=\n={ord(line[-1]):02X}"
            append(line[start:-1] + q)
        else:
            append(line[start:])
    if body[-1] in "\r\n":
        append("")
    return "\n".join(encoded)


def _qp_quote(match: re.Match[str]) -> str:
    return f"={ord(match.group()):02X}"


# What the fast path writes as it is: a key of letters, digits, `_` and `-` (the boundary),
# a field name of printable ASCII without `:`, and addresses as `local@domain` or
# `Name <local@domain>` in dot-atoms (no quoting, no comments, nothing to encode).
_PLAIN_KEY = re.compile(r"[0-9A-Za-z_-]{1,64}")
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_SIMPLE_ADDRESS = re.compile(
    rf"{_ATOM}(?: {_ATOM})* <(?P<spec>{_DOT_ATOM}@{_DOT_ATOM})>|{_DOT_ATOM}@{_DOT_ATOM}"
)
# Header names the standard library parses, or allows once: `build_message` decides.
_STRUCTURED = frozenset(HeaderRegistry().registry) | {"mime-version"}
# (quoprimime's body map: everything but tab, line ends and printable ASCII other than `=`,
# which is quoted first)
_QP_QUOTED = re.compile(r"[^\t\n\r -~]")


_FILE_LAYOUT = Layout(_POLICY)  # (what `message.as_bytes()` writes)


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
    if len(at) == 20 and at[10] == "T" and at[19] == "Z" and at[:4].isdigit():
        with contextlib.suppress(ValueError):  # (the engine's own format, parsed quickly)
            return datetime.fromisoformat(at[:19]).replace(tzinfo=UTC)
    try:
        return datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(UTC)
