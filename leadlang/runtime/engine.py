"""The engine: runs a compiled program (the IR dict) for one contact at one instant.

The core is synchronous: `on_event(contact, event)` and `on_time(contact, t)` mutate the
contact's state and return effects; `contact.wake` is then the next instant at which time
alone can change something (a wait deadline, a decay step, an event leaving a `within`
window). simulate drives it over an in-memory store; serve will run it inside a database
transaction. It never reads the wall clock. Order of work per instant: LANGUAGE.md
section 7 (profile, waiting enrollments, exit/goal clauses, triggers, run).

This module runs instants and steps; `wakeup.py` (a base class of `Engine`) plans the next
wake-up, and `compiled.py` holds the compiled conditions and flows.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any

import attrs

from leadlang.limits import LAST_INSTANT
from leadlang.runtime import monotone, policy
from leadlang.runtime.compiled import Cond, Flow, optional_cond
from leadlang.runtime.context import Context
from leadlang.runtime.effects import Effect, format_time, idempotency_key
from leadlang.runtime.reorder import cheap_first
from leadlang.runtime.state import Contact, Enrollment
from leadlang.runtime.values import compile_expr, seconds, to_datetime
from leadlang.runtime.wakeup import WakeupPlanner

MESSAGE_STATUS_EVENTS = {
    "message_delivered": "delivered",
    "message_opened": "opened",
    "message_clicked": "clicked",
    "message_bounced": "bounced",
}
_EVENT_KEYS: dict[str, str] = {}  # event name -> its dependency key, "e:NAME"
# A chain of flows entering one another within one instant is followed to its end however
# long it is (first entries are not counted); one that never settles is stopped (see
# `_Chain`): when the contact's whole state repeats at a re-entry of a flow, or after this many
# re-entries in one instant (a chain that changes something at every turn, e.g. `score +1`
# with no `max`, may not repeat for a long time).
MAX_REENTRIES = 1_000
# The wait an enrollment at rest on a step of each kind is in (`edits migrate` moves it only
# to a step where the same wait goes on).
WAIT_AT_STEP = {
    "wait": "time",
    "wait_until": "time",
    "wait_for": "event",
    "check": "check",
    "send": "quiet",
}


class UnknownVersion(Exception):
    """An enrollment is on a version of its flow this engine has not loaded: serve loads it
    from the store (`Engine.add_version`) and runs the contact again."""

    def __init__(self, flow: str, version: str) -> None:
        super().__init__(f"flow {flow!r} version {version[:12]} is not loaded")
        self.flow = flow
        self.version = version


@attrs.define(slots=True)
class Event:
    """One input: a `track` (name set) or an `identify` (traits set)."""

    t: float
    order: int  # input order, the tie-breaker between equal timestamps
    contact: str
    name: str | None
    props: dict[str, Any]
    traits: dict[str, Any] | None = None
    # serve: a late event's own timestamp, earlier than `t` (the instant its contact had
    # been processed to, at which it runs); the contact's history keeps this one
    happened: float | None = None


class Engine(WakeupPlanner):
    def __init__(self, program: dict[str, Any]) -> None:
        self.program = program
        settings = program["settings"]
        self.settings = settings
        score = program["score"]
        self.score_max: float | None = score["max"]
        decay = score["decay"]
        self.decay_every: float | None = float(decay["every"]) if decay else None
        self.decay_amount: float = float(decay["amount"]) if decay else 0.0
        self.decay_percent: bool = bool(decay and decay["percent"])
        self.rules: dict[str, list[tuple[float, Cond | None]]] = {}
        for rule in score["rules"]:
            self.rules.setdefault(rule["event"], []).append(
                (rule["points"], optional_cond(rule["where"], f"<score:{rule['event']}>"))
            )
        self.metrics = {
            n: compile_expr(e["src"], f"<metric {n}>") for n, e in program["metrics"].items()
        }
        self.segments = {
            n: compile_expr(cheap_first(e["src"]), f"<segment {n}>")
            for n, e in program["segments"].items()
        }
        self.messages: dict[str, Any] = program["messages"]
        trigger_ids: list[int] = []
        self.flows = [Flow(node, trigger_ids) for node in program["flows"]]
        self.flow_by_name = {flow.name: flow for flow in self.flows}
        # Every loaded version of every flow (the program's own, and older ones that
        # enrollments started on: `add_version`), and the IR each was built from.
        self.versions: dict[tuple[str, str], Flow] = {(f.name, f.version): f for f in self.flows}
        self.version_nodes: dict[tuple[str, str], dict[str, Any]] = {
            (node["name"], node["version"]): node for node in program["flows"]
        }
        # the flows whose exit clauses are looked at, in order: the program's (source order),
        # then those no longer in it of which versions are loaded (`retired`)
        self.exit_order: list[str] = [f.name for f in self.flows]
        self.history_events = self._history_events(program)
        self.when_conds = [c for flow in self.flows for _, c in flow.when]
        self.when_score = bool(self.decay_every) and any(c.score for c in self.when_conds)
        self.when_windows = sorted({w for c in self.when_conds for w in c.windows})
        self.when_since = sorted({w for c in self.when_conds for w in c.since})
        self.policy = policy.DeliveryPolicy(settings)
        self.time_keys = {"score"} | {
            "e:" + ev for flow in self.flows for c in flow.conds.values() for ev, _ in c.windows
        }
        self.time_keys |= {"e:" + ev for c in self.when_conds for ev, _ in c.windows}
        self.time_keys |= {
            "e:" + ev for flow in self.flows for c in flow.exit_when for ev, _ in c.windows
        }
        # `when` triggers flattened, in flow order: (trigger id, condition, flow)
        self.when_triggers = [(tid, cond, flow) for flow in self.flows for tid, cond in flow.when]
        # each trigger's name, by which a contact's last value of it is stored: its flow and
        # its condition (a reload that adds, removes or reorders flows renumbers the triggers)
        self.trigger_names: list[str] = []
        for _, cond, flow in self.when_triggers:
            name = f"{flow.name}: {cond.src}"
            while name in self.trigger_names:
                name += " (again)"
            self.trigger_names.append(name)
        self.trigger_ids = {name: tid for tid, name in enumerate(self.trigger_names)}
        segment_sources = program["segments"]

        def segment(name: str) -> tuple[str, dict[str, Any]] | None:
            fn = self.segments.get(name)
            if fn is None or name not in segment_sources:
                return None
            return segment_sources[name]["src"], fn.__globals__

        resolve = monotone.table_resolver(
            {"metric": program["metrics"], "segment": program["segments"]}
        )
        self._segment_code = segment
        self._resolve = resolve
        timed_conds = [*self.when_conds, *_timed_conds(self.flows)]
        self._analyse_time(timed_conds)
        # Some `when` trigger changes with `now` at every instant: every instant is kept.
        self.when_free_now = any(c.free_now for c in self.when_conds)
        # `when` triggers time can move, with their ids (see `_wake`)
        self.when_timed = [
            (tid, cond) for tid, cond, _ in self.when_triggers if cond.dirs != monotone.CONST
        ]
        self.when_timed_ids = [tid for tid, _ in self.when_timed]
        # `when` triggers time alone can only lower: their fall is noticed lazily (`on_event`)
        self.when_falling = [
            (tid, cond) for tid, cond in self.when_timed if cond.time_keeps is False
        ]
        # per timed trigger: the conjuncts that time can only lower (see `_plan_for`)
        when_guards = [
            monotone.falling_guards(cond.src, cond.fn.__globals__, segment, resolve)
            for _, cond in self.when_timed
        ]
        # per timed trigger: conjuncts whose first instant of truth is computable
        when_bounds = [
            monotone.rising_bounds(cond.src, segment, resolve) for _, cond in self.when_timed
        ]
        # (index, guards, bounds) of the timed triggers that have either (see `_plan_for`)
        self.when_checks = [
            (i, guards, bounds)
            for i, (guards, bounds) in enumerate(zip(when_guards, when_bounds, strict=True))
            if guards or bounds
        ]
        self.probing = False
        self._probe_leaves(timed_conds)
        self.when_probed = [(tid, cond) for tid, cond, _ in self.when_triggers if cond.atoms]
        # A trigger that is just a segment (`when potential`) runs the segment's code: the
        # same value, without the trigger's and the segment cache's calls around it.
        for cond in self.when_conds:
            only = monotone.segment_only(cond.src)
            if only is not None and only in self.segments:
                cond.fn = self.segments[only]
        self._wake_plans = {}  # (typed in `WakeupPlanner`)
        self.migrating = any(flow.edits == "migrate" for flow in self.flows)
        self.on_triggers: dict[str, list[tuple[Flow, Cond | None]]] = {}
        for flow in self.flows:
            for ev, where in flow.on:
                self.on_triggers.setdefault(ev, []).append((flow, where))

    def _analyse_time(self, conds: list[Cond]) -> None:
        """Direction analysis (see `monotone`) of the conditions time-driven instants serve."""
        for cond in conds:
            cond.dirs = (
                monotone.directions(cond.src, self._resolve)
                if cond.keys or cond.now
                else (monotone.CONST)
            )
            cond.free_now = cond.now and cond.dirs == monotone.ALWAYS
            if all(d is not None and d >= 0 for d in cond.dirs):
                cond.time_keeps = True
            elif all(d is not None and d <= 0 for d in cond.dirs):
                cond.time_keeps = False

    def _probe_leaves(self, conds: list[Cond]) -> None:
        """The leaves of conditions reading `now` that change at instants nothing schedules
        (`now >= X`, `days_since(E) * 24 >= 60`): their instants are found by probing."""
        for cond in conds:
            if cond.now:
                atoms = monotone.time_atoms(
                    cond.src, cond.fn.__globals__, self._segment_code, self._resolve
                )
                cond.atoms = [(cond.fn, None)] if atoms is None else atoms
                self.probing = self.probing or bool(cond.atoms)

    # ------------------------------------------------------------------ flow versions

    def add_version(self, node: dict[str, Any]) -> None:
        """Load a version of a flow other than the program's (serve keeps each version's IR
        in its store): the enrollments that started on it finish on it. Its `when` triggers
        never fire (only the program's own flows enroll contacts)."""
        key = (node["name"], node["version"])
        if key in self.versions:
            return
        flow = Flow(node, [])
        timed = _timed_conds([flow])
        self._analyse_time(timed)
        self._probe_leaves(timed)
        self.versions[key] = flow
        self.version_nodes[key] = node
        if flow.name not in self.exit_order:
            self.exit_order.append(flow.name)
        self.history_events = self.history_events | self._history_events(node)

    @property
    def retired(self) -> list[str]:
        """The flows no longer in the program of which versions are loaded."""
        return self.exit_order[len(self.flows) :]

    def adopt_versions(self, other: Engine) -> None:
        """Load every flow version `other` (the engine before a reload) had loaded."""
        for node in other.version_nodes.values():
            self.add_version(node)

    def successor(self, program: dict[str, Any]) -> Engine:
        """The engine of `program` (a reload's), with every flow version this one had
        loaded, so that the enrollments on them go on."""
        engine = Engine(program)
        engine.adopt_versions(self)
        return engine

    def flow_of(self, enr: Enrollment) -> Flow:
        """The version of its flow an enrollment runs on: the one it started on (LANGUAGE.md
        section 5.1, `edits keep`), unless it was moved to the program's (`_migrate`)."""
        flow = self.flow_by_name.get(enr.flow)
        if flow is not None and flow.version == enr.version:
            return flow
        found = self.versions.get((enr.flow, enr.version))
        if found is None:
            raise UnknownVersion(enr.flow, enr.version)
        return found

    def _migrate(self, contact: Contact) -> bool:
        """`edits migrate`: an enrollment waiting on an older version of a flow that says so
        moves to the program's version when it has a step of the same id where the same kind
        of wait goes on (a `wait` for a time wait, `wait for` for an event, `check` for a
        check, the `send` deferred by quiet hours); otherwise it stays where it is. Its wait's
        deadline stands; what comes after the step is the new version's. Whether one moved
        at a `check`: it now waits for the new version's condition, never judged yet."""
        moved_check = False
        for enr in contact.enrollments.values():
            flow = self.flow_by_name.get(enr.flow)
            if flow is None or flow.version == enr.version or flow.edits != "migrate":
                continue
            state = flow.states.get(enr.state) if enr.state is not None else None
            if state is None or WAIT_AT_STEP.get(state["kind"]) != enr.wait:
                continue
            enr.version = flow.version
            if enr.wait == "time":
                enr.resume = state["next"]
            moved_check = moved_check or enr.wait == "check"
        return moved_check

    @staticmethod
    def _history_events(program: dict[str, Any]) -> frozenset[str]:
        found: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if "deps" in node and "src" in node:
                    found.update(node["deps"]["events"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(program)
        return frozenset(found)

    # ------------------------------------------------------------------ score

    def score_at(self, contact: Contact, t: float) -> float:
        every = self.decay_every
        if every is None or contact.last_activity is None or contact.score <= 0:
            return contact.score
        steps = int((t - contact.last_activity) // every) - contact.applied_decay
        if steps <= 0:
            return contact.score
        if self.decay_percent:
            return float(contact.score * (1 - self.decay_amount) ** steps)
        return max(0.0, contact.score - steps * self.decay_amount)

    def _clamp(self, score: float) -> float:
        """Into [0, max] (-0.0 and NaN give 0.0); `_apply` does the same inline."""
        if not score > 0.0:
            return 0.0
        if self.score_max is not None and score > self.score_max:
            return self.score_max
        return score

    # ------------------------------------------------------------------ entry points

    def on_event(self, contact: Contact, event: Event, horizon: float = math.inf) -> list[Effect]:
        """Apply an input; `horizon`: see `_wake`."""
        contact.seq += 1
        ctx = Context(self, contact, event.t)
        out: list[Effect] = []
        if self.when_falling and contact.when_values:
            self._settle_falling(contact, ctx)
        changed = self._apply(contact, event, ctx)
        ctx.invalidate()
        self._instant(contact, ctx, event, changed, out, horizon)
        return out

    def _settle_falling(self, contact: Contact, ctx: Context) -> None:
        """Record the value, just before an input, of true `when` triggers time alone can
        only lower. No instant is scheduled for their fall (it would change nothing but the
        stored value); time cannot raise them again, so they fell in between exactly when
        they are false now, before the input is applied. The input's rising edge is then
        judged against that value, as if the fall had been seen at its instant."""
        values = contact.when_values
        for tid, cond in self.when_falling:
            if values.get(tid):
                ctx.enr = None
                ctx.event = None
                if not cond.fn(ctx, None):
                    values[tid] = False
        ctx.invalidate()

    def on_time(self, contact: Contact, t: float, horizon: float = math.inf) -> list[Effect]:
        """Run a time-driven instant; `horizon`: see `_wake`."""
        contact.seq += 1
        ctx = Context(self, contact, t)
        out: list[Effect] = []
        # Time alone changes only the decayed score, windows and `now`.
        self._instant(contact, ctx, None, self.time_keys, out, horizon)
        return out

    # ------------------------------------------------------------------ one instant

    def _apply(self, contact: Contact, event: Event, ctx: Context) -> set[str]:
        """Apply an input to the profile; returns the dependency keys it changed."""
        changed: set[str] = set()
        if event.traits:
            for key, value in event.traits.items():
                if value is None:
                    contact.traits.pop(key, None)
                else:
                    contact.traits[key] = value
                changed.add("t:" + key)
        name = event.name
        if name is None:
            return changed
        t = event.t
        event_key = _EVENT_KEYS.get(name)
        if event_key is None:
            event_key = _EVENT_KEYS[name] = "e:" + name
        changed.add(event_key)
        props = event.props
        score = self.score_at(contact, t)
        rules = self.rules.get(name)
        if rules:
            points = 0.0
            for value, where in rules:
                if where is None or _where(where, ctx, props):
                    points += value
            if points:
                changed.add("score")
            score += points  # then clamped, as `_clamp` (inline: once per event)
            if not score > 0.0:
                score = 0.0
            elif self.score_max is not None and score > self.score_max:
                score = self.score_max
        contact.score = score
        contact.last_activity = t
        contact.applied_decay = 0
        if name in self.history_events:
            entry = contact.history.get(name)
            if entry is None:
                entry = contact.history[name] = ([], [])
            happened = event.happened
            if happened is None:
                # Inputs arrive in time order, so appending keeps the lists sorted.
                entry[0].append(t)
                entry[1].append(props)
            else:  # a late event takes its place by its own timestamp
                at = bisect_right(entry[0], happened)
                entry[0].insert(at, happened)
                entry[1].insert(at, props)
        if name == "unsubscribed" or name == "subscribed":
            table = contact.unsubscribed if name == "unsubscribed" else contact.subscribed
            table[_consent_channel(props.get("channel"))] = (t, contact.seq)
        status = MESSAGE_STATUS_EVENTS.get(name)
        if status is not None:
            contact.msg_events.append(
                (t, contact.seq, status, props.get("message"), props.get("message_id"))
            )
            changed.add("status")
        return changed

    def _instant(
        self,
        contact: Contact,
        ctx: Context,
        event: Event | None,
        changed: set[str] | None,
        out: list[Effect],
        horizon: float,
    ) -> None:
        t = ctx.t
        timed = event is None  # a time-driven instant: only time moved, so far
        touched: list[Enrollment] = []
        # a check moved to a new version's condition is judged at once (whatever it reads,
        # as a check is when a flow comes to it): the first round judges every check
        recheck = (
            None if self.migrating and contact.enrollments and self._migrate(contact) else changed
        )
        # Waits that are due (simulate fires them before a same-instant event).
        enrolled = list(contact.enrollments.values()) if contact.enrollments else ()
        for enr in enrolled:
            if enr.deadline is not None and enr.deadline <= t:
                self._deadline(contact, enr, ctx, touched)
        if enrolled and event is not None and event.name is not None:
            for enr in enrolled:
                if enr.wait == "event":
                    flow = self.flow_of(enr)
                    state = flow.states[enr.state]  # type: ignore[index]
                    if state["event"] == event.name:
                        where = flow.conds.get(f"{enr.state}/where")
                        self._bind(ctx, enr)
                        if where is None or _where_bound(where, ctx, event.props):
                            enr.event = event.props
                            _resume(enr, state["next"])
                            touched.append(enr)
        props = event.props if event is not None else None
        name = event.name if event is not None else None
        # Rounds go on while steps change the profile: every chain is followed to its end
        # (one that never settles is stopped where it re-enters a flow, `_never_settles`).
        while True:
            if contact.enrollments:
                self._recheck_waits(contact, ctx, recheck, touched)
                self._exits(contact, ctx, name, props, changed, out)
            self._triggers(contact, ctx, name, props, changed, touched, out, timed)
            timed = False  # later rounds: steps changed the profile
            if not touched:
                break
            step_changes: set[str] = set()
            ran = touched
            for enr in touched:
                if not enr.ended and enr.wait is None:
                    self._run(contact, enr, ctx, out, touched, step_changes)
            touched = []
            if not step_changes:
                if any(not e.ended and self.flow_of(e).exit_when for e in ran):
                    # `exit when` holds or not at every pass (it is not an edge): one that
                    # holds for an enrollment that just ran (e.g. entered) removes it now,
                    # whether or not its steps changed the profile
                    self._exits(contact, ctx, None, None, step_changes, out)
                break
            # Steps changed the profile: conditions reading it are looked at again now.
            ctx.invalidate()
            changed, name, props = step_changes, None, None
            recheck = changed
        if self.probing:
            wake = self._wake(contact, t, ctx, horizon)
        else:  # (the common case, one call fewer on the hot path)
            wake = self._scheduled_wake(contact, t, ctx, horizon)
        # (an instant past the end of time never comes: nothing is scheduled for it)
        contact.wake = wake if wake is None or wake <= LAST_INSTANT else None

    def _bind(self, ctx: Context, enr: Enrollment) -> None:
        ctx.enr = enr
        ctx.event = enr.event

    def _deadline(
        self, contact: Contact, enr: Enrollment, ctx: Context, touched: list[Enrollment]
    ) -> None:
        flow = self.flow_of(enr)
        state = flow.states[enr.state]  # type: ignore[index]
        kind = enr.wait
        enr.deadline = None
        enr.wait = None
        if kind == "time":
            enr.state = enr.resume
        elif kind == "event":
            enr.state = state["on_timeout"]  # None: no else steps, the flow is done
        elif kind == "check":
            self._bind(ctx, enr)
            holds = bool(flow.conds[f"{state['id']}/cond"].fn(ctx, None))
            enr.state = state["next"] if holds else state["on_else"]
        # "quiet": the send state runs again, now outside the quiet window
        touched.append(enr)

    def _recheck_waits(
        self, contact: Contact, ctx: Context, changed: set[str] | None, touched: list[Enrollment]
    ) -> None:
        if not contact.enrollments:
            return
        for enr in list(contact.enrollments.values()):
            if enr.wait != "check":
                continue
            flow = self.flow_of(enr)
            cond = flow.conds[f"{enr.state}/cond"]
            if not cond.affected(changed) and not cond.windows and not cond.score:
                continue
            self._bind(ctx, enr)
            if cond.fn(ctx, None):
                _resume(enr, flow.states[enr.state]["next"])  # type: ignore[index]
                touched.append(enr)

    def _exits(
        self,
        contact: Contact,
        ctx: Context,
        name: str | None,
        props: dict[str, Any] | None,
        changed: set[str] | None,
        out: list[Effect],
    ) -> None:
        if not contact.enrollments:
            return
        enrollments = contact.enrollments
        for flow_name in self.exit_order:
            enr = enrollments.get(flow_name)
            if enr is None:
                continue
            flow = self.flow_of(enr)
            self._bind(ctx, enr)
            reason = None
            if name is not None:
                for ev, where in flow.exit_on:
                    if ev == name and (where is None or _where_bound(where, ctx, props)):
                        reason = "removed"
                        break
            if reason is None:
                for cond in flow.exit_when:
                    if cond.fn(ctx, None):
                        reason = "removed"
                        break
            if reason is None and name is not None:
                for ev, where, within in flow.goals:
                    if ev != name or (within is not None and ctx.t - enr.entered_at > within):
                        continue
                    if where is None or _where_bound(where, ctx, props):
                        out.append(self._effect(ctx.t, contact, "goal", flow=flow.name))
                        reason = "goal"
                        break
            if reason is not None:
                self._end(contact, enr, ctx.t, reason, out)

    def _triggers(
        self,
        contact: Contact,
        ctx: Context,
        name: str | None,
        props: dict[str, Any] | None,
        changed: set[str] | None,
        touched: list[Enrollment],
        out: list[Effect],
        timed: bool = False,
    ) -> None:
        """`timed`: only time moved since the triggers were last evaluated, so a trigger
        holding the value time alone cannot change it from keeps it (no evaluation)."""
        ctx.enr = None
        fire: list[Flow] = []
        if name is not None and name in self.on_triggers:
            for flow, where in self.on_triggers[name]:
                if flow not in fire and (where is None or _where(where, ctx, props)):
                    fire.append(flow)
        values = contact.when_values
        ctx.event = props
        for tid, cond, flow in self.when_triggers:
            before = values.get(tid)
            if (
                before is not None
                and changed is not None
                and not cond.now
                and cond.keys.isdisjoint(changed)
            ):
                continue  # nothing it reads changed
            if timed and before is not None and before is cond.time_keeps:
                continue  # e.g. true, and time can only raise it
            if cond.fn(ctx, None):
                values[tid] = True
                if not before and flow not in fire:
                    fire.append(flow)
            else:
                values[tid] = False
        if not fire:
            return
        for flow in self.flows:  # enroll in flow (source) order
            if flow in fire:
                enr = self._enroll(contact, flow, ctx, props, out)
                if enr is not None:
                    touched.append(enr)

    def _enroll(
        self,
        contact: Contact,
        flow: Flow,
        ctx: Context,
        event: dict[str, Any] | None,
        out: list[Effect],
    ) -> Enrollment | None:
        if flow.name in contact.enrollments:
            return None
        t = ctx.t
        count, last = contact.entries.get(flow.name, (0, 0.0))
        mode = flow.reenter["mode"]
        if count and (mode == "never" or (mode == "after" and t - last < flow.reenter["after"])):
            return None
        if count and last == t and self._never_settles(contact, flow, ctx, out):
            return None
        enr = Enrollment(flow.name, flow.version, count + 1, t)
        enr.state = flow.start
        enr.event = event
        contact.entries[flow.name] = (count + 1, t)
        contact.enrollments[flow.name] = enr
        out.append(self._effect(t, contact, "enter", flow=flow.name))
        return enr

    def _never_settles(self, contact: Contact, flow: Flow, ctx: Context, out: list[Effect]) -> bool:
        """Whether entering `flow` again at this instant is refused: the chain of flows that
        re-enters it never settles (LANGUAGE.md section 7: a bounded, reported stop).

        A re-entry at the same instant is where a cycle shows: if the contact's whole state
        (tags, traits, score, enrollments and where they stand, trigger values, sends, which
        flows were entered now) is the same as at an earlier re-entry of the same flow, what
        follows is the same again, forever. The first such repeat (or the `MAX_REENTRIES`th
        re-entry) gives a `stop` effect naming the cycle; from then on no flow is entered at
        this instant, so the enrollments already running finish their steps and it ends.
        """
        chain = ctx.chain
        if chain is None:
            chain = ctx.chain = _Chain()
        if chain.stopped:
            return True
        state = (flow.name, self._fingerprint(contact, ctx.t))
        first = chain.seen.get(state)
        chain.order.append(flow.name)
        if first is None and len(chain.order) <= MAX_REENTRIES:
            chain.seen[state] = len(chain.order) - 1
            return False
        if first is None:  # too long: name the turn since the flow's previous re-entry
            previous = [i for i, name in enumerate(chain.order[:-1]) if name == flow.name]
            first = previous[-1] if previous else len(chain.order) - 1
        chain.stopped = True
        cycle = chain.order[first:] if first < len(chain.order) - 1 else [flow.name] * 2
        out.append(
            self._effect(
                ctx.t, contact, "stop", flow=flow.name, reason="never_settles", cycle=cycle
            )
        )
        return True

    @staticmethod
    def _fingerprint(contact: Contact, t: float) -> tuple[Any, ...]:
        """Everything about the contact the rest of an instant's work can read (not what
        grows without mattering: enrollment numbers, the effects made so far)."""
        return (
            tuple(contact.tags),
            repr(sorted(contact.traits.items())),
            contact.score,
            contact.applied_decay,
            tuple(
                (name, e.state, e.wait, e.deadline, e.resume, id(e.event), e.last_sent is None)
                for name, e in contact.enrollments.items()
            ),
            tuple(sorted(contact.when_values.items())),
            tuple((channel, len(times)) for channel, times in sorted(contact.sends.items())),
            frozenset(name for name, (_, last) in contact.entries.items() if last == t),
        )

    def _end(
        self, contact: Contact, enr: Enrollment, t: float, reason: str, out: list[Effect]
    ) -> None:
        enr.ended = True
        enr.wait = None
        enr.deadline = None
        contact.enrollments.pop(enr.flow, None)
        out.append(self._effect(t, contact, "exit", flow=enr.flow, reason=reason))

    def _effect(self, t: float, contact: Contact, action: str, **fields: Any) -> Effect:
        return {"at": format_time(t), "contact": contact.id, "action": action, **fields}

    # ------------------------------------------------------------------ running steps

    def _run(
        self,
        contact: Contact,
        enr: Enrollment,
        ctx: Context,
        out: list[Effect],
        touched: list[Enrollment],
        changes: set[str],
    ) -> None:
        flow = self.flow_of(enr)
        conds = flow.conds
        t = ctx.t
        while not enr.ended:
            sid = enr.state
            if sid is None:
                self._end(contact, enr, t, "done", out)
                return
            self._bind(ctx, enr)
            state = flow.states[sid]
            kind = state["kind"]
            nxt = state["next"]
            if kind == "send":
                if not self._send(contact, enr, flow, state, ctx, out):
                    return  # deferred by quiet hours
                enr.state = nxt
            elif kind == "wait":
                secs = seconds(conds[f"{sid}/duration"].fn(ctx, None))
                if not secs or secs <= 0:
                    enr.state = nxt
                    continue
                _wait(enr, "time", t + secs, nxt)
                return
            elif kind == "wait_until":
                target = conds[f"{sid}/target"].fn(ctx, None)
                at = self.policy.until_instant(contact, target, t)
                if at is None or at <= t:
                    enr.state = nxt
                    continue
                _wait(enr, "time", at, nxt)
                return
            elif kind == "wait_for":
                secs = seconds(conds[f"{sid}/up_to"].fn(ctx, None))
                # none, zero or negative: it times out now (not at an instant already passed)
                _wait(enr, "event", t + secs if secs is not None and secs > 0 else t, None)
                return
            elif kind == "check":
                if conds[f"{sid}/cond"].fn(ctx, None):
                    enr.state = nxt
                    continue
                within = conds.get(f"{sid}/within")
                secs = seconds(within.fn(ctx, None)) if within is not None else None
                if secs and secs > 0:
                    _wait(enr, "check", t + secs, None)
                    return
                enr.state = state["on_else"]
            elif kind == "branch":
                target = state["otherwise"]
                for i, case in enumerate(state["cases"]):
                    if conds[f"{sid}/case{i}"].fn(ctx, None):
                        target = case["target"]
                        break
                enr.state = target
            elif kind == "split":
                arm = split_arm(contact.id, flow.name, state["name"], state["arms"])
                out.append(
                    self._effect(
                        t, contact, "split", flow=flow.name, split=state["name"], arm=arm["name"]
                    )
                )
                enr.state = arm["target"]
            elif kind in ("tag", "untag"):
                value = conds[f"{sid}/tag"].fn(ctx, None)
                if value is not None:
                    tag = str(value)
                    if kind == "tag":
                        contact.tags[tag] = None
                    else:
                        contact.tags.pop(tag, None)
                    changes.add("tags")
                    out.append(self._effect(t, contact, kind, flow=flow.name, tag=tag))
                enr.state = nxt
            elif kind == "set":
                value = conds[f"{sid}/value"].fn(ctx, None)
                trait = state["trait"]
                if value is None:
                    contact.traits.pop(trait, None)
                else:
                    contact.traits[trait] = _jsonable(value)
                changes.add("t:" + trait)
                enr.state = nxt
            elif kind == "score":
                self._adjust_score(contact, t, float(state["points"]))
                changes.add("score")
                enr.state = nxt
            elif kind == "enroll":
                target_flow = self.flow_by_name.get(state["flow"])
                if target_flow is not None:
                    new = self._enroll(contact, target_flow, ctx, enr.event, out)
                    if new is not None:
                        touched.append(new)
                enr.state = nxt
            else:  # exit
                self._end(contact, enr, t, "exit", out)
                return
            if changes:
                ctx.invalidate()

    def _adjust_score(self, contact: Contact, t: float, points: float) -> None:
        """`score ±N`: take the decay due so far, then add; not activity."""
        current = self.score_at(contact, t)
        if self.decay_every is not None and contact.last_activity is not None:
            contact.applied_decay = int((t - contact.last_activity) // self.decay_every)
        contact.score = self._clamp(current + points)

    def _send(
        self,
        contact: Contact,
        enr: Enrollment,
        flow: Flow,
        state: dict[str, Any],
        ctx: Context,
        out: list[Effect],
    ) -> bool:
        t = ctx.t
        channel, message, sid = state["channel"], state["message"], state["id"]
        decision = self.policy.decide(contact, channel, t)
        if decision.defer_until is not None:
            _wait(enr, "quiet", decision.defer_until, None)
            return False
        effect = {
            "at": format_time(t),
            "contact": contact.id,
            "action": "send" if decision.skip is None else "skip",
            "flow": flow.name,
            "step": sid,
            "channel": channel,
            "message": message,
        }
        if decision.skip is not None:
            effect["reason"] = decision.skip
            out.append(effect)
            return True
        key = idempotency_key(contact.id, flow.name, enr.version, enr.number, sid)
        effect["key"] = key  # internal: simulate prints only the fields of LANGUAGE.md s. 9
        effect["event"] = enr.event  # internal: serve renders the message with it
        if state.get("with"):
            effect["data"] = {
                k: _jsonable(flow.conds[f"{sid}/with/{k}"].fn(ctx, None)) for k in state["with"]
            }
        out.append(effect)
        contact.sends.setdefault(channel, []).append(t)
        record = (message, key, (t, contact.seq))
        enr.last_sent = record
        enr.sent[message] = record
        return True


class _Chain:
    """The flows re-entered at one instant, in order (see `Engine._never_settles`)."""

    __slots__ = ("order", "seen", "stopped")

    def __init__(self) -> None:
        self.order: list[str] = []
        self.seen: dict[tuple[Any, ...], int] = {}  # (flow, state) -> index in `order`
        self.stopped = False


def _timed_conds(flows: list[Flow]) -> list[Cond]:
    """The flows' conditions time-driven instants re-evaluate: `exit when` and `check`."""
    conds: list[Cond] = []
    for flow in flows:
        conds.extend(flow.exit_when)
        conds.extend(c for key, c in flow.conds.items() if key.endswith("/cond"))
    return conds


def split_arm(contact: str, flow: str, split: str, arms: list[dict[str, Any]]) -> dict[str, Any]:
    """LANGUAGE.md section 5.3, normative. The cumulative percentages and `u` are compared
    exactly (the percents as the decimals written, `u` as n / 2**64), so no float rounding
    moves a contact across an arm's edge."""
    digest = hashlib.sha256(f"{contact}/{flow}/{split}".encode()).digest()
    n = int.from_bytes(digest[:8], "big")
    for arm, edge in zip(arms, _edges(tuple(arm["percent"] for arm in arms)), strict=True):
        if n < edge:  # cumulative > n / 2**64
            return arm
    return arms[-1]


@lru_cache(maxsize=256)
def _edges(percents: tuple[float, ...]) -> tuple[int, ...]:
    """For each arm, the least integer n with n / 2**64 not below its cumulative share:
    `cumulative > n / 2**64` exactly when `n < edge`. The shares are the decimals written
    (the IR keeps each as the float of that decimal, whose shortest repr is the decimal)."""
    edges = []
    cumulative = Fraction(0)
    for percent in percents:
        cumulative += Fraction(Decimal(repr(percent)))
        scaled = cumulative * 2**64
        edges.append(-(-scaled.numerator // scaled.denominator))
    return tuple(edges)


def _where(cond: Cond, ctx: Context, props: dict[str, Any] | None) -> bool:
    """An event's `where`: the event is bound as `event` while it is evaluated."""
    saved = ctx.event
    ctx.event = props
    try:
        return bool(cond.fn(ctx, props if props is not None else {}))
    finally:
        ctx.event = saved


def _where_bound(cond: Cond, ctx: Context, props: dict[str, Any] | None) -> bool:
    """The `where` of an event an enrollment waits for or exits on (`wait for`, `exit on`,
    `goal`): its names are the arriving event's properties, while `event` stays the event the
    enrollment has bound (LANGUAGE.md section 4: `event.NAME` is always the bound event's), so
    `wait for order_completed where order_id == event.order_id` matches the order the flow
    was entered for."""
    return bool(cond.fn(ctx, props if props is not None else {}))


def _resume(enr: Enrollment, state: str | None) -> None:
    enr.wait = None
    enr.deadline = None
    enr.state = state


def _wait(enr: Enrollment, kind: str, deadline: float, resume: str | None) -> None:
    enr.wait = kind
    # a deadline past the end of time never comes (a `wait for` then waits for its event)
    enr.deadline = deadline if deadline <= LAST_INSTANT else None
    enr.resume = resume


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)


def _consent_channel(channel: Any) -> str | None:
    """The channel an `unsubscribed`/`subscribed` event is about, as messages name channels
    (`"Email"`, `" SMS "` are email and sms); None, every channel, for a missing, blank or
    non-text one: an unsubscribe the engine cannot place must not be lost."""
    if not isinstance(channel, str):
        return None
    return channel.strip().lower() or None


__all__ = ["Cond", "Effect", "Engine", "Event", "split_arm", "to_datetime"]
