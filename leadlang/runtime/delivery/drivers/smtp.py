"""Email over SMTP (RUNTIME.md section 4) with aiosmtplib: TLS, AUTH, a small connection pool.

The message is the maildir driver's (`build_message`: `Message-ID: <KEY@leadlang>`, `Date`
the instant of the send, multipart text + html, the content's `headers` such as
`List-Unsubscribe` and `List-Unsubscribe-Post`), so every attempt sends the same bytes and a
receiver can recognise a retry by its `Message-ID`. A configured `mailto_unsubscribe` joins
`List-Unsubscribe` as a `<mailto:...>` entry; with DKIM configured the message is signed
(dkimpy, relaxed/relaxed) over From, To, Subject, Date, Message-ID, the MIME headers and both
List-Unsubscribe headers.

The bytes are written directly (`email_bytes`: the very bytes the email package writes, about
0.1 ms instead of 1.5 ms), on the event loop; a message it leaves to the email package (an
address that is not `Name <local@domain>`, a custom header the package treats specially) and
DKIM signing (RSA) are done in a thread.

Outcomes: a 5xx on RCPT is final with an error starting `bounced:` (the daemon records
`message_bounced`); a 5xx on MAIL FROM or DATA is final; 4xx answers, connection failures,
TLS and AUTH failures (the server's or the config's, not the message's) are retries.

Connections are reused: at most `connections` open at once, each carrying one transaction at
a time; one that failed or was closed by the server is dropped, and a send that finds its
reused connection dead tries once more on a fresh one within the same attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from email.message import EmailMessage
from email.policy import EmailPolicy
from typing import Any

import aiosmtplib
import attrs
import dkim

from leadlang.runtime.delivery.drivers.maildir import (
    UNBUILDABLE,
    EmailBytes,
    Layout,
    build_message,
    email_bytes,
)
from leadlang.runtime.delivery.outbox import Delivery, Outcome

# Signed when present (From always): what a receiver shows, threads on, or acts on.
DKIM_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)


class _WirePolicy(EmailPolicy):
    """CRLF lines; `List-Unsubscribe` kept on one line (RFC 5322 allows 998 characters):
    folded at 78 a long signed link starts on a continuation line, which some parsers
    (Python's own) read back with a leading space."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        text = str(value)
        if name.lower() == "list-unsubscribe" and text.isascii() and len(name) + len(text) < 996:
            return f"{name}: {' '.join(text.split())}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_WIRE = _WirePolicy(linesep="\r\n")
_LAYOUT = Layout(_WIRE, one_line_unsubscribe=True)


@attrs.frozen
class DkimKey:
    selector: str
    domain: str
    private_key: bytes = attrs.field(repr=False)  # PEM

    def sign(self, data: bytes, headers: list[bytes]) -> bytes:
        """The `DKIM-Signature:` header line(s) for `data` (CRLF line ends)."""
        return dkim.sign(
            data,
            self.selector.encode(),
            self.domain.encode(),
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=headers,
        )


class _Unsendable(Exception):
    """The message cannot be sent as it is: a final failure."""


class SmtpDriver:
    def __init__(
        self,
        host: str,
        port: int,
        from_address: str,
        *,
        starttls: bool = False,
        tls: bool = False,
        tls_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        mailto_unsubscribe: str | None = None,
        dkim_key: DkimKey | None = None,
        connections: int = 4,
        timeout: float = 30.0,
    ) -> None:
        if starttls and tls:
            raise ValueError("`starttls` and `tls` exclude each other")
        self.host = host
        self.port = port
        self.from_address = from_address
        self.starttls = starttls
        self.tls = tls
        self.tls_context = tls_context
        self.username = username
        self.password = password
        self.mailto_unsubscribe = mailto_unsubscribe
        self.dkim_key = dkim_key
        self.connections = max(1, connections)
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(self.connections)
        self._idle: list[aiosmtplib.SMTP] = []
        self._closed = False

    async def deliver(self, delivery: Delivery) -> Outcome:
        if not delivery.to:
            return Outcome.failed("no email address")
        try:
            quick = None if self.dkim_key is not None else self._quick(delivery)
            if quick is not None:  # (a tenth of a millisecond: on the loop)
                sender, recipient, data = quick.sender, quick.recipient, quick.data
            else:  # milliseconds of CPU (the email package, DKIM's RSA): in a thread
                sender, recipient, data = await asyncio.to_thread(self.prepare, delivery)
        except _Unsendable as error:
            return Outcome.failed(str(error))
        return await self._send(sender, recipient, data)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for client in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), 2.0)
            client.close()

    def prepare(self, delivery: Delivery) -> tuple[str, str, bytes]:
        """(envelope sender, envelope recipient, the bytes of the message) for a delivery."""
        built = self._quick(delivery) or self.build(delivery)
        data = built.data
        if self.dkim_key is not None:
            written = {name.lower() for name in built.headers}
            present = [name.lower().encode() for name in DKIM_HEADERS if name.lower() in written]
            data = self.dkim_key.sign(data, present) + data
        return built.sender, built.recipient, data

    def build(self, delivery: Delivery) -> EmailBytes:
        """The message as the email package builds and writes it (`build_message`): what
        `email_bytes` writes directly when it can, and the judge of a message it cannot."""
        try:
            message = build_message(delivery, self.from_address)
            sender = _address(message, "From")
            recipient = _address(message, "To")
            if self.mailto_unsubscribe:
                _add_unsubscribe(message, self.mailto_unsubscribe)
            data = message.as_bytes(policy=_WIRE)
        except UNBUILDABLE as error:
            raise _Unsendable(f"cannot build the email: {error}") from error
        return EmailBytes(data, sender, recipient, tuple(message.keys()))

    def _quick(self, delivery: Delivery) -> EmailBytes | None:
        """The message written directly (`email_bytes`), or None when the email package must
        build it (and say what is wrong with it)."""
        try:
            return email_bytes(delivery, self.from_address, _LAYOUT, self.mailto_unsubscribe)
        except Exception:
            return None  # (the email package's path finds the same fault and names it)

    async def _send(self, sender: str, recipient: str, data: bytes) -> Outcome:
        for fresh in (False, True):
            self._bind_loop()
            async with self._slots:
                # (the second try, after a reused connection turned out dead, is made on a
                # fresh connection: the next idle one may be just as dead)
                client = None if fresh else self._take_idle()
                reused = client is not None
                healthy = False
                try:
                    if client is None:
                        client = await self._connect()
                    await client.sendmail(sender, [recipient], data)
                    healthy = True
                    return Outcome.sent()
                except aiosmtplib.SMTPRecipientsRefused as refused:
                    first = refused.recipients[0]
                    healthy = first.code != 421
                    if 500 <= first.code < 600:
                        return _answer(first.code, first.message, "bounced")
                    return _answer(first.code, first.message, "the server deferred the recipient")
                except aiosmtplib.SMTPSenderRefused as error:
                    healthy = error.code != 421
                    return _answer(error.code, error.message, "the server refused the sender")
                except aiosmtplib.SMTPDataError as error:
                    healthy = error.code != 421
                    return _answer(error.code, error.message, "the server rejected the message")
                except aiosmtplib.SMTPResponseException as error:
                    # HELO, AUTH or a connect banner: about the server or the config
                    return Outcome.retry(f"SMTP {error.code} {error.message}".strip())
                except aiosmtplib.SMTPServerDisconnected as error:
                    # (how aiosmtplib reports a connection lost once made; it reports one it
                    # could not make as SMTPConnectError, caught below)
                    if reused:
                        continue  # the server closed an idle connection: a fresh one
                    return Outcome.retry(_describe(error))
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                    return Outcome.retry(_describe(error))
                except ValueError as error:  # an address SMTP cannot carry (not ASCII)
                    return Outcome.failed(f"cannot send to this address: {error}")
                finally:
                    # (also on cancellation: a half-done transaction leaves the connection
                    # in an unknown state, so it is dropped)
                    if client is not None:
                        self._put_back(client, healthy)
        return Outcome.retry("the SMTP connection kept closing")  # pragma: no cover

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.tls,
            start_tls=self.starttls,
            tls_context=self.tls_context,
            timeout=self.timeout,
        )
        try:
            await client.connect()
        except BaseException:
            client.close()
            raise
        return client

    def _bind_loop(self) -> None:
        # The pool belongs to one event loop (tests run several): a new loop starts afresh.
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            for client in self._idle:
                with contextlib.suppress(Exception):
                    client.close()
            self._loop, self._idle = loop, []
            self._slots = asyncio.Semaphore(self.connections)

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
            client.close()
        return None

    def _put_back(self, client: aiosmtplib.SMTP, healthy: bool) -> None:
        if healthy and client.is_connected and not self._closed:
            self._idle.append(client)
        else:
            with contextlib.suppress(Exception):
                client.close()


def _answer(code: int, text: str, what: str) -> Outcome:
    error = f"{what}: {code} {' '.join(text.split())}".strip()
    if 500 <= code < 600:
        return Outcome.failed(error)
    return Outcome.retry(error)


def _describe(error: BaseException) -> str:
    # (every exception that reaches it has a text: aiosmtplib's all take one and wrap the
    # socket's and TLS's, such as the textless ConnectionResetError of a TLS handshake cut)
    return f"{type(error).__name__}: {error}"


def _address(message: EmailMessage, name: str) -> str:
    header = message[name]
    addresses = tuple(getattr(header, "addresses", ()))
    if len(addresses) != 1 or not addresses[0].domain or header.defects:
        raise _Unsendable(f"`{name}` is not one email address: {str(header)!r}")
    return str(addresses[0].addr_spec)


def _add_unsubscribe(message: EmailMessage, mailto: str) -> None:
    entry = f"<{mailto if mailto.lower().startswith('mailto:') else 'mailto:' + mailto}>"
    current = message["List-Unsubscribe"]
    if current is not None:
        del message["List-Unsubscribe"]
        entry = f"{current}, {entry}"
    message["List-Unsubscribe"] = entry
