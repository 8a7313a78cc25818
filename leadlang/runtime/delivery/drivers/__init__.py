"""Channel drivers, one module each, and `make_drivers`: the `[channels]` config -> drivers.

With no config a channel gets RUNTIME.md section 1's default: email into the Maildir folder
`outbox/`, SMS into `outbox/sms.jsonl`, push into `outbox/push.jsonl`, relative to `base_dir`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leadlang.runtime.delivery.drivers.jsonl import JsonLinesDriver
from leadlang.runtime.delivery.drivers.maildir import DEFAULT_FROM, MaildirDriver
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
}
LATER = ("smtp", "http", "webhook")  # RUNTIME.md section 4, coming with real channels

__all__ = ["CHANNELS", "DEFAULTS", "JsonLinesDriver", "MaildirDriver", "make_drivers"]


def make_drivers(config: dict[str, Any], base_dir: Path) -> dict[str, Driver]:
    """One driver per channel from the parsed TOML's `channels` table (may be empty)."""
    unknown = sorted(set(config) - set(CHANNELS))
    if unknown:
        raise ValueError(
            f"unknown channel `{unknown[0]}` in [channels]: the channels are email, sms, push"
        )
    drivers: dict[str, Driver] = {}
    lines: dict[Path, JsonLinesDriver] = {}  # channels sharing one file share its writer
    for channel in CHANNELS:
        table = config.get(channel) or {}
        if not isinstance(table, dict):
            raise ValueError(f"[channels.{channel}] must be a table")
        name = table.get("driver", DEFAULTS[channel]["driver"])
        if name in LATER:
            raise ValueError(
                f"channel {channel}: the `{name}` driver is not available yet "
                "(use `maildir` for email, `jsonl` for sms and push)"
            )
        if name not in DRIVERS:
            known = ", ".join(f"`{known}`" for known in (*DRIVERS, *LATER))
            raise ValueError(f"channel {channel}: unknown driver `{name}` (drivers: {known})")
        if channel not in DRIVERS[name]:
            raise ValueError(f"channel {channel}: the `{name}` driver delivers only email")
        default_path = DEFAULTS[channel]["path"] if name == DEFAULTS[channel]["driver"] else None
        raw_path = table.get("path", default_path)
        if not isinstance(raw_path, str) or not raw_path:
            raise ValueError(f"channel {channel}: the `{name}` driver needs a `path`")
        path = (Path(base_dir) / raw_path).resolve()
        if name == "maildir":
            sender = table.get("from", DEFAULT_FROM)
            if not isinstance(sender, str):
                raise ValueError(f"channel {channel}: `from` must be a string")
            drivers[channel] = MaildirDriver(path, from_address=sender)
        else:
            if path not in lines:
                lines[path] = JsonLinesDriver(path)
            drivers[channel] = lines[path]
    return drivers
