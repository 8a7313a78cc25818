"""The email the mail drivers' tests deliver (Maildir and SMTP): Ann's order thanks."""

from __future__ import annotations

from typing import Any

import attrs

from leadlang.runtime.delivery.outbox import Delivery

KEY = "0123456789abcdef0123456789abcdef"


def ann_email(key: str = KEY, headers: dict[str, str] | None = None, **changes: Any) -> Delivery:
    """A multipart email to Ann (subject, text and HTML, `headers` when given), with
    `changes` to any of the delivery's fields."""
    content: dict[str, Any] = {
        "subject": "Your order, Ann",
        "text": "Thanks, Ann!\n",
        "html": "<p>Thanks, <b>Ann</b>!</p>\n",
    }
    if headers is not None:
        content["headers"] = headers
    base = Delivery(
        key=key,
        contact="c1",
        flow="winter_thank_you",
        message="thank_you",
        channel="email",
        at="2025-10-02T09:30:00Z",
        to="Ann Example <ann@example.com>",
        content=content,
        attempts=0,
    )
    return attrs.evolve(base, **changes)


# Typos in an email trait that Python's email package stumbles on when it builds the message
# (IndexError on `Ann <` or a lone `"`; AttributeError, from inside it, on an unclosed domain
# literal or a display name ending `.:`; TypeError, "'ValueTerminal' object does not support
# item assignment", on a list ending `.\` or `().[`): every mail driver must fail such a send
# for good.
UNREADABLE_ADDRESSES = (
    "Ann <",
    "ann@[1.2",
    "Ann <ann@[10.0.0.1",
    '"',
    "Dr.: ann@example.com",
    "ann.: <ann@example.com>",
    "ann@example.com, .\\",
    "Ann <ann@example.com>, ().[",
)
