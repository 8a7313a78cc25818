"""Segment-compatible ingest: `/v1/track`, `/v1/identify`, `/v1/page`, `/v1/batch`.

A request is read (gzip or not, at most 500 KB once decompressed), checked whole (a bad item
rejects the whole request with its index; nothing of it is stored), and then committed with
the other requests waiting at that moment in one transaction (group commit); only then is it
answered `200 {"success": true}`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hmac
import json
import logging
import re
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from leadlang.interpreter.scope import normalize_event_name
from leadlang.limits import FIRST_TEXT, LAST_TEXT, MAX_JSON_DEPTH, instant_ok, json_depth_ok
from leadlang.runtime.group_commit import settle
from leadlang.runtime.store.sql import Incoming, SqlStore

MAX_REQUEST = 500 * 1024
MAX_MESSAGE = 32 * 1024
MAX_ID_BYTES = 1024  # userId / anonymousId / messageId, in UTF-8
MAX_QUEUED_EVENTS = 200_000  # accepted but not yet committed: beyond this, 429
SUCCESS = b'{"success":true}'
KINDS = ("track", "identify", "page", "screen", "alias", "group")
IGNORED_KINDS = ("alias", "group")  # accepted (clients send them) and not stored
BACKLOG_RETRY_AFTER = 5  # seconds, in a 429's `Retry-After` when processing is behind
RETRY_AFTER = 2  # seconds, in a 503's `Retry-After`: how soon a restarting store is back
DEFAULT_PATIENCE = 10.0  # seconds a request waits for its commit to begin (see Committer)
log = logging.getLogger("leadlang.serve")


class BadRequest(Exception):
    def __init__(self, status: int, error: str, detail: str, index: int | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.index = status, error, detail, index

    def response(self) -> web.Response:
        body: dict[str, Any] = {"error": self.error, "detail": self.detail}
        if self.index is not None:
            body["index"] = self.index
        return web.json_response(body, status=self.status, dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def error_response(status: int, error: str, detail: str, **extra: Any) -> web.Response:
    return web.json_response(
        {"error": error, "detail": detail, **extra}, status=status, dumps=_dumps
    )


# ---------------------------------------------------------------- reading a request


# The encodings a body may come in, and zlib's window bits for each (deflate: decided by the
# first byte, as a zlib stream or a raw one, since clients send both).
DECODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 0}


async def read_json(request: web.Request, limit: int = MAX_REQUEST) -> Any:
    """The request's JSON body, 413 past `limit` bytes. A gzip (or deflate) body is unpacked
    here, a bounded piece at a time, so the limit applies to what it unpacks to and a small
    "zip bomb" is cut off after `limit` bytes of output. (aiohttp's own decompression is off,
    `HANDLER_ARGS`: it answered an encoding it cannot decode, `br`, with a plain-text 400.)"""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity", *DECODINGS):
        raise BadRequest(415, "unsupported encoding", f"Content-Encoding `{encoding}`: use gzip")
    packed = encoding in DECODINGS
    if not packed and request.content_length is not None and request.content_length > limit:
        raise BadRequest(413, "too large", f"the request is over {limit // 1024} KB")
    chunks: list[bytes] = []
    size = 0
    decoder: Any = None
    try:
        while chunk := await request.content.readany():
            if packed:
                if decoder is None:
                    decoder = zlib.decompressobj(_window(encoding, chunk))
                chunk = decoder.decompress(chunk, limit + 1 - size)
                if decoder.unconsumed_tail:
                    size = limit + 1  # it unpacks to more than the limit
            size += len(chunk)
            if size > limit:
                raise BadRequest(413, "too large", f"the request is over {limit // 1024} KB")
            chunks.append(chunk)
        if decoder is not None:
            chunks.append(decoder.flush())
            size += len(chunks[-1])
            if size > limit:
                raise BadRequest(413, "too large", f"the request is over {limit // 1024} KB")
        if decoder is not None and (not decoder.eof or decoder.unused_data):
            detail = "data after its end" if decoder.eof else "it is cut short"
            raise BadRequest(400, "invalid body", f"cannot decompress the body: {detail}")
    except zlib.error as exc:
        raise BadRequest(400, "invalid body", f"cannot decompress the body: {exc}") from None
    except RequestPayloadError as exc:  # a malformed chunked body
        raise BadRequest(400, "invalid body", f"cannot read the body: {exc}") from None
    raw = b"".join(chunks)
    if not raw.strip():
        raise BadRequest(400, "invalid JSON", "the request body is empty")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(400, "invalid JSON", str(exc)) from None
    if _LONG_NUMBER.search(raw):
        _exact_ids(body, raw)
    return body


# orjson reads a whole number past 64 bits as a float: 110169484474386276334 (21 digits, a
# Google account id) and ...335 would both be the contact `1.1016948447438627e+20`, where
# simulate's log reader keeps each number's digits. Such ids are read again exactly.
_LONG_NUMBER = re.compile(rb"\d{20}")
ID_FIELDS = ("userId", "anonymousId", "messageId")


def _exact_ids(body: Any, raw: bytes) -> None:
    """The ids of `body` (a message, or a batch's items) that are whole numbers too long for
    orjson, replaced by their digits, as the text simulate names them by."""
    try:
        exact = json.loads(raw)  # (valid JSON: orjson read it; json keeps every digit)
    except (RecursionError, ValueError):  # (nested past Python's stack: the depth check's)
        return
    pairs = [(body, exact)]
    if isinstance(body, dict) and isinstance(body.get("batch"), list):
        pairs += zip(body["batch"], exact["batch"], strict=True)
    for item, read in pairs:
        if not isinstance(item, dict):
            continue
        for field in ID_FIELDS:
            value = read.get(field)
            if isinstance(value, int) and not isinstance(value, bool) and value != item[field]:
                item[field] = str(value)


def _window(encoding: str, first: bytes) -> int:
    window = DECODINGS[encoding]
    if window == 0:  # deflate: a zlib stream starts with a byte whose low 4 bits are 8
        window = zlib.MAX_WBITS if first[0] & 0x0F == 8 else -zlib.MAX_WBITS
    return window


# What the app's HTTP server is given (`make_app`): bodies reach ingest as sent.
HANDLER_ARGS = {"auto_decompress": False}


def header_key(request: web.Request) -> tuple[bool, str | None]:
    """(whether the `Authorization` header carries credentials, the write key in them):
    HTTP Basic (the key as user name) or `Bearer KEY`; the key is None when the header is
    not readable. Without such a header the key may be the body's `writeKey`."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return True, None
        return True, decoded.partition(":")[0]
    if scheme.lower() == "bearer":
        return True, value.strip()
    return False, None


def body_key(body: Any) -> str | None:
    """`writeKey` in the JSON body (older Segment Python clients send only that)."""
    if isinstance(body, dict) and isinstance(body.get("writeKey"), str):
        return body["writeKey"]
    return None


def key_matches(given: str | None, keys: tuple[str, ...]) -> bool:
    if not given:
        return False
    found = False
    given_bytes = given.encode("utf-8", "surrogatepass")  # (a header with odd bytes)
    for key in keys:  # compare with every key, in constant time
        found |= hmac.compare_digest(given_bytes, key.encode())
    return found


# ---------------------------------------------------------------- one message


def parse_time(value: Any) -> float | None:
    """An ISO 8601 time as POSIX seconds; None when it is not one (no offset: UTC)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.timestamp()
    except (OverflowError, ValueError):
        return None


def _id_text(value: Any) -> str | None:
    """A contact id: a non-empty string as it is, another JSON value as its JSON text."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | dict | list):
        return None
    return orjson.dumps(value).decode()


def parse_message(
    item: Any, kind: str | None, received: float, index: int | None
) -> Incoming | None:
    """One Segment message (`kind` forced by the route, None in a batch); None when accepted
    and ignored (alias, group). Raises BadRequest naming the field."""

    def bad(detail: str) -> BadRequest:
        return BadRequest(400, "invalid event", detail, index)

    if not isinstance(item, dict):
        return _raise(bad("expected a JSON object"))
    if kind is None:
        kind = item.get("type")
        if not isinstance(kind, str) or kind not in KINDS:
            raise bad(f"`type` must be one of {', '.join(KINDS)}")
    if kind in IGNORED_KINDS:
        return None
    user = item.get("userId")
    contact = _id_text(user)
    if contact is None:
        contact = _id_text(item.get("anonymousId"))
    if contact is None:
        raise bad("missing `userId` or `anonymousId`")
    _check_key_text(contact, "userId", bad)
    props = item.get("properties")
    if props is None:
        props = {}
    elif not isinstance(props, dict):
        raise bad("`properties` must be an object")
    traits = item.get("traits")
    if traits is not None and not isinstance(traits, dict):
        raise bad("`traits` must be an object")
    context = item.get("context")
    if context is not None and not isinstance(context, dict):
        raise bad("`context` must be an object")
    if kind == "identify" and context is not None and context.get("traits") is not None:
        # RudderStack's client sends an identify's traits only as `context.traits`
        if not isinstance(context["traits"], dict):
            raise bad("`context.traits` must be an object")
        traits = {**context["traits"], **(traits or {})}
    for field, value in (("properties", props), ("traits", traits)):
        # (as simulate's log reader: counting the message's own object)
        if value and not json_depth_ok(value, MAX_JSON_DEPTH - 1):
            raise bad(f"`{field}` nests deeper than {MAX_JSON_DEPTH} levels")
    message_id = item.get("messageId")
    if message_id is not None and not isinstance(message_id, str):
        if isinstance(message_id, int | float) and not isinstance(message_id, bool):
            message_id = orjson.dumps(message_id).decode()
        else:
            raise bad("`messageId` must be a string")
    if message_id:
        _check_key_text(message_id, "messageId", bad)
    t = _event_time(item, received, bad)
    name: str | None
    if kind == "track":
        event = item.get("event")
        if not isinstance(event, str) or not event.strip():
            raise bad("missing `event` (the event's name) on a track")
        name = _event_name(event) if len(event) <= 64 else normalize_event_name(event)
        if not name:
            raise bad(f"`event` {event!r} has no letters or digits")
        body: dict[str, Any] = {"n": name, "p": props}
    elif kind == "identify":
        body = {"n": None, "p": props, "tr": traits or {}}
    elif kind == "page":
        body = {"n": "page_viewed", "p": props}
    else:  # screen: the app's page view
        body = {"n": "screen_viewed", "p": props}
    return Incoming(message_id or None, contact, t, received, orjson.dumps(body).decode())


# An app sends a few event names over and over: each is normalized once (short names only,
# so the cache stays small whatever clients send).
_event_name = functools.lru_cache(maxsize=4096)(normalize_event_name)


def _check_key_text(text: str, field: str, bad: Callable[[str], BadRequest]) -> None:
    """An id stored as a key: PostgreSQL text holds no NUL, and its indexes no entry much
    over 2.7 KB, so both are refused here (a 400) rather than failing the commit (a 500 for
    every request committed with this one)."""
    if "\x00" in text:
        raise bad(f"`{field}` contains a NUL character")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise bad(f"`{field}` is longer than {MAX_ID_BYTES} bytes")


def _raise(exc: BadRequest) -> Any:
    raise exc


def _event_time(item: dict[str, Any], received: float, bad: Callable[[str], BadRequest]) -> float:
    """The timestamp; missing, `receivedAt - (sentAt - originalTimestamp)` when both are
    given, else the receive time; a time in the future (however far) is clamped to the
    receive time."""
    raw = item.get("timestamp")
    if raw is not None:
        t = parse_time(raw)
        if t is None:
            raise bad(f"`timestamp` {orjson.dumps(raw).decode()[:60]} is not an ISO 8601 time")
    else:
        sent, original = item.get("sentAt"), item.get("originalTimestamp")
        t = received
        if sent is not None or original is not None:
            sent_t, original_t = parse_time(sent), parse_time(original)
            if sent is not None and sent_t is None:
                raise bad("`sentAt` is not an ISO 8601 time")
            if original is not None and original_t is None:
                raise bad("`originalTimestamp` is not an ISO 8601 time")
            if sent_t is not None and original_t is not None:
                t = received - (sent_t - original_t)
    t = min(t, received)
    if not instant_ok(t):  # the range simulate takes too
        raise bad(f"`timestamp` is outside {FIRST_TEXT} to {LAST_TEXT}")
    return t


# ---------------------------------------------------------------- group commit


class Backpressure(Exception):
    """A request waited longer than its patience for its commit to begin: nothing of it is
    stored (answered 429)."""


class Committer:
    """Requests' events queued, committed together, each request answered after its commit.

    A request waits for its commit to begin at most `patience` seconds (default: as long as
    the store's pool lets a transaction wait for a connection, `[store] pool_timeout`); past
    that it leaves the queue, nothing of it stored, and is told so (`Backpressure`: a 429). A
    request whose commit has begun always waits for that commit's outcome."""

    def __init__(
        self,
        store: SqlStore,
        clock: Callable[[], float],
        on_commit: Callable[[], None],
        patience: float | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_commit = on_commit
        self.patience = patience if patience is not None else store_patience(store)
        self.queue: list[tuple[list[Incoming], asyncio.Future[None]]] = []
        self.queued_events = 0
        # accepted events still waiting to be processed, when past `server.max_backlog`
        # (the daemon's `watch_backlog` keeps it); 0 otherwise
        self.backlog = 0
        self._ready = asyncio.Event()
        self.commits = 0
        self.committed_events = 0

    def overloaded(self) -> bool:
        return self.queued_events >= MAX_QUEUED_EVENTS

    async def submit(self, events: list[Incoming], patient: bool = False) -> None:
        """Wait until `events` are committed (or the commit fails: its exception). `patient`:
        give up (`Backpressure`) when the commit has not begun after `self.patience`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (events, future)
        self.queue.append(entry)
        self.queued_events += len(events)
        self._ready.set()
        timer = loop.call_later(self.patience, self._expire, entry) if patient else None
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, entry: tuple[list[Incoming], asyncio.Future[None]]) -> None:
        """A request out of patience leaves the queue, nothing of it stored; one whose commit
        has begun (no longer queued) waits for that commit's outcome."""
        for index, waiting in enumerate(self.queue):
            if waiting is entry:
                del self.queue[index]
                self.queued_events -= len(entry[0])
                if not entry[1].done():
                    entry[1].set_exception(Backpressure())
                return

    async def run(self, stop: asyncio.Event) -> None:
        while True:
            if not self.queue:
                if stop.is_set():
                    return
                self._ready.clear()
                stopping = asyncio.ensure_future(stop.wait())
                ready = asyncio.ensure_future(self._ready.wait())
                await asyncio.wait({stopping, ready}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                ready.cancel()
                continue
            taken, self.queue = self.queue, []
            count = sum(len(events) for events, _ in taken)
            try:
                write = self.store.accept([events for events, _ in taken], self.clock())
                if await settle(write, [future for _, future in taken]):
                    self.commits += 1
                    self.committed_events += count
                    self.on_commit()
            finally:
                self.queued_events -= count


# ---------------------------------------------------------------- routes


# The routes of one message, and the kind each forces: Segment's HTTP API, and the one-letter
# names Segment's browser library (analytics.js) posts to (`/v1/t`, ...). Alias and group
# are accepted and ignored, as in a batch.
SINGLE_ROUTES = {
    "/v1/track": "track",
    "/v1/identify": "identify",
    "/v1/page": "page",
    "/v1/screen": "screen",
    "/v1/alias": "alias",
    "/v1/group": "group",
    "/v1/t": "track",
    "/v1/i": "identify",
    "/v1/p": "page",
    "/v1/s": "screen",
    "/v1/a": "alias",
    "/v1/g": "group",
}
# `{"batch": [...]}`: Segment's name, its other one, and analytics.js's batching one
BATCH_ROUTES = ("/v1/batch", "/v1/import", "/v1/b")
INGEST_PATHS = frozenset((*SINGLE_ROUTES, *BATCH_ROUTES))
CORS_MAX_AGE = 86400  # seconds a browser may keep a preflight's answer


def cors_middleware() -> Any:
    """Ingest from web pages (analytics.js, RudderStack's JavaScript SDK): a browser sends an
    event from the page's origin, first asking with an `OPTIONS` preflight when the request
    has an `Authorization` or JSON `Content-Type` header, and gives the page the answer only
    when it carries `Access-Control-Allow-Origin` (else its library takes the event as lost
    and sends it again and again). The ingest routes answer the preflight (204) and allow
    every origin: the write key is what authorizes, and it ships inside the page anyway.
    Cookies confer nothing here, so credentialed requests are allowed too. The admin routes
    stay closed to other origins."""

    @web.middleware
    async def cors(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in INGEST_PATHS:
            return await handler(request)
        origin = request.headers.get("Origin")
        headers = {"Access-Control-Allow-Origin": origin or "*"}
        if origin:
            headers["Access-Control-Allow-Credentials"] = "true"
            headers["Vary"] = "Origin"
        if request.method == "OPTIONS":
            asked = request.headers.get("Access-Control-Request-Headers")
            headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            headers["Access-Control-Allow-Headers"] = (
                asked or "Authorization, Content-Type, Content-Encoding"
            )
            headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE)
            return web.Response(status=204, headers=headers)
        response = await handler(request)
        response.headers.update(headers)
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        return response

    return cors


# What `/metrics` calls each status ingest rejects a request with.
REJECTION_REASONS = {
    400: "invalid",
    401: "unauthorized",
    413: "too_large",
    415: "unsupported_encoding",
    429: "overloaded",
}


class Ingest:
    def __init__(self, committer: Committer, write_keys: tuple[str, ...]) -> None:
        self.committer = committer
        self.write_keys = write_keys
        # requests rejected, by reason (REJECTION_REASONS, or "store_error"): for /metrics
        self.rejected: dict[str, int] = dict.fromkeys(
            [*REJECTION_REASONS.values(), "store_error"], 0
        )

    def _reject(self, response: web.Response) -> web.Response:
        reason = REJECTION_REASONS.get(response.status, str(response.status))
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return response

    def routes(self) -> list[web.RouteDef]:
        return [
            *(web.post(path, self.single(kind)) for path, kind in SINGLE_ROUTES.items()),
            *(web.post(path, self.batch) for path in BATCH_ROUTES),
        ]

    def single(self, kind: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            return await self._handle(request, kind)

        return handler

    async def batch(self, request: web.Request) -> web.Response:
        return await self._handle(request, None)

    async def _handle(self, request: web.Request, kind: str | None) -> web.Response:
        received = time.time()
        try:
            if self.committer.overloaded():
                return self._reject(_overloaded())
            if self.committer.backlog:
                return self._reject(
                    _overloaded(
                        f"{self.committer.backlog} events accepted earlier are still waiting"
                        " to be processed; retry",
                        retry_after=BACKLOG_RETRY_AFTER,
                    )
                )
            # Credentials in the header are checked before the body is read: a wrong key is
            # a 401 whatever the body is (and an unknown client never makes us unpack it).
            in_header, given = header_key(request)
            if in_header and not key_matches(given, self.write_keys):
                return self._reject(_unauthorized())
            body = await read_json(request)
            if not in_header and not key_matches(body_key(body), self.write_keys):
                return self._reject(_unauthorized())
            events = _events_of(body, kind, received)
        except BadRequest as exc:
            return self._reject(exc.response())
        if events:
            try:
                await self.committer.submit(events, patient=True)
            except Exception as exc:
                return self._store_failed(exc)
        return web.Response(status=200, body=SUCCESS, content_type="application/json")

    def _store_failed(self, exc: Exception) -> web.Response:
        """The answer when the events could not be committed: never a 200, and nothing of
        the request stored (or, when the connection broke during the commit, stored whole:
        the client's retry is then deduplicated by `messageId`)."""
        if isinstance(exc, Backpressure | PoolTimeout):
            return self._reject(_overloaded("the store is slow to take more events; retry"))
        self.rejected["store_error"] += 1
        if store_unavailable(exc):
            log.warning("ingest: the store is unavailable (%s: %s)", type(exc).__name__, exc)
            response = error_response(
                503, "unavailable", "the store cannot be reached; nothing was stored; retry"
            )
            response.headers["Retry-After"] = str(RETRY_AFTER)
            return response
        log.error("ingest: the commit failed", exc_info=exc)
        return error_response(500, "store error", "the events could not be stored; retry")


# SQLSTATE classes of a server that cannot serve now: 08 connection exception, 53 insufficient
# resources (too many connections), 57 operator intervention (shutting down, starting up).
UNAVAILABLE_SQLSTATES = ("08", "53", "57")


def store_unavailable(exc: BaseException) -> bool:
    """Whether `exc` is the store being out of reach (down, restarting, a connection cut or
    refused), rather than something wrong with what was written."""
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    seen: BaseException | None = exc
    for _ in range(4):  # the error, the driver's error it wraps, and theirs
        if seen is None:
            break
        if isinstance(seen, OSError | TimeoutError):  # refused, reset (ConnectionError)
            return True
        state = getattr(seen, "sqlstate", None)
        if isinstance(state, str) and state.startswith(UNAVAILABLE_SQLSTATES):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def store_patience(store: SqlStore) -> float:
    """How long the store's write pool lets a transaction wait for a connection."""
    pool = store.writer.pool
    timeout = getattr(pool, "timeout", None)
    return float(timeout()) if callable(timeout) else DEFAULT_PATIENCE


def _unauthorized() -> web.Response:
    return error_response(401, "unauthorized", "a valid write key is required")


def _overloaded(
    detail: str = "too many events waiting to be stored; retry", retry_after: int = 1
) -> web.Response:
    response = error_response(429, "overloaded", detail)
    response.headers["Retry-After"] = str(retry_after)
    return response


def _events_of(body: Any, kind: str | None, received: float) -> list[Incoming]:
    if kind is not None:
        if len(orjson.dumps(body)) > MAX_MESSAGE:
            raise BadRequest(413, "too large", f"a message is over {MAX_MESSAGE // 1024} KB")
        event = parse_message(body, kind, received, None)
        return [event] if event is not None else []
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise BadRequest(400, "invalid batch", 'expected {"batch": [...]}')
    items = body["batch"]
    # The Segment and RudderStack clients send `sentAt` once, for the batch: the clock-skew
    # rule of a message without a `timestamp` uses it when the message has none of its own.
    sent_at = body.get("sentAt")
    if sent_at is not None and parse_time(sent_at) is None:
        raise BadRequest(400, "invalid batch", "the batch's `sentAt` is not an ISO 8601 time")
    check_sizes = len(orjson.dumps(items)) > MAX_MESSAGE
    events: list[Incoming] = []
    for index, item in enumerate(items):
        if check_sizes and len(orjson.dumps(item)) > MAX_MESSAGE:
            raise BadRequest(413, "too large", f"a message is over {MAX_MESSAGE // 1024} KB", index)
        if sent_at is not None and isinstance(item, dict) and item.get("sentAt") is None:
            item = {**item, "sentAt": sent_at}
        event = parse_message(item, None, received, index)
        if event is not None:
            events.append(event)
    return events
