"""The HTTP runner of `leadlang serve`: aiohttp's, with its own refusals answered in JSON.

A request aiohttp cannot parse (a malformed request line or header, headers past its limits,
a broken chunked body) never reaches the application and its middlewares: aiohttp answers
it itself, in plain text. Here those answers carry the same `{"error", "detail"}` JSON body
as every other refusal of the daemon, with aiohttp's status (400, 413, 431, ...), and the
connection is closed after them, as aiohttp does.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from leadlang.runtime.server.ingest import error_response

log = logging.getLogger("leadlang.serve")


class _JsonRefusals(RequestHandler):
    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:  # (the routes answer their own failures: this is aiohttp's)
            return super().handle_error(request, status, exc, message)
        if request.writer.output_size > 0:  # (as aiohttp: too late for another response)
            raise ConnectionError("a response was already begun")
        detail = f"the request could not be read as HTTP: {_first_line(exc, message)}"
        # one line, not aiohttp's traceback: anyone on the internet can send such bytes
        log.info("%s refused (%d): %s", request.remote, status, detail)
        try:
            reason = HTTPStatus(status).phrase.lower()
        except ValueError:
            reason = "bad request"
        response = error_response(status, reason, detail)
        response.force_close()
        return response


def _first_line(exc: BaseException | None, message: str | None) -> str:
    text = (message or (str(exc) if exc is not None else "")).strip()
    return text.splitlines()[0][:200] if text else "malformed"


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonRefusals(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """`web.AppRunner` whose connections answer aiohttp's own refusals in JSON."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # (the same server, its connections made by `_Server`)
        return server
