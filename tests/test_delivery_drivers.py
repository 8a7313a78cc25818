"""make_drivers: the `[channels]` table -> one driver per channel, RUNTIME.md's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadlang.runtime.delivery.drivers import (
    HttpSmsDriver,
    JsonLinesDriver,
    MaildirDriver,
    WebhookDriver,
    make_drivers,
)


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


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"email": "smtp"}, r"\[channels.email\] must be a table"),
        ({"email": {"driver": "jsonl"}}, "channel email: the `jsonl` driver needs a `path`"),
        ({"sms": {"path": ""}}, "channel sms: the `jsonl` driver needs a `path`"),
        ({"sms": {"path": 5}}, "channel sms: the `jsonl` driver needs a `path`"),
        ({"email": {"from": 5}}, "channel email: `from` must be a string"),
        # a misspelt `path` of a file driver must not deliver into the default file
        (
            {"sms": {"driver": "jsonl", "pth": "x.jsonl"}},
            r"`pth` is not a setting of this driver \(settings: path\)$",
        ),
        (
            {"email": {"driver": "maildir", "folder": "mail"}},
            r"`folder` is not a setting of this driver \(settings: from, path\)$",
        ),
        (
            {"sms": {"driver": "http", "url": "https://sms.example", "token": "t"}},
            r"`token` is not a setting of this driver \(settings: headers, url\)$",
        ),
        (
            {"sms": {"driver": "http", "url": "https://sms.example", "headers": ["A: b"]}},
            "`headers` must be a table of strings",
        ),
        (
            {"sms": {"driver": "http", "url": "https://sms.example", "headers": False}},
            "`headers` must be a table of strings",
        ),
        (
            {"sms": {"driver": "http", "url": "https://sms.example/{{secret:NOPE}}"}},
            "`url` uses secret `NOPE`, which is not set",
        ),
        (
            {"push": {"driver": "webhook", "signing_secret": "whsec_c2Vj!cmV0"}},
            "`signing_secret` is not a Standard Webhooks secret",
        ),
    ],
)
def test_bad_settings_are_refused_with_the_channel_and_key(
    tmp_path: Path, config: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_drivers(config, tmp_path, secrets={})


def test_secrets_come_from_the_environment_unless_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADLANG_TEST_SMS_TOKEN", "t0ken")
    config = {
        "sms": {"driver": "http", "url": "https://sms.example/{{secret:LEADLANG_TEST_SMS_TOKEN}}"}
    }
    assert isinstance(make_drivers(config, tmp_path)["sms"], HttpSmsDriver)
    with pytest.raises(ValueError, match="uses secret `LEADLANG_TEST_SMS_TOKEN`, which is not set"):
        make_drivers(config, tmp_path, secrets={})


def test_settings_filled_in_or_written_as_allowed(tmp_path: Path) -> None:
    """A url that is all a secret is checked once filled in; a webhook secret may leave out
    its base64 padding; two paths naming one file share its writer."""
    secrets = {"SMS_URL": "https://sms.example/send"}
    config = {
        "sms": {"driver": "http", "url": "{{secret:SMS_URL}}"},
        "push": {"driver": "webhook", "signing_secret": "whsec_" + "c2VjcmV0"[:7]},
    }
    drivers = make_drivers(config, tmp_path, secrets=secrets)
    assert isinstance(drivers["sms"], HttpSmsDriver)
    assert isinstance(drivers["push"], WebhookDriver)
    shared = make_drivers(
        {"sms": {"path": "outbox/../all.jsonl"}, "push": {"path": "all.jsonl"}}, tmp_path
    )
    assert shared["sms"] is shared["push"]
