"""A real HTTP receiver for the network drivers' tests: an aiohttp server on a free
127.0.0.1 port that records every request and answers each path from a script."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import attrs
from aiohttp import web


@attrs.frozen
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@attrs.frozen
class Answer:
    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict)
    body: str = "ok"
    hang: bool = False
    echo: bool = False  # answer with the request's headers and body (a chatty provider)


class Receiver:
    """Records every request; each path answers from its script (the last answer repeats)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.scripts: dict[str, list[Answer]] = {}
        self.port = 0
        self.released = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def script(self, path: str, *answers: Answer) -> str:
        self.scripts[path] = list(answers)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request.method, request.path, dict(request.headers), body)
        self.seen.append(seen)
        script = self.scripts.get(request.path) or [Answer()]
        answer = script.pop(0) if len(script) > 1 else script[0]
        if answer.hang:
            await self.released.wait()  # until the test ends
        text = answer.body
        if answer.echo:
            text = json.dumps(seen.headers) + body.decode()
        return web.Response(status=answer.status, headers=answer.headers, text=text)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self.released.set()
        await asyncio.sleep(0.01)
        if self._runner is not None:
            await self._runner.cleanup()
