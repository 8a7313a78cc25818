"""The maildir driver: real files in a Maildir read back with `mailbox` and `email`."""

from __future__ import annotations

import asyncio
import email
import gc
import mailbox
import os
import subprocess
import sys
import threading
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import attrs
import pytest

from leadlang.runtime.delivery.drivers import maildir
from leadlang.runtime.delivery.drivers.maildir import MaildirDriver
from leadlang.runtime.delivery.outbox import Delivery, Outcome
from tests.deliveries import KEY, UNREADABLE_ADDRESSES, ann_email

pytestmark = pytest.mark.timeout(30)


def deliver(driver: MaildirDriver, d: Delivery) -> Outcome:
    return asyncio.run(driver.deliver(d))


def read_all(path: Path) -> dict[str, EmailMessage]:
    box = mailbox.Maildir(path, factory=None, create=False)
    out = {}
    for key in box.iterkeys():
        with box.get_file(key) as file:
            out[key] = email.message_from_binary_file(file, policy=policy.default)
    return out


def test_one_rfc5322_file_named_from_the_key(tmp_path: Path) -> None:
    driver = MaildirDriver(tmp_path / "outbox")
    assert deliver(driver, ann_email()) == Outcome.sent()
    assert sorted(os.listdir(tmp_path / "outbox")) == ["cur", "new", "tmp"]
    assert os.listdir(tmp_path / "outbox" / "new") == [KEY]
    assert os.listdir(tmp_path / "outbox" / "tmp") == []
    (message,) = read_all(tmp_path / "outbox").values()
    assert KEY in message["Message-ID"] and message["Message-ID"] == f"<{KEY}@leadlang>"
    assert message["To"] == "Ann Example <ann@example.com>"
    assert message["To"].addresses[0].addr_spec == "ann@example.com"
    assert message["From"] == "leadlang <leadlang@localhost>"
    assert message["Subject"] == "Your order, Ann"
    assert message["Date"].datetime.isoformat() == "2025-10-02T09:30:00+00:00"
    assert message["X-Leadlang-Contact"] == "c1"
    assert message["X-Leadlang-Flow"] == "winter_thank_you"
    assert message["X-Leadlang-Message"] == "thank_you"
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain" and text.get_content() == "Thanks, Ann!\n"
    assert html.get_content_type() == "text/html"
    assert html.get_content() == "<p>Thanks, <b>Ann</b>!</p>\n"
    assert message.get_body(("plain",)).get_content() == "Thanks, Ann!\n"


def test_from_reply_to_and_extra_headers_come_from_the_content(tmp_path: Path) -> None:
    driver = MaildirDriver(tmp_path, from_address="Default <d@example.com>")
    content = {
        "subject": "s",
        "text": "t",
        "html": None,
        "from": "Shop <shop@example.com>",
        "reply_to": "help@example.com",
        "headers": {"List-Unsubscribe": "<https://t.example/u/x>"},
    }
    deliver(driver, ann_email(content=content))
    (message,) = read_all(tmp_path).values()
    assert message["From"] == "Shop <shop@example.com>"
    assert message["Reply-To"] == "help@example.com"
    assert message["List-Unsubscribe"] == "<https://t.example/u/x>"
    assert message.get_content_type() == "text/plain"
    deliver(driver, ann_email("f" * 32, content={"subject": "s", "text": "t", "html": None}))
    assert read_all(tmp_path)["f" * 32]["From"] == "Default <d@example.com>"


def test_a_second_delivery_of_the_same_key_writes_nothing(tmp_path: Path) -> None:
    driver = MaildirDriver(tmp_path)
    first = deliver(driver, ann_email())
    before = (tmp_path / "new" / KEY).read_bytes()
    again = deliver(MaildirDriver(tmp_path), ann_email(attempts=1, content={"subject": "x"}))
    assert first == again == Outcome.sent()
    assert os.listdir(tmp_path / "new") == [KEY]
    assert (tmp_path / "new" / KEY).read_bytes() == before


def test_a_message_a_client_moved_to_cur_is_not_written_again(tmp_path: Path) -> None:
    driver = MaildirDriver(tmp_path)
    deliver(driver, ann_email())
    box = mailbox.Maildir(tmp_path, create=False)
    message = box.get_message(KEY)
    message.set_subdir("cur")
    message.add_flag("S")
    box[KEY] = message  # what a mail client does on reading: new/KEY -> cur/KEY:2,S
    assert os.listdir(tmp_path / "new") == []
    assert os.listdir(tmp_path / "cur") == [f"{KEY}:2,S"]
    assert deliver(driver, ann_email(attempts=1)) == Outcome.sent()
    assert deliver(MaildirDriver(tmp_path), ann_email(attempts=1)) == Outcome.sent()
    assert os.listdir(tmp_path / "new") == []
    assert len(box) == 1


def test_every_attempt_builds_the_same_bytes(tmp_path: Path) -> None:
    one, two = MaildirDriver(tmp_path / "a"), MaildirDriver(tmp_path / "b")
    deliver(one, ann_email())
    deliver(two, ann_email(attempts=3))
    assert (tmp_path / "a/new" / KEY).read_bytes() == (tmp_path / "b/new" / KEY).read_bytes()


def test_a_leftover_from_a_crash_in_tmp_does_not_stop_email(tmp_path: Path) -> None:
    driver = MaildirDriver(tmp_path)
    (tmp_path / "tmp" / f"{KEY}.999.dead").write_bytes(b"half a mess")
    assert deliver(driver, ann_email()) == Outcome.sent()
    assert read_all(tmp_path)[KEY]["Subject"] == "Your order, Ann"


def test_a_newline_in_a_value_cannot_inject_a_header(tmp_path: Path) -> None:
    driver = MaildirDriver(tmp_path)
    content = {"subject": "Hi\nBcc: victim@example.com", "text": "t", "html": None}
    deliver(driver, ann_email(content=content))
    (message,) = read_all(tmp_path).values()
    assert message["Bcc"] is None
    assert message["Subject"] == "Hi Bcc: victim@example.com"


@pytest.mark.parametrize(
    "to", [None, "", "not an address", "a@example.com, b@example.com", "x@y\nBcc: z@w"]
)
def test_an_unusable_address_fails_for_good(tmp_path: Path, to: str | None) -> None:
    outcome = deliver(MaildirDriver(tmp_path), ann_email(to=to))
    assert outcome.status == "failed" and outcome.error
    if not to:
        assert outcome.error == "no email address"
    else:
        assert outcome.error == f"`To` is not one email address: {to!r}"
    assert os.listdir(tmp_path / "new") == []


@pytest.mark.parametrize(
    "to",
    UNREADABLE_ADDRESSES,
)
def test_an_address_the_email_package_cannot_read_fails_for_good(tmp_path: Path, to: str) -> None:
    """A typo the email package stumbles on (it raises IndexError on `Ann <` or a lone `"`,
    AttributeError on an unclosed domain literal or a display name ending `.:`, TypeError on a
    list ending `.\\`) fails that send for good, naming the problem; it is not retried for
    hours as if the disk had failed."""
    outcome = deliver(MaildirDriver(tmp_path), ann_email(to=to))
    assert outcome.status == "failed"
    assert (outcome.error or "").startswith(("cannot build the email", "`To` is not one"))
    assert os.listdir(tmp_path / "new") == []


def test_a_subject_that_cannot_be_encoded_fails_for_good(tmp_path: Path) -> None:
    """A lone surrogate (what JSON's `"\\ud800"` escape gives, in a trait a template puts
    in the subject) cannot be written in any encoding: the send fails for good, naming why,
    rather than being retried for hours."""
    content = {"subject": "Hi \ud800", "text": "t\n", "html": None}
    outcome = deliver(MaildirDriver(tmp_path), ann_email(content=content))
    assert outcome.status == "failed"
    assert (outcome.error or "").startswith("cannot build the email: 'utf-8' codec")
    assert os.listdir(tmp_path / "new") == []


def test_a_sender_that_is_no_address_fails_for_good_naming_it(tmp_path: Path) -> None:
    content = {"subject": "s", "text": "t", "html": None, "from": "the shop"}
    outcome = deliver(MaildirDriver(tmp_path), ann_email(content=content))
    assert outcome == Outcome.failed("`From` is not one email address: 'the shop'")


def test_a_key_that_cannot_name_a_file_fails_for_good(tmp_path: Path) -> None:
    driver = MaildirDriver(tmp_path / "outbox")
    outcome = deliver(driver, ann_email("../../escaped"))
    assert outcome == Outcome.failed("the key '../../escaped' cannot name a file")
    assert sorted(os.listdir(tmp_path)) == ["outbox"]
    assert os.listdir(tmp_path / "outbox" / "new") == []


def test_a_message_moved_to_cur_after_cur_was_last_read_is_not_written_again(
    tmp_path: Path,
) -> None:
    """cur/ is read again when it changed since the driver last read it."""
    driver = MaildirDriver(tmp_path)
    long_ago = (tmp_path / "cur").stat().st_mtime_ns - 60_000_000_000
    os.utime(tmp_path / "cur", ns=(long_ago, long_ago))
    first, second = ann_email("1" * 32), ann_email("2" * 32)
    assert deliver(driver, first) == Outcome.sent()  # (cur/ read: empty, and settled)
    assert deliver(driver, second) == Outcome.sent()
    box = mailbox.Maildir(tmp_path, create=False)
    message = box.get_message("2" * 32)
    message.set_subdir("cur")
    box["2" * 32] = message  # read by a client: new/ -> cur/
    assert deliver(driver, attrs.evolve(second, attempts=1)) == Outcome.sent()
    assert os.listdir(tmp_path / "new") == ["1" * 32]
    assert len(box) == 2


def test_non_ascii_names_and_subjects_are_encoded(tmp_path: Path) -> None:
    content = {"subject": "Ünïcode ✓", "text": "Grüße\n", "html": "<p>Grüße</p>"}
    deliver(MaildirDriver(tmp_path), ann_email(to="Åsa Öberg <asa@example.com>", content=content))
    raw = (tmp_path / "new" / KEY).read_bytes()
    raw.decode("ascii")  # headers and bodies are encoded for 7-bit transports
    (message,) = read_all(tmp_path).values()
    assert message["Subject"] == "Ünïcode ✓"
    assert message["To"].addresses[0].display_name == "Åsa Öberg"
    assert message.get_body(("plain",)).get_content() == "Grüße\n"


def test_concurrent_deliveries_each_get_their_file(tmp_path: Path) -> None:
    driver = MaildirDriver(tmp_path)
    keys = [f"{n:032x}" for n in range(50)]

    async def all_of_them() -> list[Outcome]:
        return await asyncio.gather(*(driver.deliver(ann_email(key)) for key in keys * 2))

    assert set(asyncio.run(all_of_them())) == {Outcome.sent()}
    assert sorted(os.listdir(tmp_path / "new")) == keys
    assert set(read_all(tmp_path)) == set(keys)


def test_a_rendered_message_read_back_by_a_mail_client(tmp_path: Path) -> None:
    from leadlang.runtime.delivery.render import render_message

    compiled = {
        "channel": "email",
        "dir": ".",
        "fields": {
            "subject": {"file": False, "value": "Hi {{ first_name }}"},
            "html": {"file": False, "value": "<h1>Hello {{ first_name }}</h1>"},
        },
    }
    content = render_message(compiled, {"first_name": "<script>x()</script>", "event": {}})
    deliver(MaildirDriver(tmp_path), ann_email(content=content))
    (message,) = read_all(tmp_path).values()
    html = message.get_body(("html",)).get_content()
    assert html == "<h1>Hello &lt;script&gt;x()&lt;/script&gt;</h1>\n"  # the package ends lines
    assert message.get_body(("plain",)).get_content() == "Hello <script>x()</script>\n"
    assert message["Subject"] == "Hi <script>x()</script>"


@pytest.mark.parametrize("syncfs", [True, False], ids=["syncfs", "fsync-each"])
def test_sends_made_together_are_written_as_groups_each_once(
    tmp_path: Path, syncfs: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sends attempted at once are written in groups (made durable together, by one
    `syncfs` on Linux or an fsync each elsewhere): every good one is a file, once; a bad
    one fails alone; the same key twice in a group is one file."""
    if not syncfs:
        monkeypatch.setattr(maildir, "_SYNCFS", None)
    elif maildir._SYNCFS is None:
        pytest.skip("no syncfs on this platform")
    driver = MaildirDriver(tmp_path)
    keys = [f"k{n:04d}" for n in range(600)]
    sends = [ann_email(key, to=f"c{n}@example.com") for n, key in enumerate(keys)]
    sends[7] = ann_email(keys[7], to="not an address")
    sends.append(ann_email(keys[3], to="c3@example.com"))  # (a retry racing its first try)

    async def run() -> list[Outcome]:
        try:
            return await asyncio.gather(*(driver.deliver(d) for d in sends))
        finally:
            await driver.close()

    outcomes = asyncio.run(run())
    assert outcomes[7].status == "failed"
    assert all(o == Outcome.sent() for n, o in enumerate(outcomes) if n != 7)
    names = sorted(os.listdir(tmp_path / "new"))
    assert names == sorted(k for n, k in enumerate(keys) if n != 7)
    assert os.listdir(tmp_path / "tmp") == []
    assert read_all(tmp_path)[keys[5]]["To"] == "c5@example.com"


def test_a_send_whose_file_cannot_be_made_is_retried_and_the_group_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure to make one file (here: the disk refuses its fsync) is that send's
    exception (the worker retries it); the rest of its group is delivered."""
    real = maildir._fsync_close

    def refuse_one(file: object) -> Exception | None:
        if "k0002" in str(getattr(file, "name", "")):
            getattr(file, "close")()  # noqa: B009
            return OSError(5, "Input/output error")
        return real(file)

    monkeypatch.setattr(maildir, "_SYNCFS", None)
    monkeypatch.setattr(maildir, "_fsync_close", refuse_one)
    driver = MaildirDriver(tmp_path)
    sends = [ann_email(f"k{n:04d}") for n in range(5)]

    async def run() -> list[Any]:
        try:
            return await asyncio.gather(*(driver.deliver(d) for d in sends), return_exceptions=True)
        finally:
            await driver.close()

    outcomes = asyncio.run(run())
    assert isinstance(outcomes[2], OSError)
    assert [o for n, o in enumerate(outcomes) if n != 2] == [Outcome.sent()] * 4
    assert sorted(os.listdir(tmp_path / "new")) == ["k0000", "k0001", "k0003", "k0004"]
    assert os.listdir(tmp_path / "tmp") == []


@pytest.mark.parametrize("full", [0, 2], ids=["first-of-the-group", "third"])
def test_a_file_that_cannot_be_written_is_never_half_delivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, full: int
) -> None:
    """A disk that refuses a file's bytes (full) fails that send (retried, with the disk's
    error), leaves no half file in `new/` or `tmp/`, and the retry delivers the whole
    message; the rest of its group is delivered, whichever send it was."""
    real_open = open

    class Full:
        def __init__(self, file: Any) -> None:
            self.file = file

        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self.file, name)

    def full_for_one(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        file = real_open(path, mode, *args, **kwargs)
        return Full(file) if f"k000{full}" in str(path) else file

    monkeypatch.setattr(maildir, "open", full_for_one, raising=False)
    driver = MaildirDriver(tmp_path)
    sends = [ann_email(f"k{n:04d}") for n in range(4)]

    async def run(batch: list[Delivery]) -> list[Any]:
        return await asyncio.gather(*(driver.deliver(d) for d in batch), return_exceptions=True)

    outcomes = asyncio.run(run(sends))
    assert isinstance(outcomes[full], OSError) and outcomes[full].errno == 28
    assert [o for n, o in enumerate(outcomes) if n != full] == [Outcome.sent()] * 3
    assert sorted(os.listdir(tmp_path / "new")) == [f"k000{n}" for n in range(4) if n != full]
    assert os.listdir(tmp_path / "tmp") == []
    monkeypatch.undo()
    assert asyncio.run(run([sends[full]])) == [Outcome.sent()]
    assert read_all(tmp_path)[f"k000{full}"]["Subject"] == "Your order, Ann"
    asyncio.run(driver.close())


# A child process whose writes past 2,048 bytes the kernel refuses (RLIMIT_FSIZE: EFBIG, as a
# full disk or a quota refuses them with ENOSPC or EDQUOT) after the buffer took them whole.
_LIMITED_WRITER = """
import asyncio, resource, signal, sys
from leadlang.runtime.delivery.drivers.maildir import MaildirDriver
from tests.deliveries import ann_email
driver = MaildirDriver(sys.argv[1])
big = dict(ann_email().content, text=("Thanks, Ann! " * 60 + "\\n") * 5)
sends = [ann_email(f"k000{n}") for n in range(3)] + [ann_email("big", content=big)]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (2048, resource.RLIM_INFINITY))
async def run():
    return await asyncio.gather(*(driver.deliver(d) for d in sends), return_exceptions=True)
print([getattr(o, "status", type(o).__name__) for o in asyncio.run(run())])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_file_the_disk_refuses_midway_is_neither_delivered_nor_left_behind(
    tmp_path: Path,
) -> None:
    """The disk takes the first 2 KB of a 4 KB message and refuses the rest when the file is
    flushed: that send fails (retried), no half message is in `new/` (sent as whole), none is
    left in `tmp/` to fill the disk further at every retry, and the retry delivers it whole."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), *sys.path]))
    done = subprocess.run(
        [sys.executable, "-c", _LIMITED_WRITER, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=root,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['sent', 'sent', 'sent', 'OSError']"
    assert sorted(os.listdir(tmp_path / "new")) == ["k0000", "k0001", "k0002"]
    assert os.listdir(tmp_path / "tmp") == []
    big = dict(ann_email().content, text=("Thanks, Ann! " * 60 + "\n") * 5)
    assert deliver(MaildirDriver(tmp_path), ann_email("big", content=big)) == Outcome.sent()
    assert read_all(tmp_path)["big"].get_body(("plain",)).get_content() == big["text"]


@pytest.mark.timeout(90)
def test_two_groups_are_made_durable_at_once_and_late_sends_wait_as_one_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sends attempted together are written in groups of 256, first come first written, and
    a second group is written while the first is being made durable (delivery's throughput
    rests on it); sends that arrive while both are busy wait and go together in the next
    group, not one sync each."""
    if maildir._SYNCFS is None:
        pytest.skip("no syncfs on this platform")
    real = maildir._SYNCFS
    syncs: list[int] = []
    in_tmp: list[list[str]] = []
    both_syncing = threading.Event()
    release = threading.Event()
    barrier = threading.Barrier(
        2, action=lambda: (in_tmp.append(os.listdir(tmp_path / "tmp")), both_syncing.set())
    )
    lock = threading.Lock()

    def held(fd: int) -> int:
        with lock:
            syncs.append(fd)
            first_two = len(syncs) <= 2
        if first_two:
            barrier.wait(timeout=30)  # (broken, it fails the group: the test fails)
            release.wait(timeout=30)
        return int(real(fd))

    monkeypatch.setattr(maildir, "_SYNCFS", held)
    driver = MaildirDriver(tmp_path)

    async def run() -> list[Outcome]:
        first = [
            asyncio.create_task(driver.deliver(ann_email(f"a{n:04d}", to=f"c{n}@example.com")))
            for n in range(600)
        ]
        late = []
        try:
            assert await asyncio.to_thread(both_syncing.wait, 30)
            for batch in "bc":  # (two bursts, the loop turning in between)
                late += [
                    asyncio.create_task(driver.deliver(ann_email(f"{batch}{n:04d}")))
                    for n in range(50)
                ]
                for _ in range(5):
                    await asyncio.sleep(0)
        finally:
            release.set()
        try:
            return await asyncio.gather(*first, *late)
        finally:
            await driver.close()

    outcomes = asyncio.run(run())
    assert set(outcomes) == {Outcome.sent()} and len(outcomes) == 700
    # two whole groups, the first 512 sends, written and both being made durable
    [names] = in_tmp
    assert sorted(name.split(".")[0] for name in names) == [f"a{n:04d}" for n in range(512)]
    assert len(syncs) == 3  # the other 88 and the 100 late sends: one group
    assert len(os.listdir(tmp_path / "new")) == 700
    assert os.listdir(tmp_path / "tmp") == []


def test_a_send_given_up_while_its_group_is_written_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's timeout gives up on a send (cancels its attempt) while the group it is in
    is being written: the other sends of that group are still answered, and the driver goes
    on delivering; a send given up before its group was taken is not written at all."""
    gate = threading.Event()
    entered = threading.Event()
    real = maildir._SYNCFS

    def slow(fd: int) -> int:
        entered.set()
        gate.wait(timeout=20)
        return int(real(fd))

    if real is not None:
        monkeypatch.setattr(maildir, "_SYNCFS", slow)
    else:
        real_close = maildir._fsync_close

        def slow_close(file: Any) -> Exception | None:
            entered.set()
            gate.wait(timeout=20)
            return real_close(file)

        monkeypatch.setattr(maildir, "_fsync_close", slow_close)
    driver = MaildirDriver(tmp_path)

    async def run() -> list[Any]:
        tasks = [asyncio.create_task(driver.deliver(ann_email(f"k{n:04d}"))) for n in range(5)]
        await asyncio.sleep(0)  # (every send waits for the group, not yet taken)
        tasks[4].cancel()  # given up before its group is written
        try:
            assert await asyncio.to_thread(entered.wait, 20)
            tasks[2].cancel()  # given up while its group is being made durable
        finally:
            gate.set()
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
        outcomes.append(await asyncio.wait_for(driver.deliver(ann_email("k0005")), 20))
        await driver.close()
        return outcomes

    outcomes = asyncio.run(run())
    assert [type(o).__name__ for o in outcomes] == ["Outcome"] * 2 + ["CancelledError"] + [
        "Outcome",
        "CancelledError",
        "Outcome",
    ]
    assert {o for o in outcomes if isinstance(o, Outcome)} == {Outcome.sent()}
    assert sorted(os.listdir(tmp_path / "new")) == ["k0000", "k0001", "k0002", "k0003", "k0005"]


def test_a_send_after_the_driver_is_closed_fails_at_once_instead_of_hanging(
    tmp_path: Path,
) -> None:
    """A send handed to a closed driver raises (the worker retries it) rather than waiting
    for a writer that will never come."""
    driver = MaildirDriver(tmp_path)
    asyncio.run(driver.close())

    async def late() -> Outcome:
        return await asyncio.wait_for(driver.deliver(ann_email()), 10)

    with pytest.raises(RuntimeError):
        asyncio.run(late())
    assert os.listdir(tmp_path / "new") == []


def test_a_file_system_that_fails_to_sync_delivers_none_of_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the file system reports that it could not make the group's files durable
    (`syncfs` fails, as after a write-back error), every send of the group fails (the worker
    retries them) and none is moved into new/ as if it were safely on disk."""
    if maildir._SYNCFS is None:
        pytest.skip("no syncfs on this platform")
    real = maildir._SYNCFS

    def failing(fd: int) -> int:
        real(fd)
        return -1

    monkeypatch.setattr(maildir, "_SYNCFS", failing)
    driver = MaildirDriver(tmp_path)

    async def run(sends: list[Delivery]) -> list[Any]:
        return await asyncio.gather(*(driver.deliver(d) for d in sends), return_exceptions=True)

    outcomes = asyncio.run(run([ann_email(f"k{n:04d}") for n in range(3)]))
    assert [type(o).__name__ for o in outcomes] == ["OSError"] * 3
    assert os.listdir(tmp_path / "new") == [] and os.listdir(tmp_path / "tmp") == []
    monkeypatch.undo()
    assert asyncio.run(run([ann_email("k0001")])) == [Outcome.sent()]


def test_a_message_moved_to_cur_within_the_clock_tick_of_the_last_read_is_not_written_again(
    tmp_path: Path,
) -> None:
    """On a file system with coarse timestamps (a second, or two on FAT) a client can move a
    message into cur/ without changing cur/'s modification time: a listing of cur/ made
    within the last two seconds is not trusted, so the send is still found there."""
    driver = MaildirDriver(tmp_path)
    first, second = ann_email("1" * 32), ann_email("2" * 32)
    assert deliver(driver, first) == Outcome.sent()
    assert deliver(driver, second) == Outcome.sent()
    tick = (tmp_path / "cur").stat().st_mtime_ns  # (cur/ read just now, within the tick)
    os.rename(tmp_path / "new" / ("2" * 32), tmp_path / "cur" / ("2" * 32 + ":2,S"))
    os.utime(tmp_path / "cur", ns=(tick, tick))  # (the same tick: the time did not move)
    assert deliver(driver, attrs.evolve(second, attempts=1)) == Outcome.sent()
    assert os.listdir(tmp_path / "new") == ["1" * 32]


def test_a_long_running_driver_keeps_none_of_its_finished_writers(tmp_path: Path) -> None:
    """serve runs one driver for months: a group's writer, once done, is not kept (memory
    that would grow with every send)."""
    driver = MaildirDriver(tmp_path)

    async def one_at_a_time() -> None:
        for n in range(40):
            assert await driver.deliver(ann_email(f"k{n:04d}")) == Outcome.sent()

    asyncio.run(one_at_a_time())
    gc.collect()
    writers = [
        task
        for task in gc.get_objects()
        if isinstance(task, asyncio.Task) and "_write_waiting" in repr(task.get_coro())
    ]
    assert writers == []
    asyncio.run(driver.close())


def test_a_send_left_waiting_by_a_closed_event_loop_does_not_stop_a_later_loops_sends(
    tmp_path: Path,
) -> None:
    """A driver used from a second event loop while a send of a first one, closed without
    cancelling its tasks, still waits to be written: that send's caller is gone (its outcome
    cannot be handed to a closed loop), so it is skipped, and the new loop's send is written
    and answered; it does not hang."""
    driver = MaildirDriver(tmp_path)
    first = asyncio.new_event_loop()
    abandoned = first.create_task(driver.deliver(ann_email("1" * 32)))
    first.call_soon(first.stop)
    first.run_forever()  # (one turn: the send waits for its group, whose writer has not run)
    left = asyncio.all_tasks(first)  # (the send and its group's writer)
    first.close()
    assert abandoned in left and not abandoned.done()

    async def second() -> Outcome:
        return await asyncio.wait_for(driver.deliver(ann_email("2" * 32)), 20)

    try:
        assert asyncio.run(second()) == Outcome.sent()
    finally:
        asyncio.run(driver.close())
        for task in left:  # (they can never run: let them go without a warning)
            task._log_destroy_pending = False  # type: ignore[attr-defined]
            task.get_coro().close()
    assert os.listdir(tmp_path / "new") == ["2" * 32]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names an fd through /proc")
def test_a_send_is_answered_once_its_rename_into_new_is_made_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename is durable only once its folder is: `new/` is fsynced after the group's
    renames and before `sent` is answered (a power loss could otherwise lose a file the
    outbox already counts as delivered). Nothing but the fsync call itself can see this, so
    os.fsync is watched: which folder, and what it held then."""
    new = os.path.realpath(tmp_path / "new")
    synced: list[tuple[str, list[str]]] = []
    fsync = os.fsync

    def watched(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path == new:
            synced.append((path, sorted(os.listdir(path))))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", watched)
    driver = MaildirDriver(tmp_path)

    async def go() -> list[Outcome]:
        try:
            sends = [driver.deliver(ann_email(f"{n:032x}")) for n in range(3)]
            return list(await asyncio.gather(*sends))
        finally:
            await driver.close()

    assert asyncio.run(go()) == [Outcome.sent()] * 3
    assert synced and synced[-1] == (new, [f"{n:032x}" for n in range(3)])
