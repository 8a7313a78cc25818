"""serve's processing loop: stored events and due timers through the engine, exactly as simulate.

Each round takes a group of contacts that have pending events or a due timer, runs each
contact's new events (in time order, each preceded by the timers due by then) and then its
timers due by now through `simulate.run_contact`, the very function simulate uses, and writes
the new state, the effects (the ledger), the outbox rows and the next wake-up in the round's
one transaction. Nothing here decides anything the engine decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import msgspec
import orjson
from jinja2 import TemplateError, meta

from leadlang.interpreter.templates import template_environment
from leadlang.runtime.context import Context
from leadlang.runtime.delivery.drivers.placeholders import defused
from leadlang.runtime.delivery.render import RenderError, clear_template_cache, render_message
from leadlang.runtime.delivery.tracking import Send, Tracker
from leadlang.runtime.effects import Effect, public
from leadlang.runtime.engine import Cond, Engine, Event, UnknownVersion, _jsonable
from leadlang.runtime.log_types import apply_declared_types
from leadlang.runtime.policy import ADDRESS_TRAIT
from leadlang.runtime.retrying import Retrying
from leadlang.runtime.simulate import run_contact
from leadlang.runtime.state import Contact, contact_from_json, contact_to_json
from leadlang.runtime.store.sql import (
    DEDUP_SECONDS,
    ClaimedRound,
    ContactRow,
    Pending,
    RoundConflict,
    RoundResult,
    SqlStore,
)

log = logging.getLogger("leadlang.serve")

PURGE_EVERY = 300.0  # seconds between drops of `messageId`s past the deduplication window
# An idle processor looks for work this often. Its own daemon's ingest wakes it at once; on
# PostgreSQL, where other daemons accept events too, this is how theirs reach it while their
# own processors are busy: 0.1 s brings one in 52-61 ms at the median, against 824-854 ms at
# 1 s and 10-17 ms woken by LISTEN/NOTIFY (bench_scaleout's `wakeup`), for a few index reads.
IDLE_POLL = 1.0
IDLE_POLL_SHARED = 0.1
SMALL_ROUND_PAUSE = 0.01  # seconds between a round of under a quarter of `batch` and the next
BUSY_ELSEWHERE = 0.02  # seconds to wait when the due work is all claimed by other processors
_encode = msgspec.json.Encoder().encode  # the bytes simulate prints (ints of any size)


def template_reads(message: dict[str, Any]) -> frozenset[str] | None:
    """Every variable name the message's templates (inline or in files) read; None when
    they cannot be read here (the renderer then reports why)."""
    env = template_environment()
    names: set[str] = set()
    fields = list(message["fields"].values())
    values: list[Any] = []
    try:
        for field in fields:
            if field["file"]:
                values.append((Path(message["dir"]) / field["value"]).read_text(encoding="utf-8"))
            else:
                values.append(field["value"])
        while values:
            value = values.pop()
            if isinstance(value, str):
                names |= meta.find_undeclared_variables(env.parse(value))
            elif isinstance(value, dict) and "$expr" not in value:
                values.extend(value.values())
            elif isinstance(value, list):
                values.extend(value)
    except (OSError, UnicodeDecodeError, TemplateError, RecursionError):
        return None
    return frozenset(names)


class MessageValues:
    """The expressions in messages' `headers` and `json` (`{"$expr": ...}` in the IR),
    compiled once, and a message's fields with them evaluated for a contact at an instant
    (as `{"$value": ...}`, which the renderer takes as it is)."""

    def __init__(self, messages: dict[str, Any]) -> None:
        self.messages = messages
        self._conds: dict[int, Cond] = {}
        self._dynamic: dict[str, bool] = {}  # message -> whether it has expressions

    def evaluated(self, name: str, ctx: Context, event: dict[str, Any] | None) -> dict[str, Any]:
        message = self.messages[name]
        dynamic = self._dynamic.get(name)
        if dynamic is None:
            dynamic = self._dynamic[name] = any(
                _has_expr(f["value"]) for f in message["fields"].values()
            )
        if not dynamic:
            return message
        ctx.enr = None
        ctx.event = event

        def walk(value: Any) -> Any:
            if isinstance(value, dict):
                if len(value) == 1 and "$expr" in value:
                    cond = self._conds.get(id(value))
                    if cond is None:
                        cond = self._conds[id(value)] = Cond(value["$expr"], f"<message {name}>")
                    return {"$value": defused(_jsonable(cond.fn(ctx, None)))}
                return {k: walk(v) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v) for v in value]
            return value

        fields = {k: {**f, "value": walk(f["value"])} for k, f in message["fields"].items()}
        return {**message, "fields": fields}


def _has_expr(value: Any) -> bool:
    if isinstance(value, dict):
        return "$expr" in value or any(_has_expr(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_expr(v) for v in value)
    return False


def template_variables(
    ctx: Context, effect: Effect, reads: frozenset[str] | None = None
) -> dict[str, Any]:
    """What a message template reads: the profile at the context's instant (traits, `score`,
    `tags`, `id`, metrics, segments), the bound `event` and the send's `with` values. Metrics
    and segments are computed only when in `reads` (the names the templates read; None: all)."""
    contact, engine = ctx.contact, ctx.engine
    variables: dict[str, Any] = dict(contact.traits)
    for name in engine.metrics:
        if reads is None or name in reads:
            variables[name] = ctx.metric(name)
    for name in engine.segments:
        if reads is None or name in reads:
            variables[name] = ctx.segment(name)
    variables.update(
        score=ctx.score(),
        tags=list(contact.tags),
        id=contact.id,
        now=ctx.now(),
        contact={"id": contact.id, **contact.traits},
        event=effect.get("event") or {},
    )
    variables.update(effect.get("data") or {})
    return variables


def render_send(
    engine: Engine,
    values: MessageValues,
    contact: Contact,
    t: float,
    effect: Effect,
    reads: frozenset[str] | None = None,
) -> dict[str, Any]:
    """The content of a send's message for the contact at `t` (one evaluation context
    serves its templates and its expressions); raises RenderError."""
    ctx = Context(engine, contact, t)
    variables = template_variables(ctx, effect, reads)
    message = values.evaluated(effect["message"], ctx, effect.get("event"))
    content = render_message(message, variables)
    if message.get("secrets"):
        content["secrets"] = message["secrets"]  # the only names drivers fill in
    return content


class Runner:
    """Turns one round's rows into what the round writes (a function of its inputs and `now`
    alone: no I/O, so it can run in a thread)."""

    def __init__(
        self,
        engine: Engine,
        program: dict[str, Any],
        secret: str | None = None,
        public_url: str | None = None,
    ) -> None:
        self.engine = engine
        self.messages: dict[str, Any] = program["messages"]
        self.event_types: dict[str, dict[str, str]] = program.get("event_types") or {}
        self.values = MessageValues(self.messages)
        # emails get tracked links, the open pixel and List-Unsubscribe once links can reach us
        self.tracker = Tracker(secret, public_url) if secret and public_url else None
        self._reads: dict[str, frozenset[str] | None] = {}
        # flow versions the store does not keep: their contacts fail instead of waiting
        self.lost: set[tuple[str, str]] = set()

    def reads(self, message: str) -> frozenset[str] | None:
        if message not in self._reads:
            self._reads[message] = template_reads(self.messages[message])
        return self._reads[message]

    def __call__(
        self,
        rows: list[ContactRow],
        pending: dict[str, list[Pending]],
        cut: dict[str, bool],
        now: float,
    ) -> RoundResult:
        result = RoundResult()
        for row in rows:
            events = pending.get(row.id, [])
            try:
                self._contact(row, events, cut.get(row.id, False), now, result)
            except UnknownVersion as exc:
                if (exc.flow, exc.version) in self.lost:
                    self._failed(row, events, result)
                    continue
                # on a flow version not loaded yet: the processor loads it from the store,
                # and the contact runs at the next round (its events stay pending)
                _drop_partial(result, row.id, {p.id for p in events})
                result.unknown.add((exc.flow, exc.version))
            except Exception:
                # A bug or an input the engine cannot take must not stop every other contact
                # (nor this one's next round, forever): its events are set aside as failed,
                # its timers stop, its state stays as it was; the log says why.
                self._failed(row, events, result)
        # The round's effects in simulate's order (each contact's own order kept), so the
        # ledger's ids follow it across the round's contacts too: waits that came due while
        # the daemon was down run in due order (RUNTIME.md section 3), not contact by contact.
        result.effects.sort(key=_ledger_order)
        return result

    def _failed(self, row: ContactRow, events: list[Pending], result: RoundResult) -> None:
        log.exception("contact %r could not be processed; its events are set aside", row.id)
        _drop_partial(result, row.id, {p.id for p in events})
        result.failed.extend(p.id for p in events)
        if row.state is not None:
            result.parked.append(row.id)

    def _contact(
        self, row: ContactRow, events: list[Pending], cut: bool, now: float, out: RoundResult
    ) -> None:
        engine = self.engine
        if row.state is None:
            contact = Contact(row.id)
            rank_t, rank_id = (events[0].t, events[0].id) if events else (now, 0)
            clock = -math.inf
        else:
            contact = contact_from_json(orjson.loads(row.state), engine.trigger_ids)
            rank_t, rank_id, clock = row.rank_t, row.rank_id, row.clock
        timeline: list[Event] = []
        for p in events:
            body = orjson.loads(p.body)
            # A late event (older than what the contact was processed to) runs at that instant.
            late = p.t < clock
            timeline.append(
                Event(
                    clock if late else p.t,
                    p.id,
                    row.id,
                    body.get("n"),
                    body.get("p") or {},
                    body.get("tr"),
                    p.t if late else None,
                )
            )
            out.processed.append(p.id)
        for line, problem in apply_declared_types(timeline, self.event_types):
            log.warning("event %s of contact %r: %s (kept as it is)", line, row.id, problem)
        # When some of its events wait for the next round, time runs only to the last one taken.
        until = timeline[-1].t if cut and timeline else now
        steps: list[Any] = []
        last = run_contact(engine, contact, 0, timeline, until, steps, math.inf)
        clock = max(clock, last[0])
        for instant, kind, slot, sub, effects in steps:
            k1, k2 = (rank_t, rank_id) if kind == 0 else (0.0, slot)
            for effect in effects:
                out.effects.append(
                    {
                        "contact": row.id,
                        "at": instant,
                        "kind": kind,
                        "k1": k1,
                        "k2": k2,
                        "sub": sub,
                        "flow": effect.get("flow"),
                        "action": effect["action"],
                        "step": effect.get("step") or effect.get("split"),
                        "arm": effect.get("arm"),
                        "body": _encode(public(effect)).decode(),
                    }
                )
                if effect["action"] == "send":
                    out.outbox.append(self._outbox_row(contact, instant, effect, now))
        contact.scheduled = contact.wake
        out.contacts.append(
            {
                "id": row.id,
                "state": orjson.dumps(
                    contact_to_json(contact, engine.trigger_names), option=orjson.OPT_NON_STR_KEYS
                ).decode(),
                "wake": contact.wake,
                "clock": clock if clock != -math.inf else (timeline[0].t if timeline else now),
                "rank_t": rank_t,
                "rank_id": rank_id,
                # (strictly later than what was read, so a write in between is always seen)
                "updated": now if row.updated is None or now > row.updated else row.updated + 1e-3,
                "expected": row.updated,
            }
        )
        for enr in contact.enrollments.values():
            out.positions.append(
                {
                    "contact": row.id,
                    "flow": enr.flow,
                    "version": enr.version,
                    "step": enr.state,
                    "waiting_until": enr.deadline,
                }
            )

    def _outbox_row(self, contact: Contact, t: float, effect: Effect, now: float) -> dict[str, Any]:
        channel = effect["channel"]
        trait = ADDRESS_TRAIT.get(channel)
        recipient = contact.traits.get(trait) if trait else None
        row: dict[str, Any] = {
            "key": effect["key"],
            "contact": contact.id,
            "flow": effect["flow"],
            "message": effect["message"],
            "channel": channel,
            "at": effect["at"],
            "recipient": None if recipient is None else str(recipient),
            "status": "pending",
            "attempts": 0,
            "next_attempt": now,
            "lease_until": None,
            "last_error": None,
            "created": now,
            "delivered": None,
        }
        try:
            reads = self.reads(effect["message"])
            content = render_send(self.engine, self.values, contact, t, effect, reads)
            if channel == "email" and self.tracker is not None:
                send = Send(contact.id, effect["key"], channel, effect["message"])
                content = self.tracker.decorate_email(content, send)
            row["content"] = orjson.dumps(content, default=str).decode()
        except (RenderError, KeyError, TypeError, ValueError) as exc:
            # a message that cannot be rendered is dead-lettered with why; the daemon goes on
            row.update(content="{}", status="dead", last_error=f"render failed: {exc}")
        return row


class Processor:
    """The loop: rounds while there is work, then sleep until woken (new events) or the next
    timer is due."""

    def __init__(
        self,
        store: SqlStore,
        engine: Engine,
        program: dict[str, Any],
        clock: Callable[[], float],
        on_output: Callable[[], None] = lambda: None,
        batch: int = 500,
        max_events: int = 20_000,
        secret: str | None = None,
        public_url: str | None = None,
        generation: int = 0,
        on_program: Callable[[dict[str, Any]], None] = lambda program: None,
    ) -> None:
        self.store = store
        self.runner = Runner(engine, program, secret, public_url)
        self.secret = secret
        self.public_url = public_url
        self.generation = generation  # of the program run (`publish_program`)
        self.on_program = on_program
        self.clock = clock
        self.on_output = on_output
        self.batch = batch
        self.max_events = max_events
        self.wakeup = asyncio.Event()  # rounds: events admitted, or the loop stopping
        self.admission = asyncio.Event()  # the inbox's admission: ingest committed
        self.caught_up = asyncio.Event()  # the inbox admitted to its end once (or stopping)
        self.rounds = 0
        self._next_purge = 0.0

    def wake(self) -> None:
        """New events were committed: the rounds look for them, or, when they went to the
        inbox, its admission brings them in first (and then wakes the rounds)."""
        if self.store.inbox is not None:
            self.admission.set()
        else:
            self.wakeup.set()

    async def run_once(self) -> int:
        """Admit what the inbox holds, then one round: claim and read the work, run it (in a
        thread, so ingest is served meanwhile), write what it decided in one transaction.
        Returns the number of contacts run (0: no work, or all of it claimed by other
        processors)."""
        await self.store.admit_all()
        round_ = await self._start_round(frozenset())
        if round_ is None:
            return 0
        await self._finish_round(round_)
        return round_.size

    async def _start_round(self, busy: frozenset[str]) -> _Round | None:
        """Claim and read the work of contacts not in `busy`, run it, and start writing it
        (a task); None when there is no work."""
        now = self.clock()
        work = await self.store.claim_round(now, self.batch, self.max_events, busy).__aenter__()
        try:
            if not work.rows:
                await work.__aexit__(None, None, None)
                return None
            if work.generation != self.generation:
                await self.follow(work)
            result = await asyncio.to_thread(self.runner, work.rows, work.pending, work.cut, now)
        except BaseException:
            await work.__aexit__(None, None, None)  # (rolled back, the claims released)
            raise
        contacts = frozenset(row.id for row in work.rows)
        return _Round(len(work.rows), contacts, result, asyncio.create_task(_save(work, result)))

    async def _finish_round(self, round_: _Round) -> None:
        """Wait for a round's write, then act on it (outside the engine's thread: no round
        runs meanwhile)."""
        if not await round_.saving:
            log.info("another processor took some of this round's work first; reading again")
            return
        self.rounds += 1
        if round_.result.unknown:
            await self._load_versions(round_.result.unknown)
        if round_.result.outbox:
            self.on_output()

    async def follow(self, work: ClaimedRound) -> None:
        """Switch to the program last published in the store (a reload, here or on another
        daemon), which is not the one run now; the flow versions loaded so far stay loaded."""
        generation, text = await work.program()
        if text is None:
            return
        program = orjson.loads(text)
        engine = await asyncio.to_thread(self.runner.engine.successor, program)
        self.runner = Runner(engine, program, self.secret, self.public_url)
        self.generation = generation
        clear_template_cache()  # template files may have been edited with the scripts
        self.on_program(program)
        log.info("running the program of generation %s (reloaded)", generation)

    async def _load_versions(self, wanted: set[tuple[str, str]]) -> None:
        """Load the flow versions some enrollments are on from the store (their contacts
        run at the next round); one that is not kept fails its contacts from now on."""
        found = await self.store.flow_version_irs(wanted)
        for key in wanted:
            if key in found:
                self.runner.engine.add_version(orjson.loads(found[key]))
            else:
                log.error("flow %r version %s is not in the store", key[0], key[1][:12])
                self.runner.lost.add(key)

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds while there is work, each round's write overlapping the reading and running
        of the next one (of other contacts), then sleep until woken or a timer is due."""
        retrying = Retrying(log, "processing", first=0.25)
        writing: _Round | None = None  # the round whose write is under way
        admitting = None
        if self.store.inbox is not None:
            admitting = asyncio.create_task(self._admitting(stop))
            # what ingest took before a crash is admitted before the first round, so that
            # timers that came due meanwhile run after the events that precede them
            await self.caught_up.wait()
        try:
            while not stop.is_set():
                try:
                    n, writing = await self._overlapped(writing)
                    if not n:
                        wake = await self._look_ahead()
                    retrying.succeeded()
                except Exception as exc:
                    # The store is down, restarting, or cut a connection: the loop must
                    # outlive it.
                    await self._settle(writing)
                    writing = None
                    await retrying.failed(exc, stop)
                    continue
                if n:
                    # after a small round, a pause: the events arriving meanwhile make the
                    # next round larger, and ingest's commits get SQLite's write lock between
                    # rounds (single /v1/track requests: 5,082-5,631 a second against
                    # 4,469-4,798 without it, docs/performance.md, session 12)
                    await asyncio.sleep(0 if n >= self.batch // 4 else SMALL_ROUND_PAUSE)
                    continue
                await self._sleep(wake)
        finally:
            await self._settle(writing)
            if admitting is not None:
                self.admission.set()
                with contextlib.suppress(Exception):
                    await admitting

    async def _admitting(self, stop: asyncio.Event) -> None:
        """Admit what ingest appends to the inbox (`SqlStore.admit`) whenever woken, and
        every `IDLE_POLL` in case a wake-up was missed (a back end started again), waking
        the rounds after each admission. `caught_up` is set once the inbox has been admitted
        to its end, or when the loop ends (stopping) before that."""
        retrying = Retrying(log, "admitting events", first=0.25)
        try:
            while not stop.is_set():
                self.admission.clear()
                try:
                    while await self.store.admit():
                        self.wakeup.set()
                        if stop.is_set():
                            return
                    retrying.succeeded()
                except Exception as exc:
                    await retrying.failed(exc, stop)
                    continue
                self.caught_up.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.admission.wait(), IDLE_POLL)
        finally:
            self.caught_up.set()

    async def _overlapped(self, writing: _Round | None) -> tuple[int, _Round | None]:
        """Read and run the next round while `writing`'s write goes on, then wait for that
        write: the contacts run or written (0: nothing to do), and the round now being
        written."""
        busy = writing.contacts if writing is not None else frozenset()
        started = await self._start_round(busy)
        done = 0
        if writing is not None:
            try:
                await self._finish_round(writing)
            except BaseException:
                await self._settle(started)
                raise
            done = writing.size
        return (started.size if started is not None else done), started

    async def _settle(self, round_: _Round | None) -> None:
        """Let a round's write end and act on it, whatever its outcome (the loop is stopping,
        or failed: a write that failed was rolled back, and its work is read again)."""
        if round_ is not None:
            with contextlib.suppress(Exception):
                await self._finish_round(round_)

    async def _look_ahead(self) -> float | None:
        """With no work: drop expired `messageId`s now and then; the next wake-up due."""
        if self.clock() >= self._next_purge:
            self._next_purge = self.clock() + PURGE_EVERY
            await self.store.forget_seen(self.clock() - DEDUP_SECONDS)
        return await self.store.next_wake()

    async def _sleep(self, wake: float | None) -> None:
        """Until woken (new events), the next wake-up, or the next poll."""
        now = self.clock()
        poll = IDLE_POLL if self.store.sqlite else IDLE_POLL_SHARED
        if wake is None:
            delay = poll
        elif wake <= now:  # due, and claimed by another processor (PostgreSQL)
            delay = BUSY_ELSEWHERE
        else:
            delay = min(poll, wake - now)
        # (cleared after the wait, not before it: a wake-up that came during the round or
        # the look above ends the wait at once instead of being lost)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wakeup.wait(), delay)
        self.wakeup.clear()


def _ledger_order(effect: dict[str, Any]) -> tuple[float, int, float, int, int]:
    """simulate's order of effects (as `SqlStore.effects_in_order` reads them)."""
    return (effect["at"], effect["kind"], effect["k1"], effect["k2"], effect["sub"])


@attrs.frozen
class _Round:
    """A round that has run: its size, its contacts, what it decided, and its write (a task
    that answers whether the round was written: False when another processor's write came
    first and the work is to be read again)."""

    size: int
    contacts: frozenset[str]
    result: RoundResult
    saving: asyncio.Task[bool]


async def _save(work: ClaimedRound, result: RoundResult) -> bool:
    """Write a round and end its claim; False on a conflict (the work is read again)."""
    try:
        await work.save(result)
    except RoundConflict:
        return False
    finally:
        await work.__aexit__(None, None, None)
    return True


def _drop_partial(result: RoundResult, contact: str, event_ids: set[int]) -> None:
    """Forget what a contact that failed half-way added to the round."""
    result.effects[:] = [e for e in result.effects if e["contact"] != contact]
    result.outbox[:] = [o for o in result.outbox if o["contact"] != contact]
    result.positions[:] = [p for p in result.positions if p["contact"] != contact]
    result.contacts[:] = [c for c in result.contacts if c["id"] != contact]
    result.processed[:] = [i for i in result.processed if i not in event_ids]
