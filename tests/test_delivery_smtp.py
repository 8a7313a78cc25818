"""The smtp driver against a real aiosmtpd server: STARTTLS and implicit TLS with a
self-signed certificate made here, AUTH, refused recipients, DKIM checked with dkimpy."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import email
import ipaddress
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import attrs
import dkim
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from leadlang.runtime.delivery.drivers import SmtpDriver, make_drivers
from leadlang.runtime.delivery.outbox import Delivery, Driver, Outcome
from leadlang.runtime.delivery.worker import OutboxWorker
from tests.deliveries import KEY, UNREADABLE_ADDRESSES, ann_email
from tests.test_delivery_worker import Clock, MemoryOutbox

pytestmark = pytest.mark.timeout(30)

USER, PASSWORD = "shop", "correct horse"
FROM = "Shop <shop@example.com>"
ONE_CLICK = {
    "List-Unsubscribe": "<https://track.example.com/u/tok3n>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


# -- the server --------------------------------------------------------------------------


@attrs.frozen
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any
    tls: bool
    authenticated: bool

    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data.replace(b"\r\n", b"\n"), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class Mailbox:
    """An aiosmtpd handler: refused@ gets 550 on RCPT, syntax@ 500, later@ 451, closing@ 421;
    DATA answers from
    `data_answers` first (e.g. a 421), then 250 and keeps the message; MAIL on a connection in
    `hang_up_at_mail` (on any, with `hang_up_at_every_mail`) closes it unanswered. With a `Counting` controller it also knows the
    connections open now and each one ever opened, and their transports."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.data_answers: list[str] = []
        self.rcpt_peers: list[Any] = []  # the connection of each RCPT, in order
        self.data_delays: list[float] = []  # seconds DATA waits before its answer
        self.opened: list[Any] = []  # each connection, as it was made
        self.open: set[Any] = set()  # the connections not yet closed
        self.quits: list[Any] = []  # the connection of each QUIT, in order
        self.quit_delay = 0.0  # seconds QUIT waits before its answer
        self.quits_answered: list[Any] = []  # each QUIT answered while its connection was open
        self.transports: dict[Any, Any] = {}  # each connection's transport (to close it)
        self.hang_up_at_mail: set[Any] = set()  # connections closed, unanswered, at MAIL
        self.hang_up_at_every_mail = False  # (every connection, new ones too)
        self.hung_up: list[Any] = []  # the connections closed so, in order

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quits.append(session.peer)
        await asyncio.sleep(self.quit_delay)
        if session.peer in self.open:
            self.quits_answered.append(session.peer)
        return "221 Bye"

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.hang_up_at_every_mail or session.peer in self.hang_up_at_mail:
            self.hung_up.append(session.peer)
            server.transport.close()  # (the answer below is never written)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        self.rcpt_peers.append(session.peer)
        if address.startswith("closing@"):
            return "421 4.3.2 service shutting down"
        if address.startswith("syntax@"):
            return "500 5.5.2 syntax error"
        if address.startswith("refused@"):
            return "550 5.1.1 <refused@example.com>: no such user here"
        if address.startswith("later@"):
            return "451 4.3.0 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_delays:
            await asyncio.sleep(self.data_delays.pop(0))
        if self.data_answers:
            return self.data_answers.pop(0)
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content,
                session.peer,
                session.ssl is not None,
                bool(session.authenticated),
            )
        )
        return "250 2.0.0 OK queued"


class _CountingSMTP(SMTP):
    def connection_made(self, transport: Any) -> None:
        starting = self.transport is None  # (not the second call of a STARTTLS)
        super().connection_made(transport)
        if starting and isinstance(self.event_handler, Mailbox):
            self.event_handler.opened.append(self.session.peer)  # type: ignore[union-attr]
            self.event_handler.open.add(self.session.peer)  # type: ignore[union-attr]
            self.event_handler.transports[self.session.peer] = transport  # type: ignore[union-attr]

    def connection_lost(self, error: Exception | None) -> None:
        peer = self.session.peer if self.session is not None else None
        super().connection_lost(error)
        if isinstance(self.event_handler, Mailbox):
            self.event_handler.open.discard(peer)


class Counting(Controller):
    """A controller whose Mailbox knows the connections open (`open`) and opened (`opened`)."""

    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, **self.SMTP_kwargs)


def until(condition: Any, seconds: float = 10.0) -> bool:
    """Whether `condition()` holds within `seconds` (the server runs in its own thread)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@attrs.define
class Server:
    mailbox: Mailbox
    port: int
    controller: Controller


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (cryptography, else openssl)."""
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
                *("-keyout", str(key_path), "-out", str(cert_path), "-subj", "/CN=localhost"),
                *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
            ],
            check=True,
            capture_output=True,
        )
        return cert_path, key_path
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def make_dkim_key() -> tuple[str, bytes]:
    """(an RSA private key PEM, the DNS TXT record of its public key) (cryptography, else openssl)."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        pem = subprocess.run(["openssl", "genrsa", "2048"], check=True, capture_output=True).stdout
        public = subprocess.run(
            ["openssl", "rsa", "-pubout", "-outform", "DER"],
            input=pem,
            check=True,
            capture_output=True,
        ).stdout
        return pem.decode(), b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    text = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return text, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def dkim_key() -> tuple[str, bytes]:
    return make_dkim_key()


@pytest.fixture
def start_server(certificate: tuple[Path, Path]) -> Iterator[Any]:
    started: list[Controller] = []

    def start(mode: str = "plain", **options: Any) -> Server:
        mailbox = Mailbox()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
        kwargs: dict[str, Any] = {}
        if mode == "starttls":
            kwargs = {
                "tls_context": context,
                "require_starttls": True,
                "authenticator": authenticate,
                "auth_required": True,
            }
        elif mode == "tls":
            # (aiosmtpd does not count implicit TLS for `auth_require_tls`)
            kwargs = {
                "ssl_context": context,
                "authenticator": authenticate,
                "auth_required": True,
                "auth_require_tls": False,
            }
        kwargs.update(options)
        port = free_port()
        controller = Counting(mailbox, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        started.append(controller)
        assert until(lambda: not mailbox.open)  # (`start` made a connection of its own)
        mailbox.opened.clear()
        return Server(mailbox, port, controller)

    yield start
    for controller in started:
        controller.stop()


def mail(key: str = KEY, **changes: Any) -> Delivery:
    """Ann's email with the one-click unsubscribe headers serve adds."""
    return ann_email(key, headers=dict(ONE_CLICK), **changes)


def smtp(server: Server, tmp_path: Path, secrets: Any = None, **settings: Any) -> Driver:
    table = {"driver": "smtp", "host": "127.0.0.1", "port": server.port, "from": FROM}
    table.update(settings)
    return make_drivers({"email": table}, tmp_path, secrets=secrets or {})["email"]


async def deliver_all(driver: Driver, *deliveries: Delivery) -> list[Outcome]:
    try:
        return list(await asyncio.gather(*(driver.deliver(d) for d in deliveries)))
    finally:
        await driver.close()


def run(driver: Driver, *deliveries: Delivery) -> list[Outcome]:
    return asyncio.run(deliver_all(driver, *deliveries))


# -- sending -----------------------------------------------------------------------------


def test_starttls_auth_and_a_multipart_message(
    start_server: Any, tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    server = start_server("starttls")
    driver = smtp(
        server,
        tmp_path,
        starttls=True,
        ca_file=str(certificate[0]),
        username=USER,
        password=PASSWORD,
        mailto_unsubscribe="unsubscribe@example.com",
    )
    assert run(driver, mail()) == [Outcome.sent()]
    [got] = server.mailbox.received
    assert got.tls and got.authenticated
    assert (got.mail_from, got.rcpt_tos) == ("shop@example.com", ["ann@example.com"])
    message = got.message()
    assert message["Message-ID"] == f"<{KEY}@leadlang>"
    assert message["From"] == FROM
    assert message["To"] == "Ann Example <ann@example.com>"
    assert message["Subject"] == "Your order, Ann"
    assert message["List-Unsubscribe"] == (
        "<https://track.example.com/u/tok3n>, <mailto:unsubscribe@example.com>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and text.get_content() == "Thanks, Ann!\n"
    assert html is not None and html.get_content() == "<p>Thanks, <b>Ann</b>!</p>\n"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls(start_server: Any, tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    server = start_server("tls")
    driver = smtp(
        server,
        tmp_path,
        tls=True,
        ca_file=str(certificate[0]),
        username=USER,
        password=PASSWORD,
    )
    assert run(driver, mail()) == [Outcome.sent()]
    [got] = server.mailbox.received
    assert got.authenticated  # (the server speaks nothing but TLS)


def test_without_starttls_a_server_offering_it_gets_plain_text(
    start_server: Any, tmp_path: Path
) -> None:
    """`starttls` unset means no STARTTLS, not "when the server offers it"."""
    server = start_server("starttls", require_starttls=False, auth_required=False)
    assert run(smtp(server, tmp_path), mail()) == [Outcome.sent()]
    [got] = server.mailbox.received
    assert not got.tls


def test_a_mailto_unsubscribe_may_say_mailto_in_capitals(tmp_path: Path) -> None:
    """(The email package's way to the bytes, which judges the direct one.)"""
    driver = SmtpDriver("h", 25, FROM, mailto_unsubscribe="MAILTO:unsubscribe@example.com")
    message = email.message_from_bytes(driver.build(mail()).data, policy=policy.default)
    assert message["List-Unsubscribe"] == (
        "<https://track.example.com/u/tok3n>, <MAILTO:unsubscribe@example.com>"
    )


def test_a_multi_line_answer_is_one_line_in_the_error(start_server: Any, tmp_path: Path) -> None:
    server = start_server()
    server.mailbox.data_answers.append("554-5.7.1 rejected\r\n554 5.7.1 see the policy")
    [outcome] = run(smtp(server, tmp_path), mail())
    assert outcome.status == "failed" and outcome.error is not None
    assert "\n" not in outcome.error and outcome.error.startswith("the server rejected")


def test_a_certificate_not_trusted_is_a_retry(start_server: Any, tmp_path: Path) -> None:
    server = start_server("starttls")
    driver = smtp(server, tmp_path, starttls=True, username=USER, password=PASSWORD)
    [outcome] = run(driver, mail())
    assert outcome.status == "retry" and "certificate" in (outcome.error or "").lower()
    assert server.mailbox.received == []


def test_a_wrong_password_is_a_retry(
    start_server: Any, tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    server = start_server("starttls")
    driver = smtp(
        server,
        tmp_path,
        starttls=True,
        ca_file=str(certificate[0]),
        username=USER,
        password="wrong",
    )
    [outcome] = run(driver, mail())
    assert outcome.status == "retry" and "535" in (outcome.error or "")


def test_an_html_only_email_gets_a_text_part(start_server: Any, tmp_path: Path) -> None:
    server = start_server()
    content = {
        "subject": "Hi",
        "text": None,
        "html": '<p>See <a href="https://x.example/a">this</a></p>',
    }
    assert run(smtp(server, tmp_path), mail(content=content)) == [Outcome.sent()]
    message = server.mailbox.received[0].message()
    text = message.get_body(("plain",))
    assert text is not None and text.get_content() == "See this (https://x.example/a)\n"


def test_550_on_rcpt_is_a_bounce_and_451_a_retry(start_server: Any, tmp_path: Path) -> None:
    server = start_server()
    refused = mail("1" * 32, to="refused@example.com")
    later = mail("2" * 32, to="later@example.com")
    fine = mail("3" * 32)
    bounced, retried, sent = run(smtp(server, tmp_path), refused, later, fine)
    assert bounced.status == "failed"
    assert bounced.error == "bounced: 550 5.1.1 <refused@example.com>: no such user here"
    assert retried == Outcome.retry(
        "the server deferred the recipient: 451 4.3.0 mailbox busy, try again later"
    )
    assert sent == Outcome.sent()
    assert [got.message()["Message-ID"] for got in server.mailbox.received] == [
        f"<{'3' * 32}@leadlang>"
    ]


def test_421_then_250_in_the_worker_delivers_once_with_the_same_message_id(
    start_server: Any, tmp_path: Path
) -> None:
    server = start_server()
    server.mailbox.data_answers.append("421 4.3.2 service shutting down, try later")
    store, clock = MemoryOutbox(), Clock()
    store.add(mail())
    store.add(mail("4" * 32, to="refused@example.com"))

    async def go() -> None:
        worker = OutboxWorker(store, {"email": smtp(server, tmp_path)}, clock, base=0.001)
        try:
            for _ in range(2):
                clock.now = max(row.next_attempt for row in store.rows.values())
                await worker.run_once()
        finally:
            await worker.close()

    asyncio.run(go())
    row = store.rows[KEY]
    assert (row.status, row.attempts) == ("sent", 1)
    bounced = store.rows["4" * 32]
    assert bounced.status == "dead" and (bounced.error or "").startswith("bounced: 550")
    [got] = server.mailbox.received
    assert got.message()["Message-ID"] == f"<{KEY}@leadlang>"


def test_a_500_on_rcpt_is_a_bounce_too(start_server: Any, tmp_path: Path) -> None:
    server = start_server()
    [bounced] = run(smtp(server, tmp_path), mail(to="syntax@example.com"))
    assert bounced == Outcome.failed("bounced: 500 5.5.2 syntax error")


@pytest.mark.parametrize("where", ["rcpt", "data"])
def test_a_connection_answered_421_is_not_used_again(
    start_server: Any, tmp_path: Path, where: str
) -> None:
    """421: the server is closing the connection, so the next send opens a new one (other
    answers keep theirs)."""
    server = start_server()
    driver = smtp(server, tmp_path)
    first = mail("1" * 32, to="closing@example.com" if where == "rcpt" else "ann@example.com")
    if where == "data":
        server.mailbox.data_answers.append("421 4.3.2 service shutting down")

    async def go() -> list[Outcome]:
        try:
            outcomes = [await driver.deliver(first)]
            outcomes.append(await driver.deliver(mail("2" * 32, to="later@example.com")))
            outcomes.append(await driver.deliver(mail("3" * 32)))
            return outcomes
        finally:
            await driver.close()

    closed, deferred, sent = asyncio.run(go())
    assert closed.status == deferred.status == "retry" and sent == Outcome.sent()
    peers = server.mailbox.rcpt_peers
    assert len(peers) == 3 and peers[1] != peers[0] and peers[2] == peers[1]


def test_a_send_cut_short_leaves_its_connection_closed(start_server: Any, tmp_path: Path) -> None:
    """A send cancelled mid-transaction (the worker's timeout) leaves its connection in an
    unknown state: it is closed, and the next send opens a new one."""
    server = start_server()
    server.mailbox.data_delays.append(5.0)
    driver = smtp(server, tmp_path)
    peers = server.mailbox.rcpt_peers

    async def go() -> Outcome:
        try:
            sending = asyncio.ensure_future(driver.deliver(mail("1" * 32)))
            while not peers:  # (the transaction has begun, whatever the machine's load)
                await asyncio.sleep(0.02)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(sending, 0.3)
            assert until(lambda: peers[0] not in server.mailbox.open)
            return await driver.deliver(mail("2" * 32))
        finally:
            await driver.close()

    assert asyncio.run(go()) == Outcome.sent()
    assert len(peers) == 2 and peers[0] != peers[1]
    assert [got.message()["Message-ID"] for got in server.mailbox.received][-1] == (
        f"<{'2' * 32}@leadlang>"
    )


def test_connections_are_reused_and_at_most_four(start_server: Any, tmp_path: Path) -> None:
    server = start_server()
    driver = smtp(server, tmp_path)

    async def go() -> None:
        try:
            many = [mail(f"{n:032x}") for n in range(12)]
            assert set(await asyncio.gather(*(driver.deliver(d) for d in many))) == {Outcome.sent()}
            for n in range(3):
                assert await driver.deliver(mail(f"{100 + n:032x}")) == Outcome.sent()
        finally:
            await driver.close()

    asyncio.run(go())
    peers = [got.peer for got in server.mailbox.received]
    assert len(peers) == 15
    assert len(set(peers)) <= 4
    assert set(peers[12:]) <= set(peers[:12])  # the later sends reused an open connection


def test_a_connection_the_server_closed_is_replaced(start_server: Any, tmp_path: Path) -> None:
    server = start_server(timeout=0.3)  # the server drops connections idle for 0.3 s
    driver = smtp(server, tmp_path)

    async def go() -> list[Outcome]:
        try:
            first = await driver.deliver(mail("5" * 32))
            await asyncio.sleep(0.8)
            second = await driver.deliver(mail("6" * 32))
            return [first, second]
        finally:
            await driver.close()

    assert asyncio.run(go()) == [Outcome.sent(), Outcome.sent()]
    peers = [got.peer for got in server.mailbox.received]
    assert len(peers) == 2 and peers[0] != peers[1]


@pytest.mark.parametrize("idle", [1, 2])
def test_after_a_server_restart_a_send_finds_its_idle_connections_dead_and_opens_a_new_one(
    tmp_path: Path, idle: int
) -> None:
    """The server restarts while the driver holds `idle` open connections that have not yet
    seen it go: the next send finds its reused connection dead and sends on a fresh one, in
    the same attempt."""
    mailbox, port = Mailbox(), free_port()
    before = Controller(mailbox, hostname="127.0.0.1", port=port)
    after = Controller(mailbox, hostname="127.0.0.1", port=port)
    before.start()
    driver = smtp(Server(mailbox, port, before), tmp_path)

    async def go() -> Outcome:
        try:
            first = [mail(f"{n:032x}") for n in range(idle)]
            sent = await asyncio.gather(*(driver.deliver(d) for d in first))
            assert set(sent) == {Outcome.sent()}
            # (no await from here to the send: the loop does not see the connections close)
            before.stop()
            after.start()
            return await driver.deliver(mail("f" * 32))
        finally:
            await driver.close()

    try:
        assert asyncio.run(go()) == Outcome.sent()
    finally:
        after.stop()
    assert mailbox.received[-1].message()["Message-ID"] == f"<{'f' * 32}@leadlang>"


def test_a_server_that_never_answers_is_a_retry_after_the_drivers_timeout(
    tmp_path: Path,
) -> None:
    """One connection per attempt: a fresh connection that fails is not tried again at once,
    so a dead server costs an attempt one timeout, and the worker's backoff decides when to
    come back."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # (connections are made, and never answered)
        driver = SmtpDriver("127.0.0.1", silent.getsockname()[1], FROM, timeout=0.5)

        async def go() -> Outcome:
            try:
                return await asyncio.wait_for(driver.deliver(mail()), 5)
            finally:
                await driver.close()

        outcome = asyncio.run(go())
        silent.setblocking(False)
        made = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                silent.accept()[0].close()
                made += 1
    assert outcome.status == "retry" and "Timeout" in (outcome.error or "")
    assert made == 1


def test_the_driver_checks_its_own_arguments() -> None:
    with pytest.raises(ValueError, match="`starttls` and `tls` exclude each other"):
        SmtpDriver("h", 465, FROM, starttls=True, tls=True)
    assert SmtpDriver("h", 25, FROM, connections=0).connections == 1


def test_no_server_is_a_retry(tmp_path: Path) -> None:
    driver = make_drivers(
        {"email": {"driver": "smtp", "host": "127.0.0.1", "port": free_port(), "from": FROM}},
        tmp_path,
    )["email"]
    [outcome] = run(driver, mail())
    assert outcome.status == "retry"
    assert (outcome.error or "").startswith("SMTPConnectError: Error connecting to 127.0.0.1")


@pytest.mark.parametrize(
    "to", ["ann@, bob@example.com", "ann@example.com, bob@example.com", "Ann <ann@example.com"]
)
def test_a_bad_address_is_final(start_server: Any, tmp_path: Path, to: str) -> None:
    server = start_server()
    [outcome] = run(smtp(server, tmp_path), mail(to=to))
    assert outcome.status == "failed" and "`To` is not one email address" in (outcome.error or "")
    assert not server.mailbox.received
    [outcome] = run(smtp(server, tmp_path), mail(to=None))
    assert outcome == Outcome.failed("no email address")


@pytest.mark.parametrize(
    "to",
    UNREADABLE_ADDRESSES,
)
def test_an_address_the_email_package_cannot_read_is_final(
    start_server: Any, tmp_path: Path, to: str
) -> None:
    """A typo the email package stumbles on (IndexError on `Ann <` or a lone `"`,
    AttributeError on an unclosed domain literal or a display name ending `.:`, TypeError on a
    list ending `.\\`) fails the send
    for good, as a bad address does, and nothing is sent; it is not retried for hours as if
    the server were down, with the parser's exception as its error."""
    server = start_server()
    [outcome] = run(smtp(server, tmp_path), mail(to=to))
    assert outcome.status == "failed"
    assert (outcome.error or "").startswith(("cannot build the email", "`To` is not one"))
    assert not server.mailbox.received


def test_text_that_cannot_be_encoded_fails_for_good_naming_it(
    start_server: Any, tmp_path: Path
) -> None:
    """Text that no encoding can write (a lone UTF-16 surrogate) cannot be sent: the email
    fails for good at once with the encoder's reason, and is not retried."""
    server = start_server()
    [outcome] = run(smtp(server, tmp_path), mail(content={"subject": "Hi", "text": "Hi \ud800\n"}))
    assert outcome.status == "failed"
    assert (outcome.error or "").startswith("cannot build the email: 'utf-8' codec can't encode")
    assert not server.mailbox.received


# -- DKIM --------------------------------------------------------------------------------


def test_dkim_signs_the_one_click_headers(
    start_server: Any,
    tmp_path: Path,
    dkim_key: tuple[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pem, record = dkim_key
    monkeypatch.setenv("LEADLANG_TEST_DKIM_KEY", pem)
    server = start_server()
    driver = smtp(
        server,
        tmp_path,
        dkim_selector="s2025",
        dkim_domain="example.com",
        dkim_private_key_env="LEADLANG_TEST_DKIM_KEY",
        mailto_unsubscribe="mailto:unsubscribe@example.com?subject=unsubscribe",
    )
    assert run(driver, mail()) == [Outcome.sent()]
    data = server.mailbox.received[0].data

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"s2025._domainkey.example.com." else None

    assert dkim.verify(data, dnsfunc=dns)
    message = server.mailbox.received[0].message()
    signature = " ".join(str(message["DKIM-Signature"]).split())
    tags = dict(
        part.strip().split("=", 1) for part in signature.replace(" ", "").split(";") if part
    )
    assert tags["d"] == "example.com" and tags["s"] == "s2025"
    assert tags["c"] == "relaxed/relaxed"  # (survives a relay re-folding the headers)
    signed = set(tags["h"].lower().split(":"))
    assert {"from", "to", "subject", "message-id"} <= signed
    assert {"list-unsubscribe", "list-unsubscribe-post"} <= signed
    assert "mailto:unsubscribe@example.com?subject=unsubscribe" in message["List-Unsubscribe"]
    tampered = data.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"X-No: 1")
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_dkim_signs_the_headers_present_and_names_no_other(
    start_server: Any,
    tmp_path: Path,
    dkim_key: tuple[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The signature covers the headers a message has (its Reply-To when it has one) and
    names no other, so a list or relay that adds a header the message lacked (a Reply-To)
    leaves it valid. A message only the email package writes (here a `Sender` header among
    the content's) is signed the same way."""
    pem, record = dkim_key
    monkeypatch.setenv("LEADLANG_TEST_DKIM_KEY", pem)
    server = start_server()
    driver = smtp(
        server,
        tmp_path,
        dkim_selector="s2025",
        dkim_domain="example.com",
        dkim_private_key_env="LEADLANG_TEST_DKIM_KEY",
    )
    content = {"subject": "Hi", "text": "Hi Ann\n", "headers": dict(ONE_CLICK)}
    plain = mail("1" * 32, content=content)
    replying = mail("2" * 32, content={**content, "reply_to": "Help <help@example.com>"})
    sender = {**content, "headers": {**ONE_CLICK, "Sender": "Robot <robot@example.com>"}}
    assert run(driver, plain, replying, mail("3" * 32, content=sender)) == [Outcome.sent()] * 3

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"s2025._domainkey.example.com." else None

    signed: dict[str, set[str]] = {}
    data: dict[str, bytes] = {}
    for got in server.mailbox.received:
        assert dkim.verify(got.data, dnsfunc=dns)
        message = got.message()
        which = str(message["Message-ID"])[1]  # (the key's first character)
        signature = "".join(str(message["DKIM-Signature"]).split())
        tags = dict(part.split("=", 1) for part in signature.split(";") if part)
        signed[which], data[which] = set(tags["h"].lower().split(":")), got.data
    assert "reply-to" not in signed["1"] and "reply-to" in signed["2"]
    assert {"from", "to", "subject", "list-unsubscribe", "list-unsubscribe-post"} <= signed["3"]
    assert dkim.verify(b"Reply-To: list@lists.example.org\r\n" + data["1"], dnsfunc=dns)


def test_a_dkim_key_on_one_line_with_escaped_newlines(
    tmp_path: Path, dkim_key: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADLANG_TEST_DKIM_KEY", dkim_key[0].replace("\n", "\\n"))
    table = {
        "driver": "smtp",
        "host": "127.0.0.1",
        "from": FROM,
        "dkim_selector": "s",
        "dkim_domain": "example.com",
        "dkim_private_key_env": "LEADLANG_TEST_DKIM_KEY",
    }
    assert isinstance(make_drivers({"email": table}, tmp_path)["email"], SmtpDriver)


# -- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"from": FROM}, r"channel email \(`smtp` driver\): `host` is required"),
        ({"host": "h"}, "`from` is required"),
        ({"host": "h", "from": "nobody"}, "`from` is not one email address"),
        (
            {"host": "h", "from": FROM, "starttls": True, "tls": True},
            r"channel email \(`smtp` driver\): `tls` and `starttls` exclude each other",
        ),
        ({"host": "  ", "from": FROM}, "`host` must be a non-empty string"),
        ({"host": 25, "from": FROM}, "`host` must be a non-empty string"),
        ({"host": "h", "from": FROM, "port": True}, "`port` must be a whole number"),
        ({"host": "h", "from": FROM, "port": 25.0}, "`port` must be a whole number"),
        ({"host": "h", "from": FROM, "port": 65536}, "`port` must be a whole number"),
        ({"host": "h", "from": FROM, "connections": 101}, "`connections` must be a whole"),
        ({"host": "h", "from": FROM, "password": "p"}, "`username` is required"),
        ({"host": "h", "from": "a@example.com, b@example.com"}, "`from` is not one email"),
        ({"host": "h", "from": "Shop <shop@example.com"}, "`from` is not one email address"),
        ({"host": "h", "from": "nobody@"}, "`from` is not one email address"),
        ({"host": "h", "from": FROM + "\nBcc: b@example.com"}, "`from` is not one email"),
        (
            {"host": "h", "from": FROM, "mailto_unsubscribe": "unsubscribe"},
            "`mailto_unsubscribe` is not an email address",
        ),
        (  # (a header line may not break: every email would fail to be built)
            {"host": "h", "from": FROM, "mailto_unsubscribe": "u@example.com?subject=a\rb"},
            "`mailto_unsubscribe` is not an email address",
        ),
        (
            {"host": "h", "from": FROM, "mailto_unsubscribe": "u@example.com?subject=a\tb"},
            "`mailto_unsubscribe` is not an email address",
        ),
        ({"host": "h", "from": FROM, "starttls": "yes"}, "`starttls` must be true or false"),
        ({"host": "h", "from": FROM, "port": 0}, "`port` must be a whole number"),
        ({"host": "h", "from": FROM, "username": "u"}, "`password` is required"),
        ({"host": "h", "from": FROM, "startls": True}, "`startls` is not a setting"),
        ({"host": "h", "from": FROM, "ca_file": "ca.pem"}, "`ca_file` needs `tls` or `starttls`"),
        (
            {"host": "h", "from": FROM, "tls": True, "ca_file": "missing.pem"},
            "`ca_file` cannot be read",
        ),
        ({"host": "h", "from": FROM, "dkim_selector": "s"}, "`dkim_domain` is required"),
        (
            {
                "host": "h",
                "from": FROM,
                "dkim_selector": "s",
                "dkim_domain": "example.com",
                "dkim_private_key_env": "LEADLANG_TEST_NO_SUCH_KEY",
            },
            "names `LEADLANG_TEST_NO_SUCH_KEY`, which is not set",
        ),
        (
            {
                "host": "h",
                "from": FROM,
                "dkim_selector": "s",
                "dkim_domain": "example.com",
                "dkim_private_key_env": "LEADLANG_TEST_BAD_KEY",
            },
            "not a usable private key",
        ),
    ],
)
def test_bad_settings_name_the_channel_and_key(
    tmp_path: Path, table: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADLANG_TEST_BAD_KEY", "not a key")
    with pytest.raises(ValueError, match=message):
        make_drivers({"email": {"driver": "smtp", **table}}, tmp_path, secrets={})


def test_settings_at_their_edges_and_as_written(
    tmp_path: Path, certificate: tuple[Path, Path], dkim_key: tuple[str, bytes]
) -> None:
    """Texts are stripped, ports 1 and 65535 and up to 100 connections are taken (4 by
    default), a `mailto_unsubscribe` may say `MAILTO:` and carry a query, `ca_file` is
    relative to the config's folder, and the DKIM key may come from the config's secrets."""

    def driver(base: Path = tmp_path, secrets: Any = None, **table: Any) -> SmtpDriver:
        settings = {"driver": "smtp", "host": " mail.example.com ", "from": FROM, **table}
        made = make_drivers({"email": settings}, base, secrets=secrets or {})["email"]
        assert isinstance(made, SmtpDriver)
        return made

    assert driver().host == "mail.example.com" and driver().connections == 4
    assert (driver(port=1).port, driver(port=65535).port) == (1, 65535)
    assert driver(connections=100).connections == 100
    mailto = "MAILTO:unsubscribe@example.com?subject=please unsubscribe me"
    assert driver(mailto_unsubscribe=mailto).mailto_unsubscribe == mailto
    ca = certificate[0]
    assert driver(ca.parent, tls=True, ca_file=ca.name).tls_context is not None
    dkim_settings = {
        "dkim_selector": "s",
        "dkim_domain": "example.com",
        "dkim_private_key_env": "LEADLANG_TEST_DKIM_SECRET",
    }
    secrets = {"LEADLANG_TEST_DKIM_SECRET": dkim_key[0]}
    assert driver(secrets=secrets, **dkim_settings).dkim_key is not None


def test_the_default_ports(tmp_path: Path) -> None:
    def port(**table: Any) -> int:
        driver = make_drivers(
            {"email": {"driver": "smtp", "host": "h", "from": FROM, **table}}, tmp_path
        )["email"]
        assert isinstance(driver, SmtpDriver)
        return driver.port

    assert (port(), port(starttls=True), port(tls=True), port(port=2525)) == (25, 587, 465, 2525)


def test_an_address_smtp_cannot_carry_is_final(start_server: Any, tmp_path: Path) -> None:
    server = start_server()
    [outcome] = run(smtp(server, tmp_path), mail(to="anné@exämple.com"))
    assert outcome.status == "failed"
    # (a domain not in ASCII: the email package takes it, the SMTP command cannot carry it)
    [outcome] = run(smtp(server, tmp_path), mail(to="ann@exämple.com"))
    assert outcome.status == "failed"
    assert (outcome.error or "").startswith("cannot send to this address: 'ascii' codec")
    assert server.mailbox.received == []


def test_starttls_required_and_not_offered_is_a_retry_sending_nothing(
    start_server: Any, tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    """With `starttls` set, a server that does not offer STARTTLS (or something in between
    that hides it) gets nothing in plain text: the attempt is a retry that says why."""
    server = start_server()
    driver = smtp(server, tmp_path, starttls=True, ca_file=str(certificate[0]))
    [outcome] = run(driver, mail())
    assert outcome == Outcome.retry(
        "SMTPException: SMTP STARTTLS extension not supported by server."
    )
    assert server.mailbox.received == [] and server.mailbox.rcpt_peers == []


# -- the lines of the message ------------------------------------------------------------

LINK = "https://track.example.com/u/"


@pytest.mark.parametrize(
    "link",
    [
        LINK + "t" * 949,  # the longest kept on one line: `List-Unsubscribe: <...>`, 997 octets
        LINK + "t" * 950,  # 998 octets: what RFC 5322 allows, folded (one octet to spare)
        LINK + "t" * 960,
        LINK + "t" * 2000,
        LINK + "désabonner",
    ],
    ids=["one-line", "998", "990", "2030", "not-ascii"],
)
def test_any_list_unsubscribe_is_sent_in_lines_smtp_carries(
    start_server: Any, tmp_path: Path, link: str
) -> None:
    """RFC 5321 and 5322 limit a line to 998 octets and 7-bit text: a List-Unsubscribe link too
    long for one line, or not ASCII, is folded or encoded, and reads back as it was; one that
    fits is kept on one line, as a receiver's one-click unsubscribe reads it. The driver keeps
    one octet on the safe side of the limit: a line of exactly 998 octets is folded too."""
    server = start_server()
    headers = {**ONE_CLICK, "List-Unsubscribe": f"<{link}>"}
    assert run(smtp(server, tmp_path), ann_email(headers=headers)) == [Outcome.sent()]
    [got] = server.mailbox.received
    lines = got.data.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    got.data.decode("ascii")
    assert got.message()["List-Unsubscribe"] == f"<{link}>"
    one_line = f"List-Unsubscribe: <{link}>".encode()
    assert (one_line in lines) == (len(one_line) <= 997 and link.isascii())


def test_runs_of_spaces_in_a_mailto_unsubscribe_are_written_as_one(
    start_server: Any, tmp_path: Path
) -> None:
    """Every header value is written on one line with single spaces; so is the `mailto:` entry
    joined to List-Unsubscribe, whose configured query may hold runs of spaces (the email
    package writes this message: the direct bytes leave a value that is not one line to it)."""
    server = start_server()
    mailto = "unsubscribe@example.com?subject=please   unsubscribe  me"
    assert run(smtp(server, tmp_path, mailto_unsubscribe=mailto), mail()) == [Outcome.sent()]
    [got] = server.mailbox.received
    assert (
        b"List-Unsubscribe: <https://track.example.com/u/tok3n>, "
        b"<mailto:unsubscribe@example.com?subject=please unsubscribe me>"
    ) in got.data.split(b"\r\n")


# -- closing -----------------------------------------------------------------------------


def test_closing_says_quit_on_each_open_connection_and_leaves_none_open(
    start_server: Any, tmp_path: Path
) -> None:
    """`close` (serve stopping) ends each pooled connection with QUIT, as RFC 5321 asks of a
    client, and leaves none open on the server."""
    server = start_server()
    driver = smtp(server, tmp_path)
    many = [mail(f"{n:032x}") for n in range(3)]
    assert run(driver, *many) == [Outcome.sent()] * 3
    mailbox = server.mailbox
    assert until(lambda: not mailbox.open)
    assert 1 <= len(mailbox.opened) <= 3 and sorted(mailbox.quits) == sorted(mailbox.opened)


def test_a_send_still_running_when_the_driver_closes_leaves_no_connection_open(
    start_server: Any, tmp_path: Path
) -> None:
    """serve closes its drivers while an attempt may still be finishing: that attempt ends as
    it would, and its connection is then closed, not kept in a pool nobody will use."""
    server = start_server()
    server.mailbox.data_delays.append(1.0)
    driver = smtp(server, tmp_path)

    async def go() -> Outcome:
        sending = asyncio.ensure_future(driver.deliver(mail()))
        while not server.mailbox.rcpt_peers:
            await asyncio.sleep(0.02)
        await driver.close()
        return await sending

    assert asyncio.run(go()) == Outcome.sent()
    assert len(server.mailbox.received) == 1
    assert until(lambda: not server.mailbox.open)


@pytest.mark.timeout(90)
def test_closing_waits_for_no_server_slow_to_answer_quit(start_server: Any, tmp_path: Path) -> None:
    """serve stopping is not held up by a server that does not answer QUIT: `close` gives it
    2 s, then closes the connection anyway."""
    server = start_server()
    server.mailbox.quit_delay = 60.0
    assert _seconds_to_close_after_a_send(server, tmp_path) < 10
    assert len(server.mailbox.quits) == 1
    assert until(lambda: not server.mailbox.open)


def test_closing_waits_for_the_servers_answer_to_quit(start_server: Any, tmp_path: Path) -> None:
    """RFC 5321 4.1.1.10: a client closes the connection once the server has answered its QUIT.
    `close` waits for the 221 (up to 2 s): here it comes after 0.5 s, on a connection still
    open."""
    server = start_server()
    server.mailbox.quit_delay = 0.5
    assert _seconds_to_close_after_a_send(server, tmp_path) >= 0.45
    assert until(lambda: not server.mailbox.open)
    mailbox = server.mailbox
    assert len(mailbox.quits) == 1 and mailbox.quits_answered == mailbox.quits


def _seconds_to_close_after_a_send(server: Any, tmp_path: Path) -> float:
    """How long the driver's `close` takes once one email has gone through `server`."""
    driver = smtp(server, tmp_path)

    async def go() -> float:
        assert await driver.deliver(mail()) == Outcome.sent()
        started = time.monotonic()
        await driver.close()
        return time.monotonic() - started

    return asyncio.run(go())


# -- the pool ----------------------------------------------------------------------------


def test_after_the_server_closed_every_idle_connection_the_next_send_goes_out_at_once(
    start_server: Any, tmp_path: Path
) -> None:
    """A server closes connections left idle (here after 0.3 s): after a busy moment the pool
    holds several, all dead, and the next send opens a new connection rather than trying
    them (a second dead one would have made the attempt a retry)."""
    server = start_server(timeout=0.3)
    driver = smtp(server, tmp_path)

    async def go() -> Outcome:
        try:
            first = [mail(f"{n:032x}") for n in range(3)]
            assert await asyncio.gather(*(driver.deliver(d) for d in first)) == [Outcome.sent()] * 3
            assert len(server.mailbox.opened) >= 2
            while server.mailbox.open:  # (the server closes them; the driver sees it)
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            return await driver.deliver(mail("f" * 32))
        finally:
            await driver.close()

    assert asyncio.run(go()) == Outcome.sent()
    assert server.mailbox.received[-1].message()["Message-ID"] == f"<{'f' * 32}@leadlang>"


def test_a_driver_used_from_a_second_event_loop_starts_afresh(
    start_server: Any, tmp_path: Path
) -> None:
    """The pool belongs to one event loop: a driver used again from another (a script calling
    `asyncio.run` twice, as these tests do) leaves the connections of the first and sends on
    new ones, as many at once as before."""
    server = start_server()
    driver = smtp(server, tmp_path, connections=2)

    async def burst(first: int, close: bool) -> list[Outcome]:
        try:
            sends = [driver.deliver(mail(f"{first + n:032x}")) for n in range(5)]
            return list(await asyncio.gather(*sends))
        finally:
            if close:
                await driver.close()

    assert asyncio.run(burst(0, close=False)) == [Outcome.sent()] * 5
    before = set(server.mailbox.opened)
    assert len(before) == 2
    assert asyncio.run(burst(10, close=True)) == [Outcome.sent()] * 5
    after = set(server.mailbox.opened) - before
    assert len(after) == 2 and {got.peer for got in server.mailbox.received[5:]} == after


def test_the_connection_used_last_is_used_first_and_a_dead_one_above_a_live_one_is_skipped(
    start_server: Any, tmp_path: Path
) -> None:
    """Idle connections are reused newest first: the one used last is the one a server is
    least likely to have closed for idleness, and those not needed age out on the server.
    One the server has closed meanwhile is dropped and the next one below it is used: no
    new connection while a live one waits."""
    server = start_server()
    mailbox = server.mailbox
    mailbox.data_delays.extend([0.0, 2.0])  # (the second message in is answered last)
    driver = smtp(server, tmp_path)

    async def go() -> tuple[Any, Any]:
        try:
            both = [driver.deliver(mail(f"{n:032x}")) for n in range(2)]
            assert await asyncio.gather(*both) == [Outcome.sent()] * 2
            first, last = (got.peer for got in mailbox.received)  # (in the order answered)
            assert await driver.deliver(mail("e" * 32)) == Outcome.sent()
            assert mailbox.received[-1].peer == last
            # the server closes the connection used last while it is idle; the driver sees it
            server.controller.loop.call_soon_threadsafe(mailbox.transports[last].close)
            while last in mailbox.open:
                await asyncio.sleep(0.02)
            for _ in range(25):
                await asyncio.sleep(0.02)
            assert await driver.deliver(mail("f" * 32)) == Outcome.sent()
            return first, last
        finally:
            await driver.close()

    first, last = asyncio.run(go())
    assert mailbox.received[-1].peer == first
    assert mailbox.opened == [first, last] or mailbox.opened == [last, first]


def test_a_driver_used_from_a_second_event_loop_closes_the_first_loops_connections(
    start_server: Any, tmp_path: Path
) -> None:
    """A driver used from another event loop while the first is still alive (not closed)
    closes the first loop's idle connections: they are gone from the server as soon as that
    loop runs again, not held open for as long as it lives."""
    server = start_server()
    driver = smtp(server, tmp_path)
    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(driver.deliver(mail("1" * 32))) == Outcome.sent()
        [old] = server.mailbox.opened
        assert asyncio.run(deliver_all(driver, mail("2" * 32))) == [Outcome.sent()]
        assert old in server.mailbox.open
        first.run_until_complete(asyncio.sleep(0.1))
        assert until(lambda: old not in server.mailbox.open, 5.0)
    finally:
        first.close()
    assert server.mailbox.received[-1].peer != old


def test_a_send_whose_reused_connection_is_dead_tries_a_fresh_one_not_another_idle_one(
    start_server: Any, tmp_path: Path
) -> None:
    """Connections the server has dropped can look alive until used (the driver has not seen
    the close yet, as after a restart): a send whose reused connection turns out dead tries
    once more, within the same attempt, on a fresh connection, as the driver says; not on the
    next idle one, which may be just as dead (the attempt was then a retry, put off by the
    worker's backoff). The other idle connection is left as it was."""
    server = start_server()
    mailbox = server.mailbox
    driver = smtp(server, tmp_path)

    async def go() -> Outcome:
        try:
            both = [driver.deliver(mail(f"{n:032x}")) for n in range(2)]
            assert await asyncio.gather(*both) == [Outcome.sent()] * 2
            assert len(mailbox.opened) == 2
            mailbox.hang_up_at_mail |= set(mailbox.opened)  # (both die at their next command)
            return await driver.deliver(mail("f" * 32))
        finally:
            await driver.close()

    assert asyncio.run(go()) == Outcome.sent()
    assert len(mailbox.hung_up) == 1
    assert len(mailbox.opened) == 3 and mailbox.received[-1].peer == mailbox.opened[2]


def test_a_fresh_connection_the_server_drops_mid_transaction_is_a_retry_on_that_one_alone(
    start_server: Any, tmp_path: Path
) -> None:
    """Only a reused connection found dead is followed by a fresh one within the attempt: a
    fresh connection that the server drops (here at MAIL) makes the attempt a retry that says
    so, and the worker's backoff decides when to come back; no second connection."""
    server = start_server()
    server.mailbox.hang_up_at_every_mail = True
    [outcome] = run(smtp(server, tmp_path), mail())
    assert outcome == Outcome.retry("SMTPServerDisconnected: Unexpected EOF received")
    assert len(server.mailbox.opened) == len(server.mailbox.hung_up) == 1
    assert server.mailbox.received == []
