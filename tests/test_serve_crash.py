"""Crash safety with real signals (RUNTIME.md section 3): a stream of batches while the daemon
is SIGKILLed and restarted on the same store; every acknowledged event has its effects exactly
once (the ledger equals `leadlang simulate` on exactly those events), no email file twice and
every send's file there; waits that came due while it was down fire at start-up at their due
instant; SIGTERM finishes the request in flight and exits 0. On SQLite and PostgreSQL."""

from __future__ import annotations

import random
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from tests.serve_daemon import (
    ADMIN_TOKEN,
    GREET,
    SLOW,
    WRITE_KEY,
    Daemon,
    Mailbox,
    fresh_postgres,
    maildir_files,
)

STORES = ["sqlite", "postgresql"]


def store(kind: str) -> Any:
    return nullcontext(None) if kind == "sqlite" else fresh_postgres()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Sender(threading.Thread):
    """Posts the batches in order, each until it is acknowledged (a client's retries: the
    same messageIds again), and records what was acknowledged."""

    def __init__(self, url: str, batches: list[list[dict[str, Any]]]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.batches = batches
        self.acked: list[dict[str, Any]] = []
        self.failures = 0
        self.statuses: set[int] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        for batch in self.batches:
            while not self.stop.is_set():
                try:
                    response = requests.post(
                        self.url + "/v1/batch",
                        data=orjson.dumps({"batch": batch}),
                        headers={"Authorization": f"Bearer {WRITE_KEY}"},
                        timeout=10,
                    )
                except requests.RequestException:
                    self.failures += 1
                    time.sleep(0.02)
                    continue
                self.statuses.add(response.status_code)
                if response.status_code == 200:
                    self.acked.extend(batch)
                    break
                time.sleep(0.02)  # 429 or 5xx: back off, send the same batch again
            # paced, so the stream outlasts the first kills however fast the machine is (a
            # quick machine used to post it all before the first kill)
            time.sleep(0.08)


def stream(contacts: int, batches: int, size: int, start: float) -> list[list[dict[str, Any]]]:
    """`signed_up` events one second apart from `start`, each with its own messageId."""
    out: list[list[dict[str, Any]]] = []
    n = 0
    for _ in range(batches):
        batch = []
        for _ in range(size):
            contact = f"c{n % contacts}"
            batch.append(
                {
                    "type": "track",
                    "userId": contact,
                    "event": "Signed Up",
                    "properties": {"email": f"{contact}@example.com"},
                    "timestamp": iso(start + n),
                    "messageId": f"m{n}-{uuid.uuid4().hex[:8]}",
                }
            )
            n += 1
        out.append(batch)
    return out


def simulate(script: Path, events: list[dict[str, Any]], until: float, workdir: Path) -> str:
    log = workdir / "acked.jsonl"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "leadlang",
            "simulate",
            str(script),
            "--events",
            str(log),
            "--until",
            iso(until),
        ],
        capture_output=True,
        check=True,
    )
    return result.stdout.decode()


def ledger_text(db: str, workdir: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "leadlang", "effects", "--db", db],
        capture_output=True,
        check=True,
        cwd=workdir,
    )
    return result.stdout.decode()


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def outbox_state(daemon: Daemon) -> tuple[set[str], set[str], set[str]]:
    """(every key, keys sent, keys pending under a lease a killed process took)."""
    rows = daemon.query("SELECT key, status, lease_until FROM outbox")
    now = time.time()
    leased = {k for k, status, lease in rows if status == "pending" and lease and lease > now}
    return {k for k, _, _ in rows}, {k for k, status, _ in rows if status == "sent"}, leased


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", STORES)
def test_sigkill_under_a_stream_of_batches_loses_and_repeats_nothing(
    kind: str, tmp_path: Path
) -> None:
    script = tmp_path / "greet.lead"
    script.write_text(GREET, encoding="utf-8")
    rng = random.Random(11)
    with store(kind) as db:
        daemon = Daemon(tmp_path, [str(script)], db=db).start()
        sender = Sender(daemon.url, stream(25, 40, 10, time.time() - 3600))
        try:
            sender.start()
            for _ in range(3):
                time.sleep(rng.uniform(0.2, 0.5))
                daemon.kill()
                time.sleep(rng.uniform(0.0, 0.2))
                daemon.start()
            sender.join(60)
            assert not sender.is_alive(), "the stream never finished"
            daemon.wait_idle()

            def delivered() -> bool:  # every row sent, or held by a dead process's lease
                keys, sent, leased = outbox_state(daemon)
                return keys == sent | leased

            wait_for(delivered, 20, "the outbox never drained")
        finally:
            sender.stop.set()
            code = daemon.stop()
        assert code == 0, "\n".join(daemon.output)
        assert sender.failures > 0, "no request was ever cut by a kill: the test proves nothing"
        acked = sender.acked
        assert len(acked) == 400
        # each acknowledged event stored once and run once
        assert daemon.count("events") == len(acked)
        assert daemon.count("events", "WHERE pending = 1") == 0
        enters = daemon.query(
            "SELECT contact, count(*) FROM effects WHERE action = 'enter' GROUP BY contact"
        )
        expected: dict[str, int] = {}
        for event in acked:
            expected[event["userId"]] = expected.get(event["userId"], 0) + 1
        assert dict(enters) == expected
        # the whole ledger is what simulate says for exactly the acknowledged events
        served = ledger_text(daemon.db, tmp_path)
        assert served == simulate(script, acked, time.time(), tmp_path)
        # one outbox row per send; one email file per row, never twice (new/ and cur/); every
        # sent row has its file; a row without one is only one a killed process had claimed
        # (the next daemon frees its claim at start-up and delivers it)
        keys, sent, leased = outbox_state(daemon)
        assert daemon.count("effects", "WHERE action = 'send'") == len(keys) == len(acked)
        names = [p.name.split(":")[0] for p in maildir_files(tmp_path)]
        assert len(names) == len(set(names))
        assert sent <= set(names) <= keys
        assert keys - set(names) <= leased


@pytest.mark.timeout(60)
def test_a_send_claimed_when_killed_is_delivered_soon_after_restart(tmp_path: Path) -> None:
    # email through SMTP to a server that accepts the connection and never greets: the attempt
    # hangs (its row claimed) until the daemon is killed; then a real SMTP server takes its port
    from aiosmtpd.controller import Controller

    script = tmp_path / "greet.lead"
    script.write_text(GREET, encoding="utf-8")
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    config = (
        f'[server]\nwrite_keys = ["{WRITE_KEY}"]\nadmin_token = "{ADMIN_TOKEN}"\n'
        f'[channels.email]\ndriver = "smtp"\nhost = "127.0.0.1"\nport = {port}\n'
        'from = "shop@example.com"\n'
    )
    daemon = Daemon(tmp_path, [str(script)], config=config).start()
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    try:
        event = {"userId": "k", "event": "Signed Up", "properties": {"email": "k@example.com"}}
        assert daemon.post("/v1/track", event).status_code == 200
        silent.settimeout(10)
        attempt, _ = silent.accept()  # the send is being attempted: claimed
        daemon.kill()
        attempt.close()
        silent.close()
        controller.start()  # the channel works again
        started = time.monotonic()
        daemon.start()
        wait_for(lambda: len(mailbox.received) == 1, 10, "not sent")
        # soon: not after the claim's lease (15 s) ran out
        assert time.monotonic() - started < 10
        assert b"X-Leadlang-Contact: k" in mailbox.received[0]
    finally:
        assert daemon.stop() == 0
        controller.stop(no_assert=True)
        silent.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", STORES)
def test_waits_fire_at_their_due_instant_late_at_start_up_and_while_running(
    kind: str, tmp_path: Path
) -> None:
    script = tmp_path / "slow.lead"
    script.write_text(SLOW, encoding="utf-8")
    with store(kind) as db:
        daemon = Daemon(tmp_path, [str(script)], db=db).start()
        try:
            start = float(int(time.time())) - 1
            events = [
                {
                    "type": "track",
                    "userId": f"w{i}",
                    "event": "started",
                    "timestamp": iso(start + i % 2),
                }
                | {"properties": {"email": f"w{i}@example.com"}}
                for i in range(4)
            ]
            assert daemon.post("/v1/batch", {"batch": events}).status_code == 200
            daemon.wait_idle()
            assert daemon.count("effects", "WHERE action = 'enter'") == 4
            daemon.kill()  # before any wait is due
            assert daemon.count("effects", "WHERE action = 'send'") == 0
            time.sleep(max(0.0, start + 6 - time.time()) + 1.5)  # every wait is now overdue
            daemon.start()  # the overdue waits are its first work
            wait_for(
                lambda: daemon.count("effects", "WHERE action = 'exit'") == 4,
                10,
                "the late waits never fired",
            )
            ledger = daemon.ledger()
            sends = sorted((e["contact"], e["at"]) for e in ledger if e["action"] == "send")
            assert sends == [(f"w{i}", iso(start + i % 2 + 5)) for i in range(4)]
            exits = sorted((e["contact"], e["at"]) for e in ledger if e["action"] == "exit")
            assert exits == sends
            wait_for(lambda: len(maildir_files(tmp_path)) == 4, 10, "no email for the late sends")
            # and a wait that comes due while it runs fires then, at its due instant
            now = float(int(time.time()))
            event = {"userId": "r", "event": "started", "timestamp": iso(now)}
            event["properties"] = {"email": "r@example.com"}
            assert daemon.post("/v1/track", event).status_code == 200
            wait_for(
                lambda: daemon.count("effects", "WHERE contact = 'r' AND action = 'exit'") == 1,
                10,
                "the wait never fired",
            )
            (send,) = [e for e in daemon.ledger() if e["contact"] == "r" and e["action"] == "send"]
            assert send["at"] == iso(now + 5)
        finally:
            assert daemon.stop() == 0


def raw_request(daemon: Daemon, body: bytes) -> tuple[socket.socket, bytes]:
    """A connection to the daemon and the head of a POST /v1/batch of `body`."""
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {WRITE_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return socket.create_connection(("127.0.0.1", daemon.port), timeout=5), head


def read_answer(conn: socket.socket) -> bytes:
    answer = b""
    while not answer.endswith(b"}"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def big_batch(contact: str, n: int) -> bytes:
    item = {"type": "track", "userId": contact, "event": "Signed Up", "properties": {"k": "v" * 60}}
    return orjson.dumps({"batch": [item] * n})


def queued_events(daemon: Daemon) -> float:
    for line in requests.get(daemon.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("leadlang_ingest_queued_events "):
            return float(line.split()[1])
    return 0.0


@pytest.mark.timeout(60)
def test_sigterm_finishes_the_request_in_flight_and_exits_0(tmp_path: Path) -> None:
    script = tmp_path / "greet.lead"
    script.write_text(GREET, encoding="utf-8")
    daemon = Daemon(tmp_path, [str(script)]).start()
    assert daemon.post("/v1/batch", orjson.loads(big_batch("first", 1))).status_code == 200
    body = big_batch("inflight", 3000)
    # The test holds the write lock of the inbox, where ingest commits, so the request waits
    # in its commit: truly in flight when SIGTERM comes (the daemon waits up to its busy
    # timeout, 30 s).
    lock = sqlite3.connect(tmp_path / "leadlang.inbox.db", timeout=30, isolation_level=None)
    answer: list[bytes] = []
    try:
        lock.execute("BEGIN IMMEDIATE")
        conn, head = raw_request(daemon, body)
        conn.settimeout(30)

        def send() -> None:
            with conn:
                conn.sendall(head + body)
                answer.append(read_answer(conn))

        client = threading.Thread(target=send, daemon=True)
        client.start()
        wait_for(lambda: queued_events(daemon) == 3000, 10, "the request never reached its commit")
        assert daemon.proc is not None
        daemon.proc.terminate()  # SIGTERM while the request waits for its commit
        wait_for(lambda: any("stopping" in line for line in daemon.output), 10, "no stop")
        time.sleep(0.2)
        assert client.is_alive(), "the request in flight was answered before its commit"
        lock.execute("ROLLBACK")  # the commit goes through now
        client.join(20)
        assert answer and answer[0].startswith(b"HTTP/1.1 200"), answer
        assert answer[0].endswith(b'{"success":true}'), answer
        assert daemon.proc.wait(20) == 0
        with pytest.raises(requests.ConnectionError):  # no new requests once stopped
            requests.get(daemon.url + "/healthz", timeout=2)
    finally:
        lock.close()
        code = daemon.stop()
    assert code == 0, "\n".join(daemon.output)
    assert stored(daemon, "inflight") == 3000


def stored(daemon: Daemon, contact: str) -> int:
    """The events of `contact` the store holds, once a daemon started again on the stopped
    one's file has admitted what its inbox kept."""
    daemon.stop()
    daemon.start()
    try:
        return daemon.count("events", "WHERE contact = ?", contact)
    finally:
        daemon.stop()


@pytest.mark.timeout(60)
def test_sigterm_answers_a_request_whose_body_is_still_arriving(tmp_path: Path) -> None:
    script = tmp_path / "greet.lead"
    script.write_text(GREET, encoding="utf-8")
    daemon = Daemon(tmp_path, [str(script)]).start()
    body = big_batch("slow-upload", 10)
    try:
        conn, head = raw_request(daemon, body)
        with conn:
            conn.sendall(head + body[:100])  # the request has begun: its handler reads the body
            time.sleep(0.3)
            assert daemon.proc is not None
            daemon.proc.terminate()
            wait_for(lambda: any("stopping" in line for line in daemon.output), 10, "no stop")
            conn.sendall(body[100:])
            conn.settimeout(2.0)
            answer = read_answer(conn)
        assert answer.startswith(b"HTTP/1.1 "), answer
        if answer.startswith(b"HTTP/1.1 200"):
            assert daemon.proc.wait(20) == 0
            assert stored(daemon, "slow-upload") == 10
    finally:
        daemon.kill()


@pytest.mark.timeout(60)
def test_a_second_daemon_on_the_same_sqlite_file_is_refused(tmp_path: Path) -> None:
    # SQLite is for one daemon: a second would deliver the sends the first has claimed
    script = tmp_path / "greet.lead"
    script.write_text(GREET, encoding="utf-8")
    first = Daemon(tmp_path, [str(script)]).start()
    other = tmp_path / "other"
    other.mkdir()
    try:
        second = subprocess.run(
            [
                *(sys.executable, "-m", "leadlang", "serve", str(script), "--db", first.db),
                *("--listen", "127.0.0.1:0", "--config", str(first.config_path)),
            ],
            cwd=other,
            capture_output=True,
            text=True,
            timeout=50,
        )
        assert second.returncode == 2
        assert "another `leadlang serve` is using" in second.stderr
        assert first.post("/v1/track", {"userId": "a", "event": "Signed Up"}).ok
        # killed, the first leaves nothing held: the next daemon starts on the file
        first.kill()
        first.start()
        assert first.post("/v1/track", {"userId": "b", "event": "Signed Up"}).ok
    finally:
        assert first.stop() == 0
