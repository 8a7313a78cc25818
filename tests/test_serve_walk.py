"""docs/serve.md's five-minute walk, as a newcomer follows it: `leadlang serve
examples/flowio` on the embedded defaults (generated write key and admin token, printed once),
curl's requests (HTTP Basic, curl's default form content type), eleven `Product Added`, and
Ann's coupon email in `outbox/new`, or, during flowio's quiet hours (21:00-08:00 in
Ho Chi Minh), her send waiting for 08:00 there, as the walk says. The walk again with Ann's
`timezone` trait set to a zone where it is day now makes sure the email branch runs at any
hour."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from tests.serve_daemon import Daemon, maildir_files

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
SHOP = ZoneInfo("Asia/Ho_Chi_Minh")


def printed(daemon: Daemon, label: str) -> str:
    """The value the start-up summary printed after `label` (the generated credentials)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in list(daemon.output):
            if line.strip().startswith(label):
                return line.strip()[len(label) :].split()[0]
        time.sleep(0.05)
    raise AssertionError(f"no {label!r} in:\n" + "\n".join(daemon.output))


def curl(daemon: Daemon, key: str, path: str, body: str) -> None:
    """`curl -u "$KEY:" URL -d BODY`: HTTP Basic, curl's default content type."""
    answer = requests.post(
        daemon.url + path,
        data=body,
        auth=(key, ""),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def daytime_zone() -> str:
    """A fixed-offset zone where it is between 10:00 and 18:00 now."""
    now = datetime.now(UTC)
    for offset in range(-12, 15):
        if 10 <= (now + timedelta(hours=offset)).hour < 18:
            return f"Etc/GMT{-offset:+d}"  # (POSIX signs: Etc/GMT-7 is UTC+7)
    raise AssertionError("no zone is at day")  # (cannot happen: 27 offsets)


@pytest.mark.parametrize("zone", [None, "day"], ids=["as-written", "at-day"])
def test_the_five_minute_walk(tmp_path: Path, zone: str | None) -> None:
    traits = '"email": "ann@example.com", "first_name": "Ann"'
    where = SHOP
    if zone is not None:
        zone = daytime_zone()
        traits += f', "timezone": "{zone}"'
        where = ZoneInfo(zone)
    daemon = Daemon(tmp_path, [str(ROOT / "examples" / "flowio")], config="").start()
    try:
        key, token = printed(daemon, "write key"), printed(daemon, "admin token")
        curl(daemon, key, "/v1/identify", '{"userId": "ann", "traits": {' + traits + "}}")
        for _ in range(11):
            body = '{"userId": "ann", "event": "Product Added", "properties": {"price": 50}}'
            curl(daemon, key, "/v1/track", body)
        daemon.wait_idle()
        admin = {"Authorization": f"Bearer {token}"}
        ann = requests.get(daemon.url + "/v1/contacts/ann", headers=admin, timeout=30).json()
        assert ann["score"] > 50 and "potential" in ann["segments"]
        (enrollment,) = ann["enrollments"]
        assert enrollment["flow"] == "potential_offer"
        entered = next(e for e in ann["effects"] if e["action"] == "enter")
        at = datetime.fromisoformat(entered["at"].replace("Z", "+00:00")).astimezone(where)
        if at.hour >= 21 or at.hour < 8:  # quiet hours: the email waits for 08:00 there
            morning = at.replace(hour=8, minute=0, second=0, microsecond=0)
            if at.hour >= 21:
                morning += timedelta(days=1)
            assert enrollment["waiting"] == "quiet"
            assert enrollment["waiting_until"] == morning.astimezone(UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            assert maildir_files(tmp_path) == []
        else:
            deadline = time.monotonic() + 30
            while not maildir_files(tmp_path):
                assert time.monotonic() < deadline, "no email in outbox/new"
                time.sleep(0.1)
            (email,) = maildir_files(tmp_path)
            text = email.read_text(encoding="utf-8")
            assert "To: ann@example.com" in text
            assert "Subject: Ann, new arrivals with 15% off" in text
    finally:
        daemon.stop()
