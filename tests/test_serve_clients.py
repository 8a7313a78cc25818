"""The real Segment and RudderStack Python clients pointed at a real `leadlang serve`
(RUNTIME.md section 2): both post `/v1/batch` (Segment with HTTP Basic and `writeKey` in the
body, gzip off by default; RudderStack with HTTP Basic, gzip on by default); with gzip on and
off their track/identify/page calls are stored, run through the flows, and delivered; a
`messageId` sent twice (what a client's retry does) is processed once."""

from __future__ import annotations

import importlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.serve_daemon import GREET, WRITE_KEY, Daemon, maildir_files

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("clients")
    (workdir / "greet.lead").write_text(GREET, encoding="utf-8")
    served = Daemon(workdir, [str(workdir / "greet.lead")]).start()
    try:
        yield served
    finally:
        assert served.stop() == 0, "\n".join(served.output)


def client_of(library: str, url: str, gzip: bool, errors: list[Any]) -> Any:
    """The `Client` of a real client library (Segment's or RudderStack's: the same API)."""
    return importlib.import_module(library).Client(
        write_key=WRITE_KEY,
        host=url,
        gzip=gzip,
        max_retries=2,
        upload_interval=0.05,
        on_error=lambda error, batch: errors.append(error),
    )


def wait_until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition never held")
        time.sleep(0.05)


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(
    "library", ["segment.analytics", "rudderstack.analytics"], ids=["segment", "rudderstack"]
)
def test_a_real_client_track_identify_page(daemon: Daemon, library: str, gzip: bool) -> None:
    contact = "c-" + uuid.uuid4().hex[:12]
    email = f"{contact}@example.com"
    errors: list[Any] = []
    client = client_of(library, daemon.url, gzip, errors)
    client.identify(user_id=contact, traits={"first_name": "Ann", "email": email})
    signed = "m-" + uuid.uuid4().hex
    client.track(user_id=contact, event="Signed Up", properties={"email": email}, message_id=signed)
    client.track(user_id=contact, event="Signed Up", properties={"email": email}, message_id=signed)
    client.page(user_id=contact, name="Home", properties={"path": "/"})
    client.flush()
    # a retry of the same batch, later and alone: acknowledged, not processed again
    client.track(user_id=contact, event="Signed Up", properties={"email": email}, message_id=signed)
    client.flush()
    client.join()
    assert errors == []
    names = [
        row[0]
        for row in daemon.query("SELECT body FROM events WHERE contact = ? ORDER BY id", contact)
    ]
    assert len(names) == 3, names
    assert '"n":"signed_up"' in names[1] and '"n":"page_viewed"' in names[2]
    daemon.wait_idle()
    actions = [
        row[0]
        for row in daemon.query("SELECT action FROM effects WHERE contact = ? ORDER BY id", contact)
    ]
    assert actions == ["enter", "send", "exit"]
    profile = daemon.admin(f"/v1/contacts/{contact}").json()
    assert profile["traits"]["first_name"] == "Ann"
    (key,) = [row[0] for row in daemon.query("SELECT key FROM outbox WHERE contact = ?", contact)]
    wait_until(lambda: key in {p.name.split(":")[0] for p in maildir_files(daemon.workdir)})
    (mail,) = [p for p in maildir_files(daemon.workdir) if p.name.split(":")[0] == key]
    text = mail.read_text(encoding="utf-8")
    assert f"To: {email}" in text and f"Message-ID: <{key}@leadlang>" in text
    assert f"hello {contact}" in text


def test_segment_sync_mode_and_anonymous_ids(daemon: Daemon) -> None:
    from segment.analytics import Client

    anonymous = "a-" + uuid.uuid4().hex[:12]
    client = Client(write_key=WRITE_KEY, host=daemon.url, sync_mode=True)
    client.page(anonymous_id=anonymous, name="Landing")
    client.track(anonymous_id=anonymous, event="Viewed Plan", properties={"plan": "pro"})
    assert daemon.count("events", "WHERE contact = ?", anonymous) == 2
    # a wrong key is refused: the client sees the 401
    wrong = Client(write_key="wrong", host=daemon.url, sync_mode=True, max_retries=0)
    with pytest.raises(Exception) as caught:
        wrong.track(user_id=anonymous, event="x")
    assert "401" in str(caught.value)
    assert daemon.count("events", "WHERE contact = ?", anonymous) == 2


def test_the_server_answers_the_clients_exactly_200(daemon: Daemon) -> None:
    """Segment's client treats any 2xx as success, RudderStack's only a 200: it is 200."""
    response = requests.post(
        daemon.url + "/v1/batch",
        json={"batch": [{"type": "page", "userId": "p"}], "writeKey": WRITE_KEY},
        timeout=10,
    )
    assert response.status_code == 200 and response.json() == {"success": True}
