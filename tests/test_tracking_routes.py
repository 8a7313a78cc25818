"""The tracking routes when recording fails (a store that is down, an ingest queue that is
full): opens and clicks still answer the pixel and the redirect, an unsubscribe is never
confirmed unless it was stored. The rest is tested against a real serve
(test_tracking_serve.py); here the routes run in-process over a committer that fails."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from leadlang.runtime.delivery.tracking import Send, Tracker
from leadlang.runtime.server.tracking import Tracking
from leadlang.runtime.store.sql import Incoming

pytestmark = pytest.mark.timeout(60)
TRACKER = Tracker("secret", "http://127.0.0.1")
SEND = Send("alice", "0123456789abcdef0123456789abcdef", "email", "welcome")


class Committer:
    """Ingest's committer as the routes see it; stores into a list, or fails."""

    def __init__(self, fail: bool = False, full: bool = False) -> None:
        self.fail, self.full = fail, full
        self.stored: list[Incoming] = []

    def overloaded(self) -> bool:
        return self.full

    async def submit(self, events: list[Incoming]) -> None:
        if self.fail:
            raise OSError("the store is unreachable")
        self.stored.extend(events)


def run(committer: Committer, *requests: tuple[str, str]) -> list[tuple[int, dict[str, str]]]:
    async def go() -> list[tuple[int, dict[str, str]]]:
        app = web.Application()
        app.add_routes(Tracking(TRACKER, committer, lambda: 1000.0).routes())  # type: ignore[arg-type]
        async with TestServer(app) as server, aiohttp.ClientSession() as session:
            answers = []
            for method, path in requests:
                async with session.request(
                    method, server.make_url(path), allow_redirects=False
                ) as response:
                    await response.read()
                    answers.append((response.status, dict(response.headers)))
            return answers

    return asyncio.run(go())


def path(url: str) -> str:
    return url.removeprefix("http://127.0.0.1")


OPEN = path(TRACKER.url("open", SEND))
CLICK = path(TRACKER.url("click", SEND, 0, "https://shop.example/"))
UNSUBSCRIBE = path(TRACKER.url("unsubscribe", SEND))


def test_events_are_stored_at_the_receive_time_with_the_tokens_send() -> None:
    committer = Committer()
    answers = run(committer, ("GET", OPEN), ("GET", CLICK), ("POST", UNSUBSCRIBE))
    assert [status for status, _ in answers] == [200, 302, 200]
    bodies: list[Any] = [
        (e.contact, e.t, e.received, e.message_id, e.body) for e in committer.stored
    ]
    props = '"message":"welcome","message_id":"0123456789abcdef0123456789abcdef","channel":"email"'
    assert bodies == [
        ("alice", 1000.0, 1000.0, None, f'{{"n":"message_opened","p":{{{props}}}}}'),
        (
            "alice",
            1000.0,
            1000.0,
            None,
            f'{{"n":"message_clicked","p":{{{props},"url":"https://shop.example/"}}}}',
        ),
        ("alice", 1000.0, 1000.0, None, f'{{"n":"unsubscribed","p":{{{props}}}}}'),
    ]


@pytest.mark.parametrize("committer", [Committer(fail=True), Committer(full=True)])
def test_a_failure_to_record_never_breaks_the_pixel_or_the_link(committer: Committer) -> None:
    (opened, clicked, unsubscribed, page) = run(
        committer, ("GET", OPEN), ("GET", CLICK), ("POST", UNSUBSCRIBE), ("GET", UNSUBSCRIBE)
    )
    assert opened[0] == 200 and opened[1]["Content-Type"] == "image/gif"
    assert clicked[0] == 302 and clicked[1]["Location"] == "https://shop.example/"
    assert unsubscribed[0] == 503 and unsubscribed[1]["Retry-After"]
    assert page[0] == 200
    assert committer.stored == []


def test_head_requests_record_nothing() -> None:
    committer = Committer()
    answers = run(committer, ("HEAD", OPEN), ("HEAD", CLICK), ("HEAD", UNSUBSCRIBE))
    assert [status for status, _ in answers] == [200, 302, 200]
    assert committer.stored == []
