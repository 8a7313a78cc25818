"""`secret("NAME")` in a push message: serve refuses to start without it, naming it; with it,
the webhook receives the value (signed per Standard Webhooks), while the store keeps only
the placeholder and nothing prints the value."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web
from standardwebhooks import Webhook

from tests.serve_daemon import ADMIN_TOKEN, WRITE_KEY, Daemon, free_port

pytestmark = pytest.mark.timeout(90)
SIGNING = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOKEN = "s3cr3t-push-token"

SCRIPT = """
message ping:
  channel push
  url "http://127.0.0.1:{port}/push"
  headers {"X-Token": secret("PUSH_TOKEN")}
  json {customer_id: id, token: secret("PUSH_TOKEN")}

flow f:
  on signed_up
  send ping
"""


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[tuple[dict[str, str], bytes]]]]:
    """An aiohttp receiver on a free port, in a thread: the requests it got."""
    got: list[tuple[dict[str, str], bytes]] = []
    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def push(request: web.Request) -> web.Response:
        got.append((dict(request.headers), await request.read()))
        return web.Response(status=200)

    async def start() -> web.AppRunner:
        app = web.Application()
        app.add_routes([web.post("/push", push)])
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    yield port, got
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def config() -> str:
    return (
        f'[server]\nwrite_keys = ["{WRITE_KEY}"]\nadmin_token = "{ADMIN_TOKEN}"\n'
        f'[channels.push]\ndriver = "webhook"\nsigning_secret = "{SIGNING}"\n'
    )


def sign_up(daemon: Daemon, user: str, got: list[Any], requests_then: int) -> None:
    """Post `user`'s signed_up; wait (up to 30 s) until the receiver got `requests_then`."""
    batch = [{"type": "track", "userId": user, "event": "signed_up"}]
    assert daemon.post("/v1/batch", {"batch": batch}).status_code == 200
    deadline = time.monotonic() + 30
    while len(got) < requests_then and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_missing_secret_is_named_and_serve_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "p.lead").write_text(SCRIPT.replace("{port}", "1"), encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "leadlang",
            "serve",
            str(tmp_path / "p.lead"),
            "--listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in __import__("os").environ.items() if k != "PUSH_TOKEN"},
        timeout=60,
    )
    assert done.returncode == 2
    assert "`PUSH_TOKEN`" in done.stderr


def test_the_secret_reaches_the_receiver_and_nothing_else(
    tmp_path: Path, receiver: tuple[int, list[tuple[dict[str, str], bytes]]]
) -> None:
    port, got = receiver
    (tmp_path / "p.lead").write_text(SCRIPT.replace("{port}", str(port)), encoding="utf-8")
    daemon = Daemon(
        tmp_path, [str(tmp_path / "p.lead")], config=config(), env={"PUSH_TOKEN": TOKEN}
    ).start()
    try:
        sign_up(daemon, "ann", got, 1)
        assert len(got) == 1
        headers, body = got[0]
        assert headers["X-Token"] == TOKEN
        Webhook(SIGNING).verify(body, headers)  # raises when the signature is wrong
        assert __import__("json").loads(body) == {"customer_id": "ann", "token": TOKEN}
        ledger = daemon.admin("/v1/effects").text + daemon.admin("/v1/outbox").text
    finally:
        assert daemon.stop() == 0
    stored = sqlite3.connect(tmp_path / "leadlang.db")
    dump = "\n".join(stored.iterdump())
    assert TOKEN not in dump and "{{secret:PUSH_TOKEN}}" in dump
    assert TOKEN not in ledger and TOKEN not in "\n".join(daemon.output)


PLAIN = """
message hello:
  channel push
  url "http://127.0.0.1:{port}/push"
  json {customer_id: id}

flow f:
  on signed_up
  send hello
"""


@pytest.mark.parametrize("processes", [1, 2])
def test_a_reloaded_program_s_new_secret_reaches_the_receiver(
    tmp_path: Path, receiver: tuple[int, list[tuple[dict[str, str], bytes]]], processes: int
) -> None:
    # the secret is in the environment from the start, but only a program whose messages use
    # it lets it reach a driver: here the second, which a reload brings while serve runs
    # (with two processes, the back end in its child process takes it up too)
    port, got = receiver
    script = tmp_path / "p.lead"
    script.write_text(PLAIN.replace("{port}", str(port)), encoding="utf-8")
    settings = config().replace("[server]\n", f"[server]\nprocesses = {processes}\n")
    daemon = Daemon(tmp_path, [str(script)], config=settings, env={"PUSH_TOKEN": TOKEN})
    daemon.start()
    try:
        sign_up(daemon, "ann", got, 1)
        script.write_text(SCRIPT.replace("{port}", str(port)), encoding="utf-8")
        reloaded = requests.post(
            daemon.url + "/v1/reload",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
        assert reloaded.status_code == 200 and reloaded.json()["reloaded"] is True
        # at once after the reload: the first send of the new program finds its secret
        sign_up(daemon, "bob", got, 2)
        outbox = daemon.query("SELECT contact, status, last_error FROM outbox ORDER BY contact")
    finally:
        assert daemon.stop() == 0
    assert outbox == [("ann", "sent", None), ("bob", "sent", None)]
    bodies = [__import__("json").loads(body) for _, body in got]
    assert bodies == [{"customer_id": "ann"}, {"customer_id": "bob", "token": TOKEN}]
    assert got[1][0]["X-Token"] == TOKEN


NOSY = """
trait nick: text

message ping:
  channel push
  url "http://127.0.0.1:{port}/push"
  headers {"X-Token": secret("PUSH_TOKEN"), "X-Nick": nick}
  json {nick: nick, greeting: "hi {{ nick }}", token: secret("PUSH_TOKEN")}

flow f:
  on signed_up
  send ping
"""


def test_a_trait_that_spells_a_secret_placeholder_stays_text(
    tmp_path: Path, receiver: tuple[int, list[tuple[dict[str, str], bytes]]]
) -> None:
    # a contact controls its traits: one that reads like the stored form of `secret(...)`
    # must reach the receiver as text, not as the secret's value
    port, got = receiver
    (tmp_path / "p.lead").write_text(NOSY.replace("{port}", str(port)), encoding="utf-8")
    daemon = Daemon(
        tmp_path, [str(tmp_path / "p.lead")], config=config(), env={"PUSH_TOKEN": TOKEN}
    ).start()
    nick = "{{secret:PUSH_TOKEN}}!"
    try:
        identify = {"type": "identify", "userId": "eve", "traits": {"nick": nick}}
        assert daemon.post("/v1/batch", {"batch": [identify]}).status_code == 200
        sign_up(daemon, "eve", got, 1)
        assert len(got) == 1
    finally:
        assert daemon.stop() == 0
    headers, body = got[0]
    sent = __import__("json").loads(body)
    assert headers["X-Token"] == sent["token"] == TOKEN  # the message's own secret
    for text in (headers["X-Nick"], sent["nick"], sent["greeting"]):
        assert TOKEN not in text and "secret:PUSH_TOKEN" in text, text


SMS = """
message hi:
  channel sms
  text "hi"

flow f:
  on signed_up
  set phone = "+15550100"
  send hi
"""


def test_a_secret_placeholder_in_the_channel_config_is_filled_in(
    tmp_path: Path, receiver: tuple[int, list[tuple[dict[str, str], bytes]]]
) -> None:
    port, got = receiver
    (tmp_path / "p.lead").write_text(SMS, encoding="utf-8")
    settings = (
        f'[server]\nwrite_keys = ["{WRITE_KEY}"]\nadmin_token = "{ADMIN_TOKEN}"\n'
        f'[channels.sms]\ndriver = "http"\nurl = "http://127.0.0.1:{port}/push"\n'
        'headers = { Authorization = "Bearer {{secret:SMS_TOKEN}}" }\n'
    )
    daemon = Daemon(
        tmp_path, [str(tmp_path / "p.lead")], config=settings, env={"SMS_TOKEN": TOKEN}
    ).start()
    try:
        sign_up(daemon, "ann", got, 1)
        assert len(got) == 1
    finally:
        assert daemon.stop() == 0
    assert got[0][0]["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in "\n".join(daemon.output)
