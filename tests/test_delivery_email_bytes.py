"""The email drivers write a message's bytes directly (`email_bytes`) instead of building an
`EmailMessage`: the bytes must be exactly those the email package writes (`build_message`,
then `as_bytes` with the SMTP driver's wire policy or the Maildir file's), for any content;
and the usual email must take the direct path (it is 15 times faster)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadlang.runtime.delivery.drivers.maildir import _FILE_LAYOUT, build_message, email_bytes
from leadlang.runtime.delivery.drivers.smtp import _LAYOUT, SmtpDriver
from leadlang.runtime.delivery.outbox import Delivery
from tests.deliveries import KEY, ann_email

FROM = "Shop <shop@example.com>"

# Pieces of text that exercise the writer's choices: quoting in quoted-printable (`=`,
# trailing blanks, non-ASCII), folding (long), encoded words (`=?`), line ends, nothing.
pieces = st.sampled_from(
    [
        "",
        " ",
        "a",
        "Hi Ann",
        "15% off",
        "=",
        "=?utf-8?q?x?=",
        "café",
        "✓",
        "\t",
        "\n",
        "\r\n",
        "\r",
        "x" * 70,
        "y" * 1000,
        '<a href="https://shop.example.com/p?a=1&b=2">link</a>',
        "\x0b",
        "\u2028",
    ]
)
texts = st.lists(pieces, max_size=8).map("".join)
addresses = st.sampled_from(
    [
        "ann@example.com",
        "Ann Example <ann@example.com>",
        "Ann <a.b+c@mail.example.com>",
        '"Example, Ann" <ann@example.com>',
        "Åsa Öberg <asa@example.com>",
        "ann@localhost",
        "not an address",
        "a@example.com, b@example.com",
        "x@y\nBcc: z@w",
        "Ann (home) <ann@example.com>",
        "=?utf-8?q?Ann?= <ann@example.com>",
        "A Very Long Display Name That Goes On And On Forever <a.very.long.address@example.com>",
        "ann..x@example.com",
        "",
    ]
)
header_names = st.sampled_from(
    ["List-Unsubscribe", "List-Unsubscribe-Post", "X-Campaign", "list-unsubscribe", "Subject"]
)


@st.composite
def deliveries(draw: Any) -> Delivery:
    content: dict[str, Any] = {"subject": draw(texts)}
    if draw(st.booleans()):
        content["text"] = draw(texts)
    if draw(st.booleans()):
        content["html"] = draw(texts)
    if draw(st.booleans()):
        content["from"] = draw(addresses)
    if draw(st.booleans()):
        content["reply_to"] = draw(addresses)
    if draw(st.booleans()):
        content["headers"] = draw(st.dictionaries(header_names, texts, max_size=3))
    key = draw(st.sampled_from([KEY, "k", "x" * 64, "a-b_c", "with space", "k" * 70]))
    return ann_email(key, to=draw(addresses), content=content, contact=draw(texts))


def _wire(delivery: Delivery, mailto: str | None) -> tuple[str, str, bytes] | str:
    """What the email package makes of a delivery for SMTP: the envelope and bytes, or the
    error that makes it unsendable."""
    try:
        built = SmtpDriver("127.0.0.1", 25, FROM, mailto_unsubscribe=mailto).build(delivery)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return built.sender, built.recipient, built.data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries(), st.sampled_from([None, "unsubscribe@shop.example.com", "mailto:u@x.com"]))
def test_the_direct_bytes_are_the_email_packages(delivery: Delivery, mailto: str | None) -> None:
    try:
        quick = email_bytes(delivery, FROM, _LAYOUT, mailto)
    except Exception:
        quick = None  # (the drivers then take the email package's path)
    if quick is not None:
        assert (quick.sender, quick.recipient, quick.data) == _wire(delivery, mailto)
    try:
        on_disk = email_bytes(delivery, FROM, _FILE_LAYOUT)
    except Exception:
        on_disk = None
    if on_disk is not None:
        assert on_disk.data == build_message(delivery, FROM).as_bytes()


def _bench_like(i: int) -> Delivery:
    html = "".join(
        f'<p>Item {n}: 15% off. <a href="https://shop.example.com/p/{n}?u=1">See it</a></p>'
        for n in range(12)
    )
    content = {
        "subject": "15% off your next order",
        "text": f"Hi user{i},\n\nYour coupon: SAVE15.\n",
        "html": f"<html><body><h1>Hi user{i},</h1>{html}</body></html>",
        "headers": {
            "List-Unsubscribe": f"<https://shop.example.com/u/{'t' * 60}{i}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    }
    return ann_email(f"{i:032x}", to=f"User {i} <user{i}@example.com>", content=content)


@pytest.mark.parametrize("mailto", [None, "unsubscribe@shop.example.com"])
def test_the_usual_email_is_written_directly(mailto: str | None) -> None:
    for delivery in [ann_email(), *(_bench_like(i) for i in range(3))]:
        quick = email_bytes(delivery, FROM, _LAYOUT, mailto)
        assert quick is not None
        assert (quick.sender, quick.recipient, quick.data) == _wire(delivery, mailto)
        on_disk = email_bytes(delivery, FROM, _FILE_LAYOUT)
        assert on_disk is not None
        assert on_disk.data == build_message(delivery, FROM).as_bytes()


def test_non_ascii_headers_are_encoded_and_the_rest_written_directly() -> None:
    delivery = ann_email(
        to="Åsa Öberg <asa@example.com>", content={"subject": "Grüße ✓", "text": "Grüße\n"}
    )
    quick = email_bytes(delivery, FROM, _LAYOUT)
    assert quick is not None and quick.recipient == "asa@example.com"
    assert quick.data == _wire(delivery, None)[2]  # type: ignore[index]
    quick.data.decode("ascii")  # 7-bit clean: encoded words and quoted-printable
