"""The webhook (push) driver: Standard Webhooks signatures checked by the package's own verify."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from leadlang.runtime.delivery.drivers import WebhookDriver, make_drivers
from leadlang.runtime.delivery.outbox import Delivery, Outcome
from leadlang.runtime.delivery.worker import OutboxWorker
from tests.receiver import Answer, Receiver
from tests.test_delivery_worker import Clock, MemoryOutbox

pytestmark = pytest.mark.timeout(30)

KEY = "fedcba9876543210fedcba9876543210"
SECRET = "whsec_" + base64.b64encode(b"a push signing secret, 32 bytes!").decode()


def push(url: str, key: str = KEY, **content: Any) -> Delivery:
    body = {
        "url": url,
        "headers": {"Content-Type": "application/json", "X-Source": "leadlang"},
        "json": {"customer_id": "c1", "template": "winter_loyalty_25", "total": 42.5},
    }
    body.update(content)
    return Delivery(
        key=key,
        contact="c1",
        flow="winter_thank_you",
        message="push_thanks",
        channel="push",
        at="2025-10-02T09:30:00Z",
        to=None,
        content=body,
        attempts=0,
    )


def webhook(**options: Any) -> WebhookDriver:
    return WebhookDriver(SECRET, **options)


@pytest.mark.asyncio
async def test_posts_the_messages_json_signed_per_standard_webhooks(
    receiver: Receiver, tmp_path: Path
) -> None:
    url = receiver.script("/v1/notifications", Answer(204, body=""))
    driver = make_drivers({"push": {"driver": "webhook", "signing_secret": SECRET}}, tmp_path)[
        "push"
    ]
    try:
        assert await driver.deliver(push(url)) == Outcome.sent()
    finally:
        await driver.close()
    [seen] = receiver.seen
    assert seen.method == "POST" and seen.path == "/v1/notifications"
    assert seen.headers["X-Source"] == "leadlang"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["webhook-id"] == KEY
    assert abs(int(seen.headers["webhook-timestamp"]) - time.time()) < 60
    assert seen.headers["webhook-signature"].startswith("v1,")
    payload = Webhook(SECRET).verify(seen.body, seen.headers)
    assert payload == {"customer_id": "c1", "template": "winter_loyalty_25", "total": 42.5}


@pytest.mark.asyncio
async def test_503_twice_then_200_is_delivered_once_with_the_same_webhook_id(
    receiver: Receiver,
) -> None:
    url = receiver.script("/hook", Answer(503), Answer(503), Answer(200))
    store, clock = MemoryOutbox(), Clock()
    store.add(push(url))
    worker = OutboxWorker(store, {"push": webhook()}, clock, base=0.001)
    try:
        for _ in range(3):
            row = store.rows[KEY]
            clock.now = max(clock.now, row.next_attempt)
            await worker.run_once()
    finally:
        await worker.close()
    row = store.rows[KEY]
    assert (row.status, row.attempts) == ("sent", 2)
    assert [seen.headers["webhook-id"] for seen in receiver.seen] == [KEY, KEY, KEY]
    for seen in receiver.seen:  # every attempt is signed afresh and verifies
        Webhook(SECRET).verify(seen.body, seen.headers)
    assert len({seen.body for seen in receiver.seen}) == 1


@pytest.mark.asyncio
async def test_429_with_retry_after_500_and_400(receiver: Receiver) -> None:
    busy = receiver.script("/busy", Answer(429, {"Retry-After": "30"}, "later"))
    broken = receiver.script("/broken", Answer(500, body="oops"))
    bad = receiver.script("/bad", Answer(400, body="unknown template"))
    driver = webhook()
    try:
        assert await driver.deliver(push(busy)) == Outcome.retry("HTTP 429: later", after=30.0)
        assert await driver.deliver(push(broken)) == Outcome.retry("HTTP 500: oops")
        assert await driver.deliver(push(bad)) == Outcome.failed("HTTP 400: unknown template")
    finally:
        await driver.close()


@pytest.mark.asyncio
async def test_a_message_cannot_set_the_signature_headers(receiver: Receiver) -> None:
    url = receiver.script("/hook", Answer(200))
    forged = {"webhook-id": "forged", "Webhook-Signature": "v1,Zm9yZ2Vk", "X-Source": "x"}
    driver = webhook()
    try:
        assert await driver.deliver(push(url, headers=forged)) == Outcome.sent()
    finally:
        await driver.close()
    [seen] = receiver.seen
    assert seen.headers["webhook-id"] == KEY
    Webhook(SECRET).verify(seen.body, seen.headers)


@pytest.mark.asyncio
async def test_without_json_the_body_is_the_title_and_text(receiver: Receiver) -> None:
    url = receiver.script("/hook", Answer(200))
    driver = webhook()
    try:
        outcome = await driver.deliver(push(url, json=None, title="Hi", text="Thanks"))
    finally:
        await driver.close()
    assert outcome == Outcome.sent()
    assert Webhook(SECRET).verify(receiver.seen[0].body, receiver.seen[0].headers) == {
        "title": "Hi",
        "text": "Thanks",
    }


@pytest.mark.asyncio
async def test_secrets_are_filled_in_at_each_attempt_and_never_leave_in_an_outcome(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    url = receiver.script("/hook/{{secret:HOOK_PATH}}", Answer(200))
    receiver.script("/hook/p4th", Answer(400, echo=True))
    secrets = {"PUSH_TOKEN": "t0ken-value", "HOOK_PATH": "p4th", "ADMIN": "admin-value"}
    delivery = push(
        url,
        headers={"Authorization": "Bearer {{secret:PUSH_TOKEN}}"},
        json={"token": "{{secret:PUSH_TOKEN}}", "name": "{{secret:ADMIN}}", "n": [1, "x"]},
        secrets=["PUSH_TOKEN", "HOOK_PATH"],  # the names the message itself uses
    )
    stored = repr(delivery.content)
    driver = webhook(secrets=secrets)
    try:
        outcome = await driver.deliver(delivery)
    finally:
        await driver.close()
    [seen] = receiver.seen
    assert seen.path == "/hook/p4th"
    assert seen.headers["Authorization"] == "Bearer t0ken-value"
    body = Webhook(SECRET).verify(seen.body, seen.headers)
    # a placeholder the message does not use (a trait's text, say) stays text
    assert body == {"token": "t0ken-value", "name": "{{secret:ADMIN}}", "n": [1, "x"]}
    assert repr(delivery.content) == stored  # the stored content is untouched
    assert outcome.status == "failed"
    assert "t0ken-value" not in (outcome.error or "") and "p4th" not in (outcome.error or "")
    assert "{{secret:PUSH_TOKEN}}" in (outcome.error or "")
    assert "t0ken-value" not in caplog.text


@pytest.mark.asyncio
async def test_a_missing_secret_is_final_and_named(receiver: Receiver) -> None:
    url = receiver.script("/hook", Answer(200))
    driver = webhook(secrets={})
    try:
        outcome = await driver.deliver(push(url, headers={"X-Token": "{{secret:PUSH_TOKEN}}"}))
    finally:
        await driver.close()
    assert outcome == Outcome.failed("secret `PUSH_TOKEN` is not set")
    assert receiver.seen == []


@pytest.mark.asyncio
@pytest.mark.parametrize("url", [None, "", "ftp://example.com/x", "not a url"])
async def test_a_push_without_an_http_url_is_final(url: str | None) -> None:
    driver = webhook()
    try:
        outcome = await driver.deliver(push(url))  # type: ignore[arg-type]
    finally:
        await driver.close()
    assert outcome.status == "failed"


@pytest.mark.asyncio
async def test_a_connection_error_is_a_retry(receiver: Receiver) -> None:
    url = receiver.url("/hook")
    await receiver.stop()
    driver = webhook()
    try:
        outcome = await driver.deliver(push(url))
    finally:
        await driver.close()
    assert outcome.status == "retry"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, r"channel push \(`webhook` driver\): `signing_secret` is required"),
        ({"signing_secret": "whsec_${PUSH_SIGNING_SECRET}"}, "is not a Standard Webhooks secret"),
        ({"signing_secret": "whsec_"}, "`signing_secret` must be a non-empty string|is not a"),
        ({"signing_secret": SECRET, "url": "http://x"}, "`url` is not a setting"),
    ],
)
def test_bad_settings_name_the_channel_and_key(
    tmp_path: Path, table: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_drivers({"push": {"driver": "webhook", **table}}, tmp_path)


def test_webhook_carries_only_push(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="channel sms: the `webhook` driver delivers only push"):
        make_drivers({"sms": {"driver": "webhook", "signing_secret": SECRET}}, tmp_path)


@pytest.mark.asyncio
async def test_a_header_value_with_a_newline_is_final(receiver: Receiver) -> None:
    url = receiver.script("/hook", Answer(200))
    driver = webhook()
    try:
        outcome = await driver.deliver(push(url, headers={"X-Name": "Ann\r\nX-Evil: 1"}))
    finally:
        await driver.close()
    assert outcome.status == "failed"
    assert receiver.seen == []
