"""Push as a signed webhook (RUNTIME.md section 4): the message's own url, headers and JSON.

Each attempt POSTs the stored `json` (or, when the message has none, its `title` and `text`)
to the stored `url` with the stored `headers`, signed per Standard Webhooks with the
channel's `signing_secret` (the `standardwebhooks` package): `webhook-id` is the send's key,
the same on every retry, so the receiver can drop a duplicate; `webhook-timestamp` is the
attempt's time; `webhook-signature` is `v1,` + HMAC-SHA256 of `id.timestamp.body`. A message
cannot set those three headers itself. `{{secret:NAME}}` placeholders in the url, header
values and JSON strings are filled in at each attempt. Answers count as for SMS over HTTP.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from multidict import CIMultiDict
from standardwebhooks import Webhook

from leadlang.runtime.delivery.drivers.http import Session, http_url, post
from leadlang.runtime.delivery.drivers.placeholders import Filler, MissingSecret
from leadlang.runtime.delivery.outbox import Delivery, Outcome

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class WebhookDriver:
    def __init__(
        self,
        signing_secret: str,
        secrets: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._webhook = Webhook(signing_secret)
        self.secrets: Mapping[str, str] = secrets if secrets is not None else {}
        self.clock = clock
        self._session = Session()

    async def deliver(self, delivery: Delivery) -> Outcome:
        content = delivery.content
        raw_url = content.get("url")
        if not isinstance(raw_url, str) or not raw_url.strip():
            return Outcome.failed("the push message has no `url`")
        allowed = content.get("secrets")
        filler = Filler(self.secrets, allowed if isinstance(allowed, list) else None)
        try:
            url = filler.text(raw_url.strip())
            headers = CIMultiDict(
                (str(name), filler.text(str(value)))
                for name, value in (content.get("headers") or {}).items()
            )
            payload = filler.data(webhook_body(content))
        except MissingSecret as missing:
            return Outcome.failed(str(missing))
        if not http_url(url):
            return Outcome.failed(f"the push url is not an http(s) URL: {raw_url!r}")
        try:
            body = orjson.dumps(payload)
        except TypeError as error:
            return Outcome.failed(filler.redact(f"the push body is not JSON: {error}"))
        timestamp = math.floor(self.clock())
        signature = self._webhook.sign(
            msg_id=delivery.key,
            timestamp=datetime.fromtimestamp(timestamp, UTC),
            data=body.decode(),
        )
        for name in SIGNATURE_HEADERS:
            headers.popall(name, None)
        headers.setdefault("Content-Type", "application/json")
        headers["webhook-id"] = delivery.key
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = signature
        return await post(self._session.get(), url, headers, body, filler, self.clock)

    async def close(self) -> None:
        await self._session.close()


def webhook_body(content: Mapping[str, Any]) -> Any:
    """The JSON a push posts: its `json`, else its `title` and `text` (also what `render` shows)."""
    if content.get("json") is not None:
        return content["json"]
    return {name: content[name] for name in ("title", "text") if content.get(name) is not None}
