"""SMS over HTTP (RUNTIME.md section 4): POST JSON `{to, text, message_id}` to the provider.

Each attempt sends the configured `headers` and `Idempotency-Key: KEY`, the same on every
retry, so a provider that deduplicates recognises a retry after a lost answer. The answer:
2xx is sent; 408, 429 and 5xx are retries, after the `Retry-After` the provider asked for
(seconds or an HTTP date); any other status is final (a 4xx will not change on retry;
redirects are not followed, so credentials never travel to another host). Connection errors
are retries. The webhook driver shares `post` and its rules.

Header values are never logged nor put in an outcome (they carry credentials).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime

import aiohttp
import orjson
from multidict import CIMultiDict
from yarl import URL

from leadlang.runtime.delivery.drivers.placeholders import Filler, MissingSecret
from leadlang.runtime.delivery.outbox import Delivery, Outcome

RETRYABLE = frozenset({408, 429})
MAX_RETRY_AFTER = 86400.0  # seconds: a provider cannot park a send for longer than a day
SNIPPET = 300  # characters of a provider's answer kept in an error


class Session:
    """One aiohttp client session (its connection pool) per event loop, made when first used."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": "leadlang"},
                # the worker bounds each attempt; this only keeps a stray call from hanging
                timeout=aiohttp.ClientTimeout(total=300),
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


def http_url(url: str) -> bool:
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def answer_outcome(status: int, retry_header: str | None, body: str, now: float) -> Outcome:
    """The outcome of an HTTP answer: 2xx sent; 408, 429, 5xx retry; anything else final."""
    if 200 <= status < 300:
        return Outcome.sent()
    error = f"HTTP {status}"
    snippet = " ".join(body.split())[:SNIPPET]
    if snippet:
        error += f": {snippet}"
    if status in RETRYABLE or status >= 500:
        return Outcome.retry(error, after=retry_after(retry_header, now))
    if 300 <= status < 400:
        error += " (redirects are not followed)"
    return Outcome.failed(error)


async def post(
    session: aiohttp.ClientSession,
    url: str,
    headers: CIMultiDict[str],
    body: bytes,
    filler: Filler,
    clock: Callable[[], float],
) -> Outcome:
    """POST `body` and turn the answer (or the failure) into an outcome with no secret in it."""
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as answer:
            raw = await answer.content.read(4 * SNIPPET)
            # redacted before it is cut short, so no piece of a secret survives
            text = filler.redact(raw.decode("utf-8", "replace"))
            outcome = answer_outcome(
                answer.status, answer.headers.get("Retry-After"), text, clock()
            )
    except aiohttp.InvalidURL:
        return Outcome.failed("the url is not a valid http(s) URL")
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        return Outcome.retry(filler.redact(describe(error)))
    except ValueError as error:  # e.g. a header value aiohttp refuses to send (a newline)
        return Outcome.failed(filler.redact(f"the request cannot be sent: {describe(error)}"))
    return outcome


def describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class HttpSmsDriver:
    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.secrets: Mapping[str, str] = secrets if secrets is not None else {}
        self.clock = clock
        self._session = Session()

    async def deliver(self, delivery: Delivery) -> Outcome:
        if not delivery.to:
            return Outcome.failed("no phone number")
        # Placeholders are filled in the configured url and headers only: check accepts
        # `secret()` nowhere in an SMS, and its text may hold what a contact typed.
        filler = Filler(self.secrets)
        try:
            url = filler.text(self.url)
            headers = CIMultiDict(
                (name, filler.text(value)) for name, value in self.headers.items()
            )
        except MissingSecret as missing:
            return Outcome.failed(str(missing))
        headers["Content-Type"] = "application/json"
        headers["Idempotency-Key"] = delivery.key
        body = orjson.dumps(
            {
                "to": delivery.to,
                "text": delivery.content.get("text") or "",
                "message_id": delivery.key,
            }
        )
        return await post(self._session.get(), url, headers, body, filler, self.clock)

    async def close(self) -> None:
        await self._session.close()
