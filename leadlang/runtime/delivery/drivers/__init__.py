"""Channel drivers, one module each, and `make_drivers`: the `[channels]` config -> drivers.

With no config a channel gets RUNTIME.md section 1's default: email into the Maildir folder
`outbox/`, SMS into `outbox/sms.jsonl`, push into `outbox/push.jsonl`, relative to `base_dir`.
A bad setting is a `ValueError` naming the channel and the key, before anything is sent.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from leadlang.runtime.delivery.drivers.http import HttpSmsDriver, http_url
from leadlang.runtime.delivery.drivers.jsonl import JsonLinesDriver
from leadlang.runtime.delivery.drivers.maildir import DEFAULT_FROM, MaildirDriver
from leadlang.runtime.delivery.drivers.placeholders import Filler, MissingSecret, names_in
from leadlang.runtime.delivery.drivers.smtp import DkimKey, SmtpDriver
from leadlang.runtime.delivery.drivers.webhook import WebhookDriver
from leadlang.runtime.delivery.outbox import Driver

CHANNELS = ("email", "sms", "push")
DEFAULTS: dict[str, dict[str, str]] = {
    "email": {"driver": "maildir", "path": "outbox"},
    "sms": {"driver": "jsonl", "path": "outbox/sms.jsonl"},
    "push": {"driver": "jsonl", "path": "outbox/push.jsonl"},
}
# Which drivers can carry which channels.
DRIVERS: dict[str, tuple[str, ...]] = {
    "maildir": ("email",),
    "jsonl": ("email", "sms", "push"),
    "smtp": ("email",),
    "http": ("sms",),
    "webhook": ("push",),
}
# The keys each driver takes (a misspelt `startls` must not mean plain text, nor a misspelt
# `path` the default file).
KEYS: dict[str, frozenset[str]] = {
    "maildir": frozenset({"driver", "path", "from"}),
    "jsonl": frozenset({"driver", "path"}),
    "smtp": frozenset(
        {
            "driver",
            "host",
            "port",
            "starttls",
            "tls",
            "ca_file",
            "username",
            "password",
            "from",
            "mailto_unsubscribe",
            "dkim_selector",
            "dkim_domain",
            "dkim_private_key_env",
            "connections",
        }
    ),
    "http": frozenset({"driver", "url", "headers"}),
    "webhook": frozenset({"driver", "signing_secret"}),
}
NETWORK = ("smtp", "http", "webhook")
DKIM_KEYS = ("dkim_selector", "dkim_domain", "dkim_private_key_env")

__all__ = [
    "CHANNELS",
    "DEFAULTS",
    "HttpSmsDriver",
    "JsonLinesDriver",
    "MaildirDriver",
    "SmtpDriver",
    "WebhookDriver",
    "make_drivers",
]


def make_drivers(
    config: dict[str, Any], base_dir: Path, secrets: Mapping[str, str] | None = None
) -> dict[str, Driver]:
    """One driver per channel from the parsed TOML's `channels` table (may be empty).

    `secrets` fills `{{secret:NAME}}` placeholders in at delivery (the environment and the
    config's `[secrets]`); by default the environment.
    """
    unknown = sorted(set(config) - set(CHANNELS))
    if unknown:
        raise ValueError(
            f"unknown channel `{unknown[0]}` in [channels]: the channels are email, sms, push"
        )
    resolved: Mapping[str, str] = secrets if secrets is not None else os.environ
    drivers: dict[str, Driver] = {}
    lines: dict[Path, JsonLinesDriver] = {}  # channels sharing one file share its writer
    for channel in CHANNELS:
        table = config.get(channel, {})
        if not isinstance(table, dict):
            raise ValueError(f"[channels.{channel}] must be a table")
        name = table.get("driver", DEFAULTS[channel]["driver"])
        if name not in DRIVERS:
            known = ", ".join(f"`{known}`" for known in DRIVERS)
            raise ValueError(f"channel {channel}: unknown driver `{name}` (drivers: {known})")
        if channel not in DRIVERS[name]:
            carries = ", ".join(DRIVERS[name])
            raise ValueError(f"channel {channel}: the `{name}` driver delivers only {carries}")
        settings = _Settings(channel, name, table, base_dir)
        settings.refuse_unknown_keys()
        if name in NETWORK:
            if name == "smtp":
                drivers[channel] = _smtp(settings, resolved)
            elif name == "http":
                drivers[channel] = _http(settings, resolved)
            else:
                drivers[channel] = _webhook(settings, resolved)
            continue
        default_path = DEFAULTS[channel]["path"] if name == DEFAULTS[channel]["driver"] else None
        raw_path = table.get("path", default_path)
        if not isinstance(raw_path, str) or not raw_path:
            raise ValueError(f"channel {channel}: the `{name}` driver needs a `path`")
        path = (Path(base_dir) / raw_path).resolve()
        try:
            if name == "maildir":
                sender = table.get("from", DEFAULT_FROM)
                if not isinstance(sender, str):
                    raise ValueError(f"channel {channel}: `from` must be a string")
                drivers[channel] = MaildirDriver(path, from_address=sender)
            else:
                if path.is_dir():  # (each delivery would fail, and be retried, until dead)
                    raise ValueError(
                        f"channel {channel}: `{raw_path}` is a folder: the `{name}` driver "
                        "appends to a file"
                    )
                if path not in lines:
                    lines[path] = JsonLinesDriver(path)
                drivers[channel] = lines[path]
        except OSError as exc:  # a file where a folder goes, no permission: refused, as above
            where = exc.filename or path
            raise ValueError(
                f"channel {channel}: the `{name}` driver cannot use `{where}`: {exc.strerror}"
            ) from None
    return drivers


class _Settings:
    """One `[channels.X]` table, read with errors that name the channel and the key."""

    def __init__(self, channel: str, driver: str, table: dict[str, Any], base_dir: Path) -> None:
        self.channel = channel
        self.driver = driver
        self.table = table
        self.base_dir = Path(base_dir)

    def error(self, key: str, problem: str) -> ValueError:
        return ValueError(f"channel {self.channel} (`{self.driver}` driver): `{key}` {problem}")

    def refuse_unknown_keys(self) -> None:
        for key in self.table:
            if key not in KEYS[self.driver]:
                known = ", ".join(sorted(KEYS[self.driver] - {"driver"}))
                raise self.error(key, f"is not a setting of this driver (settings: {known})")

    def text(self, key: str, required: bool = False) -> str | None:
        value = self.table.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "must be a non-empty string")
        return value.strip()

    def flag(self, key: str) -> bool:
        value = self.table.get(key, False)
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def number(self, key: str, default: int, low: int, high: int) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(key, f"must be a whole number from {low} to {high}")
        return value

    def secrets_set(self, key: str, value: Any, secrets: Mapping[str, str]) -> None:
        for name in sorted(names_in(value)):
            if name not in secrets:
                raise self.error(key, f"uses secret `{name}`, which is not set")


def _smtp(settings: _Settings, secrets: Mapping[str, str]) -> SmtpDriver:
    host = settings.text("host", required=True)
    assert host is not None
    starttls, tls = settings.flag("starttls"), settings.flag("tls")
    if starttls and tls:
        raise settings.error("tls", "and `starttls` exclude each other (465: tls, 587: starttls)")
    port = settings.number("port", 465 if tls else 587 if starttls else 25, 1, 65535)
    context = None
    ca_file = settings.text("ca_file")
    if ca_file is not None:
        if not (tls or starttls):
            raise settings.error("ca_file", "needs `tls` or `starttls`")
        try:
            context = ssl.create_default_context(cafile=str(settings.base_dir / ca_file))
        except (OSError, ssl.SSLError) as error:
            raise settings.error("ca_file", f"cannot be read as CA certificates: {error}") from None
    username, password = settings.text("username"), settings.text("password")
    if (username is None) != (password is None):
        missing = "password" if password is None else "username"
        raise settings.error(missing, "is required with `username` and `password`")
    sender = settings.text("from", required=True)
    assert sender is not None
    if not _one_address(sender):
        raise settings.error("from", f"is not one email address: {sender!r}")
    mailto = settings.text("mailto_unsubscribe")
    # (printable: it joins the List-Unsubscribe line, which a CR would break in every email)
    if mailto is not None and (
        not mailto.isprintable() or not _one_address(re.sub(r"(?i)^mailto:|\?.*$", "", mailto))
    ):
        raise settings.error("mailto_unsubscribe", f"is not an email address: {mailto!r}")
    return SmtpDriver(
        host,
        port,
        sender,
        starttls=starttls,
        tls=tls,
        tls_context=context,
        username=username,
        password=password,
        mailto_unsubscribe=mailto,
        dkim_key=_dkim_key(settings, secrets),
        connections=settings.number("connections", 4, 1, 100),
    )


def _dkim_key(settings: _Settings, secrets: Mapping[str, str]) -> DkimKey | None:
    given = [key for key in DKIM_KEYS if settings.table.get(key) is not None]
    if not given:
        return None
    for key in DKIM_KEYS:
        if key not in given:
            raise settings.error(
                key, "is required to sign with DKIM (" + ", ".join(DKIM_KEYS) + ")"
            )
    selector, domain, variable = (settings.text(key) for key in DKIM_KEYS)
    assert selector and domain and variable
    pem = os.environ.get(variable) or secrets.get(variable)
    if not pem:
        raise settings.error(
            "dkim_private_key_env", f"names `{variable}`, which is not set in the environment"
        )
    if "\n" not in pem.strip():
        pem = pem.replace("\\n", "\n")  # a PEM kept on one line in an .env file
    dkim_key = DkimKey(selector, domain, pem.encode())
    probe = b"From: a@example.com\r\nSubject: probe\r\n\r\nprobe\r\n"
    try:
        dkim_key.sign(probe, [b"from"])
    except Exception as error:  # dkimpy raises several kinds for a bad key
        raise settings.error(
            "dkim_private_key_env",
            f"names `{variable}`, which is not a usable private key ({type(error).__name__})",
        ) from None
    return dkim_key


def _http(settings: _Settings, secrets: Mapping[str, str]) -> HttpSmsDriver:
    url = settings.text("url", required=True)
    assert url is not None
    headers = settings.table.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(name, str) and isinstance(value, str) for name, value in headers.items()
    ):
        raise settings.error("headers", "must be a table of strings")
    settings.secrets_set("url", url, secrets)
    settings.secrets_set("headers", headers, secrets)
    try:
        filled = Filler(secrets).text(url)
    except MissingSecret:  # pragma: no cover (checked just above)
        filled = url
    if not http_url(filled):
        raise settings.error("url", f"is not an http(s) URL: {url!r}")
    return HttpSmsDriver(url, headers, secrets)


def _webhook(settings: _Settings, secrets: Mapping[str, str]) -> WebhookDriver:
    signing_secret = settings.text("signing_secret")
    if signing_secret is None:
        raise settings.error(
            "signing_secret", "is required (a Standard Webhooks secret, `whsec_...`)"
        )
    encoded = signing_secret.removeprefix("whsec_")
    try:
        if not encoded or not base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True):
            raise ValueError("empty")
    except (ValueError, binascii.Error):
        raise settings.error(
            "signing_secret", "is not a Standard Webhooks secret (`whsec_` and base64)"
        ) from None
    return WebhookDriver(signing_secret, secrets)


def _one_address(text: str) -> bool:
    message = EmailMessage(policy=default_policy)
    try:
        message["From"] = text
        header = message["From"]
    except (ValueError, TypeError, IndexError):
        return False
    addresses = tuple(getattr(header, "addresses", ()))
    return len(addresses) == 1 and bool(addresses[0].domain) and not header.defects
