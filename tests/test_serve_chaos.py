"""Chaos, on a PostgreSQL server of the test's own (tests/pg_cluster.py), with 2 or 3 daemons
on one database and clients that retry as Segment's do (the same batch, the same messageIds,
on any answer but 200 or a broken connection, to the next daemon as a load balancer would):

- daemons SIGKILLed at random and restarted under a stream of batches and timers;
- the server restarted mid-load, the daemons' connections cut (`pg_terminate_backend`), and
  the server SIGKILLed (an outage, then crash recovery): requests get 503, never a false 200,
  and the daemons go on;
- a slow database (a table locked by the test) under a flood, with a tiny connection pool:
  back-pressure (429), no other 5xx than 503, no crash.

After each: every acknowledged event stored once and processed, every timer fired once, each
send in the shared Maildir once, and the ledger equal to `leadlang simulate` over exactly the
acknowledged events. RUNTIME.md section 3 (durable before acknowledged, scale-out).
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import os
import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from leadlang.runtime.server.config import ConfigError, load_config
from leadlang.runtime.server.ingest import parse_time
from leadlang.runtime.store.sql import StoreError, open_store
from tests.pg_cluster import PgCluster, database_name, pg_cluster
from tests.serve_daemon import ADMIN_TOKEN, WRITE_KEY, Daemon, maildir_files
from tests.test_serve_crash import iso, ledger_text, simulate, wait_for

__all__ = ["pg_cluster"]  # (the fixture, imported to be used here)

pytestmark = pytest.mark.timeout(90)

# `signed_up`: a send at once (many per contact); `started`: a timer 2 s later, then a send.
SCRIPT = """\
message hello:
  channel email
  subject "hello {{ id }}"
  text "hello {{ id }}"

message later:
  channel email
  subject "later {{ id }}"
  text "later {{ id }}"

flow greet:
  on signed_up
  reenter always
  set email = event.email
  send hello

flow slow:
  on started
  set email = event.email
  wait 2s
  send later
"""
NOW = "now"  # a timestamp set when the batch is first sent (so its timer fires while we watch)


def just_now() -> str:
    """A timestamp a second ago (never in the future for the daemon's clock)."""
    return iso(time.time() - 1)


class Client(threading.Thread):
    """Posts its batches in order, each until a daemon answers 200; records every answer."""

    def __init__(self, urls: list[str], batches: list[list[dict[str, Any]]], pace: float) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.batches = batches
        self.pace = pace
        self.acked: list[dict[str, Any]] = []
        self.statuses: Counter[int] = Counter()
        self.samples: dict[int, requests.Response] = {}  # the first answer of each status
        self.broken = 0  # connection errors (a killed daemon)
        self.stop = threading.Event()
        self._next = itertools.cycle(range(len(urls)))

    def run(self) -> None:
        for batch in self.batches:
            batch = [
                {**e, "timestamp": just_now()} if e.get("timestamp") == NOW else e for e in batch
            ]
            while not self.stop.is_set():
                url = self.urls[next(self._next)]
                try:
                    response = requests.post(
                        url + "/v1/batch",
                        data=orjson.dumps({"batch": batch}),
                        headers={"Authorization": f"Bearer {WRITE_KEY}"},
                        timeout=30,
                    )
                except requests.RequestException:
                    self.broken += 1
                    time.sleep(0.05)
                    continue
                self.statuses[response.status_code] += 1
                self.samples.setdefault(response.status_code, response)
                if response.status_code == 200:
                    self.acked.extend(batch)
                    break
                time.sleep(0.05 if response.status_code >= 500 else 0.2)
            time.sleep(self.pace)


def stream(batches: int, tag: str, greet: int = 6, timers: int = 2) -> list[list[dict[str, Any]]]:
    """Batches of `greet` `signed_up` (20 contacts, one second apart an hour ago) and `timers`
    `started` (each its own contact, stamped when sent), each with its own messageId."""
    start = time.time() - 3600
    out: list[list[dict[str, Any]]] = []
    n = 0
    for b in range(batches):
        batch: list[dict[str, Any]] = []
        for _ in range(greet):
            contact = f"{tag}c{n % 20}"
            batch.append(track(contact, "Signed Up", iso(start + n)))
            n += 1
        for j in range(timers):
            batch.append(track(f"{tag}w{b}-{j}", "started", NOW))
        out.append(batch)
    return out


def track(contact: str, event: str, timestamp: str) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": contact,
        "event": event,
        "properties": {"email": f"{contact}@example.com"},
        "timestamp": timestamp,
        "messageId": uuid.uuid4().hex,
    }


def start_daemons(
    tmp_path: Path, url: str, n: int, config: str | None = None
) -> tuple[Path, list[Daemon]]:
    """`n` daemons on the database at `url`, delivering into one shared Maildir."""
    script = tmp_path / "chaos.lead"
    script.write_text(SCRIPT, encoding="utf-8")
    dirs = [tmp_path / f"d{i}" for i in range(n)]
    for d in dirs:
        d.mkdir()
    (dirs[0] / "outbox").mkdir()
    for d in dirs[1:]:  # as on a shared volume
        (d / "outbox").symlink_to(dirs[0] / "outbox", target_is_directory=True)
    daemons = [Daemon(d, [str(script)], db=url, config=config) for d in dirs]
    try:
        for daemon in daemons:
            daemon.start()
    except BaseException:
        stop_all(daemons)
        raise
    return script, daemons


def stop_all(daemons: list[Daemon]) -> list[int | None]:
    return [daemon.stop() for daemon in daemons]


def settle(daemons: list[Daemon], acked: list[dict[str, Any]]) -> None:
    """Until every acknowledged event is processed, every timer fired, and every send sent
    (one a killed daemon held comes back when its lease, 15 s, runs out)."""
    daemons[0].wait_idle(40)
    timers = sum(1 for e in acked if e["event"] == "started")
    wait_for(
        lambda: daemons[0].count("effects", "WHERE flow = 'slow' AND action = 'exit'") == timers,
        30,
        "not every timer fired",
    )
    daemons[0].wait_idle(20)

    def drained() -> bool:
        return daemons[0].count("outbox", "WHERE status <> 'sent'") == 0

    try:
        wait_for(drained, 40, "the outbox never drained")
    except TimeoutError:
        rows = daemons[0].query(
            "SELECT key, status, attempts, lease_until, last_error FROM outbox "
            "WHERE status <> 'sent'"
        )
        raise TimeoutError(f"the outbox never drained: {len(rows)} rows, {rows[:3]}") from None


def check_once(
    tmp_path: Path,
    script: Path,
    url: str,
    daemon: Daemon,
    acked: list[dict[str, Any]],
) -> None:
    """Each acknowledged event stored and run once, each timer once, each send delivered
    once, and the ledger what simulate says for exactly the acknowledged events."""
    ids = [e["messageId"] for e in acked]
    assert len(ids) == len(set(ids)), "the client acknowledged a batch twice"
    # (each test event has its own contact and timestamp pair)
    sent = Counter((e["userId"], int(parse_time(e["timestamp"]) or 0)) for e in acked)
    stored = Counter((c, int(t)) for c, t in daemon.query("SELECT contact, t FROM events"))
    assert not sent - stored, f"acknowledged events missing: {sorted(sent - stored)[:5]}"
    assert not stored - sent, (
        f"events stored twice or never acknowledged: {sorted(stored - sent)[:5]}"
    )
    assert daemon.count("events", "WHERE pending = 1") == 0
    timers = sorted(e["userId"] for e in acked if e["event"] == "started")
    fired = daemon.query("SELECT contact FROM effects WHERE flow = 'slow' AND action = 'send'")
    assert sorted(c for (c,) in fired) == timers, "a timer lost or fired twice"
    # simulate reads the events in the order they were stored: with several clients at
    # once, that order (not the clients') breaks the ties between contacts at one instant
    order = {(c, int(t)): i for c, t, i in daemon.query("SELECT contact, t, id FROM events")}
    log = sorted(acked, key=lambda e: order[e["userId"], int(parse_time(e["timestamp"]) or 0)])
    assert ledger_text(url, tmp_path) == simulate(script, log, time.time(), tmp_path)
    rows = daemon.query("SELECT key, status FROM outbox")
    keys = {k for k, _ in rows}
    sent = {k for k, status in rows if status == "sent"}
    assert daemon.count("effects", "WHERE action = 'send'") == len(keys) == len(acked)
    names = [p.name.split(":")[0] for p in maildir_files(daemon.workdir)]
    assert len(names) == len(set(names)), "an email delivered twice"
    assert sent <= set(names) <= keys, "a sent row without its email, or an email without a row"
    assert keys == set(names), "a send never delivered"


def metric(daemon: Daemon, name: str) -> float:
    for line in requests.get(daemon.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


# ---------------------------------------------------------------- daemons killed

_DONE = threading.Thread()  # (a thread never started: not alive)


def test_daemons_killed_at_random_lose_and_repeat_nothing(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    url = pg_cluster.create_database()
    script, daemons = start_daemons(tmp_path, url, 3)
    client = Client([d.url for d in daemons], stream(60, "k"), pace=0.2)
    rng = random.Random(13)
    kills = 0
    restarts: dict[int, threading.Thread] = {}  # a killed daemon starts again meanwhile

    def restart(daemon: Daemon) -> None:
        time.sleep(rng.uniform(0.0, 0.3))
        daemon.start()

    try:
        client.start()
        while client.is_alive() and kills < 8:
            time.sleep(rng.uniform(0.8, 1.8))
            up = [i for i in range(len(daemons)) if not restarts.get(i, _DONE).is_alive()]
            if not up:
                continue
            victim = rng.choice(up)
            daemons[victim].kill()
            kills += 1
            restarts[victim] = threading.Thread(target=restart, args=(daemons[victim],))
            restarts[victim].start()
        for thread in restarts.values():
            thread.join(60)
        assert all(d.proc is not None and d.proc.poll() is None for d in daemons), "not restarted"
        client.join(60)
        assert not client.is_alive(), "the stream never finished"
        settle(daemons, client.acked)
    finally:
        client.stop.set()
        for thread in restarts.values():
            thread.join(60)
        codes = stop_all(daemons)
    assert codes == [0] * len(daemons), "\n".join(daemons[0].output)
    assert kills >= 5, "too few kills during the stream: the test proves little"
    assert client.broken > 0, "no request was ever cut by a kill: the test proves little"
    assert len(client.acked) == 60 * 8
    check_once(tmp_path, script, url, daemons[0], client.acked)


def test_a_killed_daemons_claimed_sends_are_delivered_by_another_within_seconds(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    url = pg_cluster.create_database()
    script = tmp_path / "chaos.lead"
    script.write_text(SCRIPT, encoding="utf-8")
    stuck, other = tmp_path / "stuck", tmp_path / "other"
    for d in (stuck, other):
        (d / "outbox").mkdir(parents=True)
    # the first daemon's email goes into a FIFO nobody reads: its attempt blocks, claimed
    os.mkfifo(stuck / "outbox" / "email.jsonl")
    config = (
        f'[server]\nwrite_keys = ["{WRITE_KEY}"]\nadmin_token = "{ADMIN_TOKEN}"\n'
        '[channels.email]\ndriver = "jsonl"\npath = "outbox/email.jsonl"\n'
    )
    first = Daemon(stuck, [str(script)], db=url, config=config).start()
    second = Daemon(other, [str(script)], db=url)
    try:
        assert first.post("/v1/batch", {"batch": [track("held", "Signed Up", just_now())]}).ok
        wait_for(
            lambda: first.count("outbox", "WHERE lease_until IS NOT NULL") == 1,
            20,
            "the send was never claimed",
        )
        first.kill()
        second.start()
        # within one lease (15 s) of the dead daemon's last renewal, and a poll
        wait_for(lambda: len(maildir_files(other)) == 1, 25, "another daemon never sent it")
    finally:
        first.kill()
        second.stop()


# ---------------------------------------------------------------- the server restarted


def test_a_restarted_server_and_cut_connections_get_503_never_a_false_200(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    url = pg_cluster.create_database()
    name = database_name(url)
    script, daemons = start_daemons(tmp_path, url, 2)
    client = Client([d.url for d in daemons], stream(40, "r"), pace=0.15)
    probes: list[str] = []
    try:
        client.start()
        time.sleep(1.5)
        pg_cluster.restart("fast")  # mid-load: every connection cut, the server back at once
        time.sleep(1.0)
        assert pg_cluster.terminate_backends(name) > 0  # the daemons' pooled connections
        time.sleep(1.0)
        pg_cluster.kill()  # a crash (SIGKILL), and an outage long enough to be seen
        try:
            for daemon in daemons:
                event = track(f"probe-{daemon.port}", "Signed Up", just_now())
                probes.append(event["messageId"])
                answer = daemon.post("/v1/batch", {"batch": [event]})
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"] == "unavailable"
                assert int(answer.headers["Retry-After"]) > 0
                health = requests.get(daemon.url + "/healthz", timeout=10)
                assert health.status_code == 503
                # the admin routes too answer in JSON, never aiohttp's plain-text 500
                contact = daemon.admin("/v1/contacts/anyone")
                assert contact.status_code == 503, contact.text
                assert contact.json()["error"] == "unavailable"
            time.sleep(1.0)
        finally:
            pg_cluster.start()
        time.sleep(1.0)
        pg_cluster.terminate_backends(name)
        client.join(60)
        assert not client.is_alive(), "the stream never finished"
        settle(daemons, client.acked)
        assert all(metric(d, 'leadlang_ingest_rejected_total{reason="store_error"}') >= 1
                   for d in daemons)  # fmt: skip
        alive = [d.proc is not None and d.proc.poll() is None for d in daemons]
    finally:
        client.stop.set()
        codes = stop_all(daemons)
    assert alive == [True, True]
    assert codes == [0, 0], "\n".join(daemons[0].output)
    assert client.broken == 0, "a daemon dropped a connection"
    assert client.statuses[503] > 0, client.statuses
    assert set(client.statuses) <= {200, 503}, (
        client.statuses,
        {k: r.text for k, r in client.samples.items()},
        "\n".join(line for d in daemons for line in d.output if "Error" in line or "error" in line),
    )
    assert client.samples[503].json()["error"] == "unavailable"
    # a 503 said nothing was stored: the probes (never retried) are not there
    assert daemons[0].count("events", "WHERE contact LIKE 'probe-%'") == 0
    seen = {m for (m,) in daemons[0].query("SELECT message_id FROM seen_messages")}
    assert not seen & set(probes)
    check_once(tmp_path, script, url, daemons[0], client.acked)


# ---------------------------------------------------------------- a slow database


class TableLock(threading.Thread):
    """Holds `LOCK TABLE events IN ACCESS EXCLUSIVE MODE` from the test's own connection
    until `release` is set: every commit of ingest and every processing round waits."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.locked = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        import asyncpg

        async def hold() -> None:
            conn = await asyncpg.connect(self.url)
            try:
                async with conn.transaction():
                    await conn.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
                    self.locked.set()
                    await asyncio.to_thread(self.release.wait, 60)
            finally:
                await conn.close()

        try:
            asyncio.run(hold())
        except BaseException as exc:
            self.error = exc
            self.locked.set()


def test_a_slow_database_and_a_tiny_pool_answer_429_and_lose_nothing(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    url = pg_cluster.create_database()
    config = (
        f'[server]\nwrite_keys = ["{WRITE_KEY}"]\nadmin_token = "{ADMIN_TOKEN}"\n'
        '[store]\npool_size = 2\npool_timeout = "1s"\n'
    )
    script, daemons = start_daemons(tmp_path, url, 2, config)
    urls = [d.url for d in daemons]
    clients = [Client(urls[i % 2 :] + urls[: i % 2], stream(6, f"s{i}-"), 0.0) for i in range(8)]
    lock = TableLock(url)
    try:
        lock.start()
        assert lock.locked.wait(10) and lock.error is None, lock.error
        for client in clients:
            client.start()
        time.sleep(5.0)  # the flood meets the locked table
        assert all(d.proc is not None and d.proc.poll() is None for d in daemons)
        during = sum((c.statuses for c in clients), Counter())
        lock.release.set()
        lock.join(10)
        for client in clients:
            client.join(60)
            assert not client.is_alive(), "a client never got its batches in"
        acked = [e for client in clients for e in client.acked]
        settle(daemons, acked)
    finally:
        lock.release.set()
        for client in clients:
            client.stop.set()
        codes = stop_all(daemons)
    assert codes == [0, 0], "\n".join(daemons[0].output)
    assert during[429] > 0, f"no back-pressure while the table was locked: {during}"
    statuses = sum((c.statuses for c in clients), Counter())
    assert set(statuses) <= {200, 429, 503}, statuses
    sample = next(c.samples[429] for c in clients if 429 in c.samples)
    assert sample.json()["error"] == "overloaded"
    assert int(sample.headers["Retry-After"]) > 0
    assert sum(c.broken for c in clients) == 0, "a daemon dropped a connection"
    assert len(acked) == 8 * 6 * 8
    check_once(tmp_path, script, url, daemons[0], acked)


def test_a_request_that_cannot_get_a_connection_is_a_429_and_stores_nothing(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    url = pg_cluster.create_database()
    config = (
        f'[server]\nwrite_keys = ["{WRITE_KEY}"]\nadmin_token = "{ADMIN_TOKEN}"\n'
        '[store]\npool_size = 1\npool_timeout = "1s"\n'
    )
    _, (daemon,) = start_daemons(tmp_path, url, 1, config)
    lock = TableLock(url)
    scrape: list[requests.Response] = []
    try:
        lock.start()
        assert lock.locked.wait(10) and lock.error is None, lock.error
        # a scrape reads `events`: it waits for the lock, holding the one connection
        scraper = threading.Thread(
            target=lambda: scrape.append(requests.get(daemon.url + "/metrics", timeout=60))
        )
        scraper.start()
        time.sleep(0.5)
        event = track("pool", "Signed Up", just_now())
        begun = time.monotonic()
        answer = daemon.post("/v1/batch", {"batch": [event]})
        waited = time.monotonic() - begun
        assert answer.status_code == 429, answer.text
        assert answer.json()["error"] == "overloaded"
        assert answer.headers["Retry-After"] == "1"
        assert waited < 10, "the request waited far past pool_timeout"
        lock.release.set()
        scraper.join(30)
        assert scrape and scrape[0].status_code == 200
        assert daemon.count("events", "WHERE contact = 'pool'") == 0  # nothing of it stored
        assert daemon.post("/v1/batch", {"batch": [event]}).status_code == 200  # the retry
        assert daemon.count("events", "WHERE contact = 'pool'") == 1
    finally:
        lock.release.set()
        assert daemon.stop() == 0


# ---------------------------------------------------------------- encodings


def test_an_encoding_it_cannot_decode_is_a_json_415(tmp_path: Path) -> None:
    script = tmp_path / "chaos.lead"
    script.write_text(SCRIPT, encoding="utf-8")
    daemon = Daemon(tmp_path, [str(script)]).start()  # (SQLite: the answer is ingest's)
    try:
        body = orjson.dumps(track("enc", "Signed Up", just_now()))
        # (aiohttp itself answered br and zstd with a plain-text 400 when it could not decode)
        for encoding in ("br", "zstd", "compress", "gzip, br"):
            answer = daemon.post("/v1/track", body, headers={"Content-Encoding": encoding})
            assert answer.status_code == 415, (encoding, answer.text)
            assert answer.headers["Content-Type"].startswith("application/json")
            assert answer.json()["error"] == "unsupported encoding"
            assert encoding in answer.json()["detail"]
        assert daemon.count("events") == 0
        packed = daemon.post("/v1/track", gzip.compress(body), headers={"Content-Encoding": "gzip"})
        assert packed.status_code == 200, packed.text
        assert daemon.count("events") == 1
    finally:
        assert daemon.stop() == 0


def test_the_pool_options_reach_the_store_url(tmp_path: Path) -> None:
    config = tmp_path / "leadlang.toml"
    config.write_text('[store]\nurl = "postgresql://h/db"\npool_size = 2\npool_timeout = "1.5s"\n')
    assert load_config(str(config)).store == "postgresql://h/db?pool_size=2&pool_timeout=1.5"
    # a parameter already on the URL (`--db`) wins
    given = load_config(str(config), db="sqlite:///x.db?pool_size=5").store
    assert given == "sqlite:///x.db?pool_size=5&pool_timeout=1.5"
    for bad in ("pool_size = 0", "pool_size = true", 'pool_timeout = "soon"'):
        config.write_text(f"[store]\n{bad}\n")
        with pytest.raises(ConfigError, match=r"store\.pool_"):
            load_config(str(config))
    with pytest.raises(StoreError, match="pool_size"):
        asyncio.run(open_store(f"sqlite:///{tmp_path / 'x.db'}?pool_size=none"))
