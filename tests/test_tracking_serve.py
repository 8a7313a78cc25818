"""Tracking and consent against a real `leadlang serve` process (RUNTIME.md sections 2 and 3):
the email in the Maildir carries tracked links, the open pixel and both List-Unsubscribe
headers; opening it makes `check opened within 2d` take its branch; clicks go only to the
link inside the token; a token cannot be altered or used for another contact; GET on the
unsubscribe link changes nothing and the one-click POST unsubscribes."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.serve_daemon import ADMIN_TOKEN, WRITE_KEY, Daemon, Mailbox, free_port

pytestmark = pytest.mark.timeout(60)

SCRIPT = """\
message welcome:
  channel email
  subject "Welcome, {{ first_name }}"
  html "<html><body><p>Hi {{ first_name }}, see <a href=\\"https://shop.example/new?a=1&amp;b=2\\">our range</a> and <a href='http://blog.example/post'>the blog</a>. <a href=\\"mailto:help@shop.example\\">Help</a> <a href=\\"leadlang:unsubscribe\\">Unsubscribe</a></p></body></html>"

message nudge:
  channel email
  subject "Still there?"
  html "<p>Come back</p>"

message receipt:
  channel email
  subject "Thank you"
  text "Your order is on its way."

trait first_name: text

on signed_up then send welcome ; check opened within 2d else send nudge ; tag "engaged"
on message_clicked where message == "welcome" and channel == "email" then tag "clicked"
on purchased then send receipt
"""
LINKS = ["https://shop.example/new?a=1&b=2", "http://blog.example/post"]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("tracking")
    (workdir / "shop.lead").write_text(SCRIPT, encoding="utf-8")
    serve = Daemon(workdir, ["shop.lead"])
    serve.config_path.write_text(
        "[server]\n"
        f'write_keys = ["{WRITE_KEY}"]\n'
        f'admin_token = "{ADMIN_TOKEN}"\n'
        f'public_url = "{serve.url}"\n'
        'secret = "test-tracking-secret"\n',
        encoding="utf-8",
    )
    serve.start()
    try:
        yield serve
    finally:
        serve.stop()


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a":
            self.hrefs.append(values.get("href") or "")
        if tag == "img":
            self.images.append(values.get("src") or "")


class Welcome:
    """The welcome email one contact received, read back from the Maildir."""

    def __init__(self, message: EmailMessage) -> None:
        self.message = message
        part = message.get_body(("html",))
        assert part is not None
        self.html = part.get_content()
        parsed = _Html()
        parsed.feed(self.html)
        self.hrefs, self.images = parsed.hrefs, parsed.images

    def clicks(self, base: str) -> list[str]:
        return [h for h in self.hrefs if h.startswith(f"{base}/c/")]

    def pixel(self, base: str) -> str:
        (pixel,) = (src for src in self.images if src.startswith(f"{base}/o/"))
        return pixel

    def unsubscribe(self, base: str) -> str:
        (link,) = (h for h in self.hrefs if h.startswith(f"{base}/u/"))
        return link


def sign_up(daemon: Daemon, contact: str) -> Welcome:
    batch = [
        {
            "type": "identify",
            "userId": contact,
            "traits": {"email": f"{contact}@x.example", "first_name": contact.title()},
        },
        {"type": "track", "userId": contact, "event": "signed_up"},
    ]
    assert daemon.post("/v1/batch", {"batch": batch}).status_code == 200
    return Welcome(wait_for_email(daemon, contact, "welcome"))


def emails(daemon: Daemon, contact: str, message: str) -> list[EmailMessage]:
    found = []
    for path in sorted((daemon.workdir / "outbox" / "new").iterdir()):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        if parsed["X-Leadlang-Contact"] == contact and parsed["X-Leadlang-Message"] == message:
            found.append(parsed)
    return found


def wait_for_email(daemon: Daemon, contact: str, message: str) -> EmailMessage:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (daemon.workdir / "outbox" / "new").exists():
            found = emails(daemon, contact, message)
            if found:
                return found[0]
        time.sleep(0.05)
    raise TimeoutError(f"no `{message}` email for {contact}")


def effects_of(daemon: Daemon, contact: str) -> list[dict[str, Any]]:
    daemon.wait_idle()
    return [e for e in daemon.ledger() if e["contact"] == contact]


def wait_for_effect(daemon: Daemon, contact: str, **fields: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        effects = effects_of(daemon, contact)
        if any(all(e.get(k) == v for k, v in fields.items()) for e in effects):
            return effects
        time.sleep(0.05)
    raise TimeoutError(f"no effect {fields} for {contact}: {effects_of(daemon, contact)}")


def get(url: str, **kw: Any) -> requests.Response:
    return requests.get(url, allow_redirects=False, timeout=30, **kw)


def assert_not_found(response: requests.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"] == "not found"


def alter(token_url: str) -> list[str]:
    """The link with one character of its token changed, at several places."""
    base, token = token_url.rsplit("/", 1)
    variants = []
    for i in (0, 1, len(token) // 2, len(token) - 2, len(token) - 1):
        c = "A" if token[i] != "A" else "B"
        variants.append(f"{base}/{token[:i]}{c}{token[i + 1 :]}")
    return variants


# ---------------------------------------------------------------- the email


def test_the_email_has_tracked_links_the_pixel_and_list_unsubscribe(daemon: Daemon) -> None:
    welcome = sign_up(daemon, "ann")
    base = daemon.url
    clicks = welcome.clicks(base)
    assert len(clicks) == 2 and len(set(clicks)) == 2
    assert "mailto:help@shop.example" in welcome.hrefs
    assert not any("shop.example/new" in h or "blog.example" in h for h in welcome.hrefs)
    assert welcome.pixel(base)
    assert welcome.html.index(welcome.pixel(base)) < welcome.html.index("</body>")
    unsubscribe = welcome.unsubscribe(base)
    header = welcome.message["List-Unsubscribe"]
    assert header == f"<{unsubscribe}>"
    assert welcome.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # every link keeps working as the mail client sees it: a redirect to the original URL
    for link, original in zip(clicks, LINKS, strict=True):
        response = get(link)
        assert response.status_code == 302
        assert response.headers["Location"] == original


def test_list_unsubscribe_is_written_as_a_plain_header(daemon: Daemon) -> None:
    welcome = sign_up(daemon, "ivan")
    (path,) = (
        p
        for p in (daemon.workdir / "outbox" / "new").iterdir()
        if b"X-Leadlang-Contact: ivan\n" in p.read_bytes()
    )
    raw = path.read_bytes().decode()
    link = welcome.unsubscribe(daemon.url)
    assert f"\nList-Unsubscribe: <{link}>\n" in raw


# ---------------------------------------------------------------- opens


def test_the_open_pixel_records_an_open_and_check_opened_takes_its_branch(daemon: Daemon) -> None:
    welcome = sign_up(daemon, "olga")
    before = effects_of(daemon, "olga")
    assert [e["action"] for e in before] == ["enter", "send"]
    response = get(welcome.pixel(daemon.url))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/gif"
    assert response.content.startswith(b"GIF89a") and len(response.content) < 100
    assert "no-store" in response.headers["Cache-Control"]
    after = wait_for_effect(daemon, "olga", action="exit", reason="done")
    assert [e["action"] for e in after] == ["enter", "send", "tag", "exit"]
    assert after[2]["tag"] == "engaged"
    assert not emails(daemon, "olga", "nudge")


def test_a_head_on_the_pixel_records_nothing(daemon: Daemon) -> None:
    welcome = sign_up(daemon, "hugo")
    response = requests.head(welcome.pixel(daemon.url), timeout=30)
    assert response.status_code == 200
    time.sleep(0.3)
    assert [e["action"] for e in effects_of(daemon, "hugo")] == ["enter", "send"]


# ---------------------------------------------------------------- clicks


def test_a_click_redirects_to_the_original_url_and_is_recorded(daemon: Daemon) -> None:
    welcome = sign_up(daemon, "carl")
    response = get(welcome.clicks(daemon.url)[1])
    assert response.status_code == 302
    assert response.headers["Location"] == LINKS[1]
    wait_for_effect(daemon, "carl", action="tag", tag="clicked")


def test_a_redirect_goes_only_to_the_link_in_the_token(daemon: Daemon) -> None:
    welcome = sign_up(daemon, "rita")
    link = welcome.clicks(daemon.url)[0]
    for tricked in (
        f"{link}?url=https://evil.example/",
        f"{link}?url=https%3A%2F%2Fevil.example%2F&next=//evil.example&redirect=https://evil.example",
        f"{link}?Location=https://evil.example/",
        f"{link}#https://evil.example/",
    ):
        response = get(tricked)
        assert response.status_code == 302, tricked
        assert response.headers["Location"] == LINKS[0], tricked
    for bad in (
        f"{link}/https://evil.example/",
        f"{daemon.url}/c/?url=https://evil.example/",
        f"{daemon.url}/c/https:%2F%2Fevil.example",
        f"{daemon.url}/c/{welcome.pixel(daemon.url).rsplit('/', 1)[1]}",  # an open token
    ):
        response = get(bad)
        assert response.status_code == 404, bad
        assert "Location" not in response.headers


# ---------------------------------------------------------------- forged tokens


def test_a_token_altered_by_one_character_is_a_404(daemon: Daemon) -> None:
    welcome = sign_up(daemon, "alex")
    base = daemon.url
    for link in (*welcome.clicks(base), welcome.pixel(base), welcome.unsubscribe(base)):
        for altered in alter(link):
            assert_not_found(get(altered))
    for altered in alter(welcome.unsubscribe(base)):
        assert_not_found(
            requests.post(
                altered,
                data="List-Unsubscribe=One-Click",
                timeout=30,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        )
    for junk in ("x", "a.b", ".eJw.abc", "A" * 3000):
        for route in ("o", "c", "u"):
            assert_not_found(get(f"{base}/{route}/{junk}"))
    # nothing of it was recorded
    time.sleep(0.3)
    assert [e["action"] for e in effects_of(daemon, "alex")] == ["enter", "send"]


def test_a_token_of_one_contact_cannot_act_for_another(daemon: Daemon) -> None:
    a = sign_up(daemon, "amos")
    sign_up(daemon, "bert")
    # nothing in the request names the contact: the click is amos's, whatever is added
    response = get(
        f"{a.clicks(daemon.url)[0]}?userId=bert&contact=bert&anonymousId=bert",
        headers={"Cookie": "userId=bert", "X-Contact": "bert"},
    )
    assert response.status_code == 302
    wait_for_effect(daemon, "amos", action="tag", tag="clicked")
    time.sleep(0.3)
    assert [e["action"] for e in effects_of(daemon, "bert")] == ["enter", "send"]


# ---------------------------------------------------------------- unsubscribe


def test_get_on_the_unsubscribe_link_changes_nothing(daemon: Daemon) -> None:
    welcome = sign_up(daemon, "gail")
    link = welcome.unsubscribe(daemon.url)
    daemon.wait_idle()
    before = daemon.admin("/v1/contacts/gail").json()
    for _ in range(3):  # a link scanner, then the reader
        response = get(link)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert '<form method="post">' in response.text
        assert 'name="List-Unsubscribe" value="One-Click"' in response.text
    time.sleep(0.3)
    daemon.wait_idle()
    assert daemon.admin("/v1/contacts/gail").json() == before
    # and mail still goes out on that channel
    assert daemon.post("/v1/track", {"userId": "gail", "event": "purchased"}).status_code == 200
    effects = wait_for_effect(daemon, "gail", action="send", message="receipt")
    assert not any(e["action"] == "skip" for e in effects)


def test_one_click_unsubscribe_then_the_next_email_is_skipped(daemon: Daemon) -> None:
    welcome = sign_up(daemon, "una")
    link = welcome.unsubscribe(daemon.url)
    assert welcome.message["List-Unsubscribe"] == f"<{link}>"
    # RFC 8058: what a mailbox provider sends, to the URL in the header
    response = requests.post(
        link,
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert "Unsubscribed" in response.text
    daemon.wait_idle()
    assert daemon.post("/v1/track", {"userId": "una", "event": "purchased"}).status_code == 200
    effects = wait_for_effect(daemon, "una", action="skip", message="receipt")
    skip = next(e for e in effects if e["action"] == "skip")
    assert skip["reason"] == "unsubscribed" and skip["channel"] == "email"
    assert not any(e["action"] == "send" and e["message"] == "receipt" for e in effects)


def test_the_confirm_button_unsubscribes(daemon: Daemon) -> None:
    welcome = sign_up(daemon, "bea")
    link = welcome.unsubscribe(daemon.url)
    session = requests.Session()
    page = session.get(link, timeout=30)
    assert page.status_code == 200
    # what the browser sends for the form: its hidden field, to the page's own URL
    response = session.post(link, data={"List-Unsubscribe": "One-Click"}, timeout=30)
    assert response.status_code == 200
    assert daemon.post("/v1/track", {"userId": "bea", "event": "purchased"}).status_code == 200
    effects = wait_for_effect(daemon, "bea", action="skip", message="receipt")
    assert [e["reason"] for e in effects if e["action"] == "skip"] == ["unsubscribed"]


def test_tracking_routes_need_no_other_credentials_and_never_fail(daemon: Daemon) -> None:
    welcome = sign_up(daemon, "nina")
    assert get(welcome.pixel(daemon.url), headers={"Authorization": "Bearer wrong"}).ok
    for method in ("PUT", "DELETE", "PATCH"):
        response = requests.request(method, welcome.unsubscribe(daemon.url), timeout=30)
        assert response.status_code == 405
    assert requests.post(welcome.pixel(daemon.url), timeout=30).status_code == 405


@pytest.mark.parametrize("processes", [1, 2])
def test_both_back_ends_track_and_share_the_secret(tmp_path: Path, processes: int) -> None:
    # no `secret` in the config: the daemon generates and stores one, and the back end (in
    # this process or its own) signs with that very secret, so the routes accept its links
    (tmp_path / "shop.lead").write_text(SCRIPT, encoding="utf-8")
    serve = Daemon(tmp_path, ["shop.lead"])
    serve.config_path.write_text(
        f'[server]\nwrite_keys = ["{WRITE_KEY}"]\nadmin_token = "{ADMIN_TOKEN}"\n'
        f'public_url = "{serve.url}"\nprocesses = {processes}\n',
        encoding="utf-8",
    )
    serve.start()
    try:
        welcome = sign_up(serve, "pat")
        assert welcome.message["List-Unsubscribe"] == f"<{welcome.unsubscribe(serve.url)}>"
        assert get(welcome.pixel(serve.url)).status_code == 200
        wait_for_effect(serve, "pat", action="tag", tag="engaged")
    finally:
        serve.stop()


def test_without_public_url_emails_are_left_as_written(tmp_path: Path) -> None:
    (tmp_path / "shop.lead").write_text(SCRIPT, encoding="utf-8")
    serve = Daemon(tmp_path, ["shop.lead"]).start()
    try:
        welcome = sign_up(serve, "pia")
        assert welcome.hrefs[:2] == LINKS
        assert welcome.images == []
        assert welcome.message["List-Unsubscribe"] is None
    finally:
        serve.stop()


def test_one_click_through_a_real_smtp_server(tmp_path: Path) -> None:
    # what a mailbox provider does: read List-Unsubscribe off the wire, POST one-click to it
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    smtp_port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    (tmp_path / "shop.lead").write_text(SCRIPT, encoding="utf-8")
    serve = Daemon(tmp_path, ["shop.lead"])
    serve.config_path.write_text(
        f'[server]\nwrite_keys = ["{WRITE_KEY}"]\nadmin_token = "{ADMIN_TOKEN}"\n'
        f'public_url = "{serve.url}"\nsecret = "s"\n'
        "[channels.email]\n"
        f'driver = "smtp"\nhost = "127.0.0.1"\nport = {smtp_port}\n'
        'from = "Shop <shop@example.com>"\nmailto_unsubscribe = "unsubscribe@example.com"\n',
        encoding="utf-8",
    )
    serve.start()
    try:
        batch = [
            {"type": "identify", "userId": "sam", "traits": {"email": "sam@x.example"}},
            {"type": "track", "userId": "sam", "event": "signed_up"},
        ]
        assert serve.post("/v1/batch", {"batch": batch}).status_code == 200
        deadline = time.monotonic() + 30
        while not mailbox.received and time.monotonic() < deadline:
            time.sleep(0.05)
        (raw,) = mailbox.received
        headers = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")
        (unsubscribe,) = (h for h in headers if h.startswith("List-Unsubscribe: "))
        assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in headers
        https, mailto = unsubscribe.removeprefix("List-Unsubscribe: ").split(", ")
        assert https.startswith(f"<{serve.url}/u/") and https.endswith(">")
        assert mailto == "<mailto:unsubscribe@example.com>"
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        welcome = Welcome(parsed)
        assert len(welcome.clicks(serve.url)) == 2 and welcome.pixel(serve.url)
        response = requests.post(
            https[1:-1],
            data="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=30,
        )
        assert response.status_code == 200
        assert serve.post("/v1/track", {"userId": "sam", "event": "purchased"}).status_code == 200
        effects = wait_for_effect(serve, "sam", action="skip", message="receipt")
        assert [e["reason"] for e in effects if e["action"] == "skip"] == ["unsubscribed"]
    finally:
        serve.stop()
        controller.stop()
