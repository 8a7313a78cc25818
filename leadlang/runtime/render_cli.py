"""`leadlang render`: a message rendered for one contact, as serve would deliver it.

The variables are those serve renders a send with: the profile (traits, `score`, `tags`,
`id`, metrics, segments) of a contact given as JSON traits, or of a contact in serve's store.
An email is shown as its headers (the very message serve's email drivers build) and both of
its parts, decoded; an SMS as its recipient and text; a push as the webhook request.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click
import orjson

from leadlang.interpreter.compile import compile_program
from leadlang.interpreter.program import Program
from leadlang.runtime.delivery.drivers.maildir import UNBUILDABLE, build_message
from leadlang.runtime.delivery.drivers.placeholders import PLACEHOLDER
from leadlang.runtime.delivery.drivers.webhook import webhook_body
from leadlang.runtime.delivery.outbox import Delivery
from leadlang.runtime.delivery.render import RenderError
from leadlang.runtime.effects import format_time, idempotency_key
from leadlang.runtime.engine import Engine
from leadlang.runtime.policy import ADDRESS_TRAIT
from leadlang.runtime.processor import MessageValues, render_send
from leadlang.runtime.simulate import parse_timestamp
from leadlang.runtime.state import Contact, contact_from_json

PREVIEW_FLOW = "preview"


def run_render(
    program: Program,
    message: str,
    traits_json: str | None,
    contact_id: str | None,
    store_url: str | None,
    event_json: str | None,
    at_text: str | None = None,
) -> int:
    now = time.time()
    if at_text is not None:
        at = parse_timestamp(at_text)
        if at is None:
            click.echo(f"error: --at `{at_text}` is not an ISO 8601 time", err=True)
            return 2
        now = at
    ir = compile_program(program)
    if message not in ir["messages"]:
        known = ", ".join(f"`{name}`" for name in ir["messages"]) or "none"
        click.echo(f"error: no message `{message}` (messages: {known})", err=True)
        return 2
    engine = Engine(ir)
    contact = _contact(traits_json, contact_id, store_url)
    if contact is None:
        return 2
    event: dict[str, Any] = {}
    if event_json:
        try:
            event = orjson.loads(event_json)
        except orjson.JSONDecodeError as exc:
            click.echo(f"error: --event is not JSON: {exc}", err=True)
            return 2
        if not isinstance(event, dict):
            click.echo("error: --event must be a JSON object (the event's properties)", err=True)
            return 2
    definition = ir["messages"][message]
    channel = definition["channel"]
    key = idempotency_key(contact.id, PREVIEW_FLOW, "preview", 1, message)
    effect = {"event": event, "message": message, "channel": channel, "key": key}
    try:
        content = render_send(engine, MessageValues(ir["messages"]), contact, now, effect)
    except RenderError as exc:
        click.echo(f"error: message `{message}` cannot be rendered: {exc}", err=True)
        return 1
    trait = ADDRESS_TRAIT.get(channel)
    to = contact.traits.get(trait) if trait else None
    delivery = Delivery(
        key=key,
        contact=contact.id,
        flow=PREVIEW_FLOW,
        message=message,
        channel=channel,
        at=format_time(now),
        to=None if to is None else str(to),
        content=content,
        attempts=0,
    )
    try:
        shown = show(delivery)
    except UNBUILDABLE as exc:  # (an address the email package cannot read: serve fails it too)
        click.echo(f"error: message `{message}` cannot be built as an email: {exc}", err=True)
        return 1
    # a secret is never shown: `secret(NAME)` stands for it
    click.echo(PLACEHOLDER.sub(r"secret(\1)", shown), nl=False)
    return 0


def show(delivery: Delivery) -> str:
    """The delivery as a person reads it."""
    content = delivery.content
    if delivery.channel == "email":
        message = build_message(delivery)
        lines = [f"{name}: {value}" for name, value in message.items()]
        for part in message.walk():
            if part.get_content_maintype() == "multipart":
                continue
            lines += ["", f"--- {part.get_content_type()} ---", part.get_content().rstrip("\n")]
        return "\n".join(lines) + "\n"
    if delivery.channel == "sms":
        return f"To: {delivery.to or '(no phone)'}\n\n{content.get('text') or ''}\n"
    lines = [f"POST {content.get('url') or '(no url)'}"]
    lines += [f"{name}: {value}" for name, value in (content.get("headers") or {}).items()]
    # (the body the webhook driver posts: the `json`, else the `title` and `text`; `null`
    # was shown for a push with only a title and a text)
    body = orjson.dumps(webhook_body(content), option=orjson.OPT_INDENT_2).decode()
    return "\n".join([*lines, "", body]) + "\n"


def _contact(
    traits_json: str | None, contact_id: str | None, store_url: str | None
) -> Contact | None:
    if traits_json is not None:
        try:
            traits = orjson.loads(traits_json)
        except orjson.JSONDecodeError as exc:
            click.echo(f"error: --traits is not JSON: {exc}", err=True)
            return None
        if not isinstance(traits, dict):
            click.echo("error: --traits must be a JSON object", err=True)
            return None
        contact = Contact(str(traits.get("id", "preview")))
        contact.traits = {k: v for k, v in traits.items() if k != "id"}
        return contact
    assert contact_id is not None and store_url is not None
    return asyncio.run(_stored(contact_id, store_url))


async def _stored(contact_id: str, store_url: str) -> Contact | None:
    from leadlang.runtime.store.sql import StoreError, open_store

    try:
        store = await open_store(store_url, create=False)
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        return None
    try:
        found = await store.contact(contact_id)
    finally:
        await store.close()
    if found is None:
        click.echo(f"error: no contact `{contact_id}` in the store", err=True)
        return None
    return contact_from_json(orjson.loads(found[0]))
