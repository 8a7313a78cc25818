"""The admin API (behind `Authorization: Bearer ADMIN_TOKEN`): contacts, flows, the effect
ledger and the outbox; and the open `/healthz`."""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiohttp import web

from leadlang.runtime.context import Context
from leadlang.runtime.effects import format_time
from leadlang.runtime.engine import Engine
from leadlang.runtime.server.ingest import error_response, key_matches
from leadlang.runtime.state import Contact, contact_from_json
from leadlang.runtime.store.sql import SqlStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_LIMIT = 1000


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
    )


class Running(Protocol):
    """What the admin API reads of the daemon: the program it runs, and its reload."""

    engine: Engine

    def flows(self) -> dict[str, dict[str, Any]]:
        """name -> {"version", "states": [...]} of the program run now."""
        ...

    async def reload(self, dry_run: bool) -> tuple[int, dict[str, Any]]:
        """Read the scripts again: (HTTP status, JSON answer)."""
        ...


class Admin:
    def __init__(
        self, store: SqlStore, token: str, daemon: Running, clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.token = token
        self.daemon = daemon
        self.clock = clock

    def routes(self) -> list[web.RouteDef]:
        guarded = self.guarded
        return [
            web.get("/healthz", self.healthz),
            web.get("/v1/contacts/{id}", guarded(self.contact)),
            web.get("/v1/flows", guarded(self.flow_list)),
            web.get("/v1/flows/{name}", guarded(self.flow_one)),
            web.get("/v1/effects", guarded(self.effects)),
            web.get("/v1/outbox", guarded(self.outbox)),
            web.post("/v1/reload", guarded(self.reload)),
        ]

    def guarded(self, handler: Handler) -> Handler:
        async def check(request: web.Request) -> web.StreamResponse:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not key_matches(value.strip(), (self.token,)):
                return error_response(401, "unauthorized", "the admin token is required")
            return await handler(request)

        return check

    async def healthz(self, request: web.Request) -> web.Response:
        ok = await self.store.ping()
        return _json({"ok": ok, "store": "reachable" if ok else "unreachable"}, 200 if ok else 503)

    async def contact(self, request: web.Request) -> web.Response:
        contact_id = request.match_info["id"]
        if "\x00" in contact_id:  # (ingest refuses such an id: no contact has one)
            return error_response(404, "not found", "no contact with a NUL character in its id")
        found = await self.store.contact(contact_id)
        if found is None:
            if await self._seen(contact_id):
                # seen, its events not processed yet: the profile of a contact with nothing
                # applied, in the same shape as any other
                return _json({**self._profile(Contact(contact_id), []), "pending": True})
            return error_response(404, "not found", f"no contact `{contact_id}`")
        state_text, recent = found
        contact = contact_from_json(orjson.loads(state_text))
        return _json(self._profile(contact, [orjson.loads(e) for e in recent]))

    async def _seen(self, contact_id: str) -> bool:
        """Whether an event of the contact was accepted: on SQLite it may still wait in
        ingest's inbox, not yet admitted into `events`. The inbox is read first: admission
        commits `events` before it deletes the inbox's row, so the event is found in one."""
        inbox = self.store.inbox
        if inbox is not None and await asyncio.to_thread(inbox.holds_contact, contact_id):
            return True
        return await self.store.contact_known(contact_id)

    def _profile(self, contact: Contact, recent: list[Any]) -> dict[str, Any]:
        """The contact as of now: score with decay, metric values and segments computed by
        the engine from its stored state."""
        engine = self.daemon.engine
        ctx = Context(engine, contact, self.clock())
        return {
            "id": contact.id,
            "traits": contact.traits,
            "score": ctx.score(),
            "metrics": {name: ctx.metric(name) for name in engine.metrics},
            "segments": [name for name in engine.segments if ctx.segment(name)],
            "tags": list(contact.tags),
            "enrollments": [
                {
                    "flow": enr.flow,
                    "version": enr.version,
                    "step": enr.state,
                    "waiting": enr.wait,
                    "waiting_until": None if enr.deadline is None else format_time(enr.deadline),
                }
                for enr in contact.enrollments.values()
            ],
            "next_wake": None if contact.wake is None else format_time(contact.wake),
            "effects": recent,
        }

    async def flow_list(self, request: web.Request) -> web.Response:
        stats = await self.store.flow_stats()
        flows = self.daemon.flows()
        return _json({"flows": [self._flow(flows[name], name, stats.get(name)) for name in flows]})

    async def flow_one(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        flow = self.daemon.flows().get(name)
        if flow is None:
            return error_response(404, "not found", f"no flow `{name}`")
        stats = await self.store.flow_stats(name)
        return _json(self._flow(flow, name, stats.get(name)))

    def _flow(
        self, flow: dict[str, Any], name: str, stats: dict[str, Any] | None
    ) -> dict[str, Any]:
        stats = stats or {"actions": {}, "arms": {}, "steps": {}, "versions": {}}
        actions = stats["actions"]
        return {
            "name": name,
            "version": flow["version"],
            "steps": {sid: stats["steps"].get(sid, 0) for sid in flow["states"]},
            # contacts inside, per version they run on (older ones finish on theirs)
            "versions": stats["versions"],
            "entered": actions.get("enter", 0),
            "exited": actions.get("exit", 0),
            "goals": actions.get("goal", 0),
            "sent": actions.get("send", 0),
            "skipped": actions.get("skip", 0),
            "split_arms": stats["arms"],
        }

    async def effects(self, request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "0") or 0)
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return error_response(400, "bad query", "`after` and `limit` must be whole numbers")
        if not 0 <= after < 2**63:  # (a database integer: a larger cursor is no cursor)
            return error_response(400, "bad query", "`after` is not a cursor of this ledger")
        if not 1 <= limit <= MAX_LIMIT:
            return error_response(400, "bad query", f"`limit` must be 1 to {MAX_LIMIT}")
        contact = request.query.get("contact")
        # one more than asked for: `next` is null when this page holds the last effect
        rows = await self.store.effects_after(after, limit + 1, contact)
        more = len(rows) > limit
        effects = []
        for effect_id, body in rows[:limit]:
            effect = orjson.loads(body)
            effect["id"] = effect_id
            effects.append(effect)
        nxt = str(effects[-1]["id"]) if more else None
        return _json({"effects": effects, "next": nxt})

    async def outbox(self, request: web.Request) -> web.Response:
        status = request.query.get("status")
        if status not in (None, "pending", "sent", "dead"):
            return error_response(400, "bad query", "`status` is pending, sent or dead")
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            limit = -1
        if not 1 <= limit <= MAX_LIMIT:
            return error_response(400, "bad query", f"`limit` must be 1 to {MAX_LIMIT}")
        after = None
        if request.query.get("after"):
            after = outbox_cursor(request.query["after"])
            if after is None:
                return error_response(400, "bad query", "`after` is not a cursor of this outbox")
        # one more than asked for: `next` is null when this page holds the last row
        rows = await self.store.outbox_rows(status, limit + 1, after)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = _outbox_cursor(rows[-1]) if more else None
        for row in rows:
            del row["created"]
            row["next_attempt"] = format_time(row["next_attempt"])
            if row["delivered"] is not None:
                row["delivered"] = format_time(row["delivered"])
        return _json({"outbox": rows, "next": nxt})

    async def reload(self, request: web.Request) -> web.Response:
        """Read the scripts again (`?dry_run=1`: only say what it would change)."""
        flag = request.query.get("dry_run", "0").lower()
        if flag not in ("", "0", "1", "true", "false"):
            return error_response(400, "bad query", "`dry_run` is 1 or 0")
        status, answer = await self.daemon.reload(flag in ("", "1", "true"))
        return _json(answer, status)


def _outbox_cursor(row: dict[str, Any]) -> str:
    """The opaque cursor after an outbox row: its `created` and `key`, as base64 of JSON."""
    return base64.urlsafe_b64encode(orjson.dumps([row["created"], row["key"]])).decode().rstrip("=")


def outbox_cursor(text: str) -> tuple[float, str] | None:
    """`_outbox_cursor`'s (created, key), or None when `text` is not such a cursor."""
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))
        created, key = orjson.loads(raw)
    except (ValueError, TypeError, UnicodeError, orjson.JSONDecodeError):
        return None
    if isinstance(created, bool) or not isinstance(created, int | float):
        return None
    if not isinstance(key, str) or "\x00" in key or not math.isfinite(created):
        return None
    return float(created), key
