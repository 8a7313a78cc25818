"""The signed tracking and consent routes (RUNTIME.md sections 2 and 3): `/o/`, `/c/`, `/u/`.

No authentication but the token (`leadlang.runtime.delivery.tracking`): a token that does
not verify for its route is a 404, whatever else the request says. What a token records
enters the contact's event stream through the ingest's group commit, at the receive time,
like any tracked event, so `check opened within 2d` sees it:

  GET  /o/{token}   `message_opened`, then a 1x1 transparent GIF that is never cached
  GET  /c/{token}   `message_clicked` (with `url`), then a 302 to the URL inside the token;
                    nothing in the request (a `?url=`, a fragment) can change where it goes
  GET  /u/{token}   a page with a confirm button; changes nothing (mail scanners follow GETs)
  POST /u/{token}   `unsubscribed` for the token's channel (the button, or RFC 8058 one-click
                    with the body `List-Unsubscribe=One-Click`), then a "done" page

HEAD requests (link checkers) get the same answers and record nothing.
"""

from __future__ import annotations

import base64
import html
import logging
import time
from collections.abc import Callable

import orjson
from aiohttp import web

from leadlang.runtime.delivery.tracking import Link, Purpose, Tracker, location
from leadlang.runtime.server.ingest import Committer, error_response
from leadlang.runtime.store.sql import Incoming

log = logging.getLogger("leadlang.serve")

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
PAGE_HEADERS = {
    **NO_CACHE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.6rem 1.2rem}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


class Tracking:
    def __init__(
        self, tracker: Tracker, committer: Committer, clock: Callable[[], float] = time.time
    ) -> None:
        self.tracker = tracker
        self.committer = committer
        self.clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/o/{token}", self.opened),
            web.get("/c/{token}", self.clicked),
            web.get("/u/{token}", self.unsubscribe_page),
            web.post("/u/{token}", self.unsubscribe),
        ]

    def _link(self, request: web.Request, purpose: Purpose) -> Link | None:
        return self.tracker.read(purpose, request.match_info["token"])

    async def _record(self, link: Link, name: str, props: dict[str, object]) -> None:
        """Stores the event, durably, before returning (raises when the store fails)."""
        now = self.clock()
        body = orjson.dumps({"n": name, "p": props}).decode()
        await self.committer.submit([Incoming(None, link.send.contact, now, now, body)])

    def _props(self, link: Link) -> dict[str, object]:
        send = link.send
        return {"message": send.message, "message_id": send.key, "channel": send.channel}

    async def _record_quietly(self, link: Link, name: str, props: dict[str, object]) -> None:
        """Opens and clicks: the reader gets the pixel or the page even when recording fails."""
        if self.committer.overloaded():
            log.warning("%s of %r not recorded: too many events waiting", name, link.send.contact)
            return
        try:
            await self._record(link, name, props)
        except Exception:
            log.exception("%s of %r could not be recorded", name, link.send.contact)

    async def opened(self, request: web.Request) -> web.StreamResponse:
        link = self._link(request, "open")
        if link is None:
            return _not_found()
        if request.method == "GET":
            await self._record_quietly(link, "message_opened", self._props(link))
        return web.Response(body=PIXEL, content_type="image/gif", headers=NO_CACHE)

    async def clicked(self, request: web.Request) -> web.StreamResponse:
        link = self._link(request, "click")
        if link is None or link.url is None:
            return _not_found()
        if request.method == "GET":
            await self._record_quietly(
                link, "message_clicked", {**self._props(link), "url": link.url}
            )
        return web.Response(
            status=302,
            headers={**NO_CACHE, "Location": location(link.url), "Referrer-Policy": "no-referrer"},
        )

    async def unsubscribe_page(self, request: web.Request) -> web.StreamResponse:
        link = self._link(request, "unsubscribe")
        if link is None:
            return _not_found()
        channel = html.escape(link.send.channel)
        body = (
            f"<p>Stop all {channel} messages from us?</p>"
            '<form method="post">'  # no action: it posts to this very URL, token and all
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>'
        )
        return _page("Unsubscribe", body)

    async def unsubscribe(self, request: web.Request) -> web.StreamResponse:
        link = self._link(request, "unsubscribe")
        if link is None:
            return _not_found()
        if self.committer.overloaded():
            return _unavailable()
        try:
            await self._record(link, "unsubscribed", self._props(link))
        except Exception:
            log.exception("unsubscribe of %r could not be recorded", link.send.contact)
            return _unavailable()
        channel = html.escape(link.send.channel)
        return _page("Unsubscribed", f"<p>You will receive no more {channel} messages from us.</p>")


def _page(title: str, body: str) -> web.Response:
    text = _PAGE.format(title=html.escape(title), body=body)
    return web.Response(text=text, content_type="text/html", headers=PAGE_HEADERS)


def _not_found() -> web.Response:
    return error_response(404, "not found", "this link is not valid")


def _unavailable() -> web.Response:
    response = error_response(503, "unavailable", "could not record it now; please try again")
    response.headers["Retry-After"] = "5"
    return response
