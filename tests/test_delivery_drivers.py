"""make_drivers: the `[channels]` table -> one driver per channel, RUNTIME.md's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadlang.runtime.delivery.drivers import JsonLinesDriver, MaildirDriver, make_drivers


def test_the_defaults_of_runtime_section_1(tmp_path: Path) -> None:
    drivers = make_drivers({}, tmp_path)
    assert set(drivers) == {"email", "sms", "push"}
    email, sms, push = drivers["email"], drivers["sms"], drivers["push"]
    assert isinstance(email, MaildirDriver) and email.path == (tmp_path / "outbox").resolve()
    assert email.from_address == "leadlang <leadlang@localhost>"
    assert all((tmp_path / "outbox" / sub).is_dir() for sub in ("new", "cur", "tmp"))
    assert isinstance(sms, JsonLinesDriver)
    assert sms.path == (tmp_path / "outbox" / "sms.jsonl").resolve()
    assert isinstance(push, JsonLinesDriver)
    assert push.path == (tmp_path / "outbox" / "push.jsonl").resolve()


def test_a_configured_channel(tmp_path: Path) -> None:
    config = {
        "email": {"driver": "maildir", "path": "mail", "from": "Shop <shop@example.com>"},
        "sms": {"driver": "jsonl", "path": "texts.jsonl"},
        "push": {"path": "texts.jsonl"},
    }
    drivers = make_drivers(config, tmp_path)
    email = drivers["email"]
    assert isinstance(email, MaildirDriver) and email.path == (tmp_path / "mail").resolve()
    assert email.from_address == "Shop <shop@example.com>"
    assert drivers["sms"] is drivers["push"]  # one file, one writer


@pytest.mark.parametrize(
    ("channel", "name", "carries"),
    [("sms", "smtp", "email"), ("email", "http", "sms"), ("email", "webhook", "push")],
)
def test_each_network_driver_carries_one_channel(
    tmp_path: Path, channel: str, name: str, carries: str
) -> None:
    with pytest.raises(ValueError, match=f"the `{name}` driver delivers only {carries}"):
        make_drivers({channel: {"driver": name}}, tmp_path)


def test_an_unknown_driver_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown driver `carrier_pigeon`"):
        make_drivers({"sms": {"driver": "carrier_pigeon"}}, tmp_path)


def test_maildir_carries_only_email(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only email"):
        make_drivers({"sms": {"driver": "maildir"}}, tmp_path)


def test_an_unknown_channel_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown channel `fax`"):
        make_drivers({"fax": {"driver": "jsonl"}}, tmp_path)
