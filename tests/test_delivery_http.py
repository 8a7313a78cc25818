"""The http (SMS) driver against a real aiohttp receiver on a free 127.0.0.1 port."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import attrs
import pytest

from leadlang.runtime.delivery.drivers import HttpSmsDriver, make_drivers
from leadlang.runtime.delivery.drivers.http import retry_after
from leadlang.runtime.delivery.outbox import Delivery, Outcome
from leadlang.runtime.delivery.worker import OutboxWorker
from tests.receiver import Answer, Receiver
from tests.test_delivery_worker import Clock, MemoryOutbox

pytestmark = pytest.mark.timeout(30)

KEY = "0123456789abcdef0123456789abcdef"
NOW = 1_760_000_000.0


def sms(key: str = KEY, **changes: Any) -> Delivery:
    base = Delivery(
        key=key,
        contact="c1",
        flow="winter_thank_you",
        message="sms_thanks",
        channel="sms",
        at="2025-10-02T09:30:00Z",
        to="+33612345678",
        content={"text": "Thanks, Ann!"},
        attempts=0,
    )
    return attrs.evolve(base, **changes)


def driver(url: str, **options: Any) -> HttpSmsDriver:
    options.setdefault("clock", lambda: NOW)
    return HttpSmsDriver(url, **options)


@pytest.mark.asyncio
async def test_posts_to_text_and_message_id_with_the_configured_headers(
    receiver: Receiver, tmp_path: Path
) -> None:
    url = receiver.script("/v1/messages", Answer(201))
    config = {"sms": {"driver": "http", "url": url, "headers": {"Authorization": "Bearer t0k"}}}
    http = make_drivers(config, tmp_path, secrets={})["sms"]
    try:
        assert await http.deliver(sms()) == Outcome.sent()
    finally:
        await http.close()
    [seen] = receiver.seen
    assert seen.method == "POST"
    assert seen.json() == {"to": "+33612345678", "text": "Thanks, Ann!", "message_id": KEY}
    assert seen.headers["Authorization"] == "Bearer t0k"
    assert seen.headers["Idempotency-Key"] == KEY
    assert seen.headers["Content-Type"] == "application/json"


@pytest.mark.asyncio
async def test_429_with_retry_after_then_200_sends_the_same_key(receiver: Receiver) -> None:
    url = receiver.script("/sms", Answer(429, {"Retry-After": "7"}, "slow down"), Answer(200))
    http = driver(url)
    try:
        first = await http.deliver(sms())
        second = await http.deliver(sms(attempts=1))
    finally:
        await http.close()
    assert first == Outcome.retry("HTTP 429: slow down", after=7.0)
    assert second == Outcome.sent()
    keys = [seen.headers["Idempotency-Key"] for seen in receiver.seen]
    assert keys == [KEY, KEY]
    assert receiver.seen[0].body == receiver.seen[1].body


@pytest.mark.asyncio
async def test_retry_after_as_an_http_date(receiver: Receiver) -> None:
    later = format_datetime(datetime.fromtimestamp(NOW + 120, UTC), usegmt=True)
    url = receiver.script("/sms", Answer(503, {"Retry-After": later}, ""))
    http = driver(url)
    try:
        outcome = await http.deliver(sms())
    finally:
        await http.close()
    assert outcome == Outcome.retry("HTTP 503", after=120.0)


def test_retry_after_values() -> None:
    assert retry_after("0", NOW) == 0.0
    assert retry_after("2.5", NOW) == 2.5
    assert retry_after("-4", NOW) == 0.0
    assert retry_after("soon", NOW) is None
    assert retry_after(None, NOW) is None
    assert retry_after("999999999", NOW) == 86400.0  # at most a day


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, "retry"),
        (502, "retry"),
        (408, "retry"),
        (400, "failed"),
        (404, "failed"),
        (422, "failed"),
    ],
)
async def test_statuses(receiver: Receiver, status: int, kind: str) -> None:
    url = receiver.script("/sms", Answer(status, body=f"answer {status}"))
    http = driver(url)
    try:
        outcome = await http.deliver(sms())
    finally:
        await http.close()
    assert outcome.status == kind
    assert outcome.error == f"HTTP {status}: answer {status}"
    assert outcome.retry_after is None


@pytest.mark.asyncio
async def test_a_redirect_is_final_and_not_followed(receiver: Receiver) -> None:
    receiver.script("/elsewhere", Answer(200))
    url = receiver.script("/sms", Answer(302, {"Location": receiver.url("/elsewhere")}, ""))
    http = driver(url, headers={"Authorization": "Bearer t0k"})
    try:
        outcome = await http.deliver(sms())
    finally:
        await http.close()
    assert outcome.status == "failed" and "redirects are not followed" in (outcome.error or "")
    assert [seen.path for seen in receiver.seen] == ["/sms"]


@pytest.mark.asyncio
async def test_a_connection_error_is_a_retry(receiver: Receiver) -> None:
    port = receiver.port
    await receiver.stop()
    http = driver(f"http://127.0.0.1:{port}/sms")
    try:
        outcome = await http.deliver(sms())
    finally:
        await http.close()
    assert outcome.status == "retry" and outcome.error


@pytest.mark.asyncio
async def test_no_phone_number_is_final() -> None:
    http = driver("http://127.0.0.1:9/sms")
    assert (await http.deliver(sms(to=None))).status == "failed"
    await http.close()


@pytest.mark.asyncio
async def test_secrets_in_the_config_are_filled_in_and_never_in_an_outcome(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    url = receiver.script("/sms", Answer(400, echo=True))
    config = {
        "sms": {
            "driver": "http",
            "url": url,
            "headers": {"Authorization": "Bearer {{secret:SMS_TOKEN}}"},
        }
    }
    http = make_drivers(config, tmp_path, secrets={"SMS_TOKEN": "s3cr3t-value"})["sms"]
    try:
        # the SMS text is sent as it is: check accepts secret() nowhere in an SMS
        outcome = await http.deliver(sms(content={"text": "hi {{secret:SMS_TOKEN}}"}))
    finally:
        await http.close()
    [seen] = receiver.seen
    assert seen.headers["Authorization"] == "Bearer s3cr3t-value"
    assert seen.json()["text"] == "hi {{secret:SMS_TOKEN}}"
    assert outcome.status == "failed"
    assert "s3cr3t-value" not in (outcome.error or "")
    assert "Bearer {{secret:SMS_TOKEN}}" in (outcome.error or "")
    assert "s3cr3t-value" not in caplog.text


@pytest.mark.asyncio
async def test_a_hanging_provider_times_out_in_the_worker_and_is_retried(
    receiver: Receiver,
) -> None:
    url = receiver.script("/sms", Answer(hang=True))
    store, clock = MemoryOutbox(), Clock()
    store.add(sms())
    http = driver(url)
    worker = OutboxWorker(store, {"sms": http}, clock, timeout=0.5)
    try:
        await worker.run_once()
    finally:
        await worker.close()
    row = store.rows[KEY]
    assert row.status == "pending" and row.attempts == 1
    assert row.error == "timed out after 0.5s"


@pytest.mark.asyncio
async def test_a_400_is_dead_at_once_in_the_worker(receiver: Receiver) -> None:
    url = receiver.script("/sms", Answer(400, body="bad number"))
    store, clock = MemoryOutbox(), Clock()
    store.add(sms())
    worker = OutboxWorker(store, {"sms": driver(url)}, clock)
    try:
        await worker.run_once()
    finally:
        await worker.close()
    row = store.rows[KEY]
    assert (row.status, row.attempts, row.error) == ("dead", 1, "HTTP 400: bad number")
    assert len(receiver.seen) == 1


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "channel sms (`http` driver): `url` is required"),
        ({"url": "ftp://x"}, "`url` is not an http(s) URL"),
        ({"url": "http://x", "headers": {"A": 1}}, "`headers` must be a table of strings"),
        (
            {"url": "http://x", "headers": {"A": "{{secret:NOPE}}"}},
            "`headers` uses secret `NOPE`, which is not set",
        ),
        ({"url": "http://x", "token": "t"}, "`token` is not a setting of this driver"),
    ],
)
def test_bad_settings_name_the_channel_and_key(
    tmp_path: Path, table: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_drivers({"sms": {"driver": "http", **table}}, tmp_path, secrets={})


def test_http_carries_only_sms(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="channel email: the `http` driver delivers only sms"):
        make_drivers({"email": {"driver": "http", "url": "http://x"}}, tmp_path)
