"""The engine: runs a compiled program (the IR dict) for one contact at one instant.

The core is synchronous: `on_event(contact, event)` and `on_time(contact, t)` mutate the
contact's state and return effects; `contact.wake` is then the next instant at which time
alone can change something (a wait deadline, a decay step, an event leaving a `within`
window). simulate drives it over an in-memory store; serve will run it inside a database
transaction. It never reads the wall clock. Order of work per instant: LANGUAGE.md
section 7 (profile, waiting enrollments, exit/goal clauses, triggers, run).
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any

import attrs

from leadlang.limits import LAST_INSTANT
from leadlang.runtime import monotone, policy
from leadlang.runtime.context import Context
from leadlang.runtime.effects import Effect, format_time, idempotency_key
from leadlang.runtime.reorder import cheap_first
from leadlang.runtime.state import Contact, Enrollment
from leadlang.runtime.values import compile_expr, seconds, to_datetime

MESSAGE_STATUS_EVENTS = {
    "message_delivered": "delivered",
    "message_opened": "opened",
    "message_clicked": "clicked",
    "message_bounced": "bounced",
}
_EVENT_KEYS: dict[str, str] = {}  # event name -> its dependency key, "e:NAME"
BLOCKED = "blocked"  # a false `when` trigger time alone cannot raise (see `_plan_for`)
# A chain of flows entering one another within one instant is followed to its end however
# long it is (first entries are not counted); one that never settles is stopped (see
# `_Chain`): when the contact's whole state repeats at a re-entry of a flow, or after this many
# re-entries in one instant (a chain that changes something at every turn, e.g. `score +1`
# with no `max`, may not repeat for a long time).
MAX_REENTRIES = 1_000
# Probing a condition that reads `now` (`_probe`) looks this far ahead at most (then looks
# again from there), and samples a leaf whose direction is not known at this step.
PROBE_AHEAD = 366 * 86400.0
PROBE_STEP = 3600.0
# ... for a day ahead, then looks again a day later, for this long after the contact's last
# tracked event at most (so that a year-1 contact in a log that ends in 9999 does not cost a
# look every day for 10,000 years)
PROBE_UNKNOWN_FOR = 400 * 86400.0
# The last second a datetime can hold: leaves are not probed past it (`now` beyond it has no
# value, which would read as false and hide a change before it).
LAST_PROBE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


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


class Cond:
    """A compiled expression and what can change its value."""

    __slots__ = (
        "atoms",
        "dirs",
        "fn",
        "free_now",
        "keys",
        "now",
        "score",
        "since",
        "src",
        "time_keeps",
        "windows",
    )

    def __init__(self, node: dict[str, Any], label: str, truth: bool = False) -> None:
        """`truth`: only the truth value is used (the engine may reorder conjunctions)."""
        self.src: str = node["src"]
        self.fn = compile_expr(cheap_first(self.src) if truth else self.src, label)
        deps = node["deps"]
        self.now: bool = deps["now"]
        self.score: bool = deps["score"]
        self.windows: list[tuple[str, float]] = [(w[0], float(w[1])) for w in deps["windows"]]
        self.since: list[tuple[str, float]] = [(w[0], float(w[1])) for w in deps.get("since", ())]
        keys = {f"t:{name}" for name in deps["traits"]} | {f"e:{name}" for name in deps["events"]}
        keys |= {key for key in ("score", "tags", "status") if deps[key]}
        self.keys = frozenset(keys)
        # Set by the engine (`_time_directions`): which way time alone can move the value.
        self.dirs: monotone.Dirs = monotone.ALWAYS
        self.free_now = True  # reads `now` other than via a scheduled `days_since` bound
        # the value time alone cannot change it from: True (it only rises), False (it only
        # falls), None (either way, or not known)
        self.time_keeps: bool | None = None
        # Leaves that change with `now` at instants nothing schedules (`now >= X`,
        # `days_since(E) * 24 >= 60`): their instants are found by probing (`_probe`).
        self.atoms: list[monotone.Atom] = []

    def affected(self, changed: set[str] | None) -> bool:
        return changed is None or self.now or not self.keys.isdisjoint(changed)


def _cond(node: dict[str, Any] | None, label: str) -> Cond | None:
    return None if node is None else Cond(node, label)


class Flow:
    def __init__(self, node: dict[str, Any], trigger_ids: list[int]) -> None:
        self.name: str = node["name"]
        self.version: str = node["version"]
        self.start: str | None = node["start"]
        self.reenter: dict[str, Any] = node["reenter"]
        self.on: list[tuple[str, Cond | None]] = []
        self.when: list[tuple[int, Cond]] = []
        for trig in node["triggers"]:
            if trig["kind"] == "on":
                self.on.append((trig["event"], _cond(trig["where"], f"<{self.name}:on>")))
            else:
                tid = len(trigger_ids)
                trigger_ids.append(tid)
                cond = Cond(trig["cond"], f"<{self.name}:when>", truth=True)
                self.when.append((tid, cond))
        self.exit_on: list[tuple[str, Cond | None]] = []
        self.exit_when: list[Cond] = []
        for ex in node["exits"]:
            if ex["kind"] == "on":
                self.exit_on.append((ex["event"], _cond(ex["where"], f"<{self.name}:exit>")))
            else:
                self.exit_when.append(Cond(ex["cond"], f"<{self.name}:exit>"))
        self.goals = [
            (g["event"], _cond(g["where"], f"<{self.name}:goal>"), g["within"])
            for g in node["goals"]
        ]
        self.states: dict[str, dict[str, Any]] = {}
        self.conds: dict[str, Cond] = {}  # "state-id/field" -> compiled expression
        for sid, state in node["states"].items():
            self.states[sid] = state
            for key in ("duration", "target", "where", "up_to", "cond", "within", "tag", "value"):
                if state.get(key) is not None:
                    self.conds[f"{sid}/{key}"] = Cond(state[key], f"<{self.name}:{sid}>")
            for i, case in enumerate(state.get("cases") or ()):
                self.conds[f"{sid}/case{i}"] = Cond(case["cond"], f"<{self.name}:{sid}>")
            for key, value in (state.get("with") or {}).items():
                self.conds[f"{sid}/with/{key}"] = Cond(value, f"<{self.name}:{sid}>")


class Engine:
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
                (rule["points"], _cond(rule["where"], f"<score:{rule['event']}>"))
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
        self._time_directions(program)
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
        segment_sources = program["segments"]

        def segment(name: str) -> tuple[str, dict[str, Any]] | None:
            fn = self.segments.get(name)
            if fn is None or name not in segment_sources:
                return None
            return segment_sources[name]["src"], fn.__globals__

        resolve = monotone.table_resolver(
            {"metric": program["metrics"], "segment": program["segments"]}
        )
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
        # Conditions that change with `now` where no instant is scheduled: the leaves to probe
        self.probing = False
        probed = [*self.when_conds]
        for flow in self.flows:
            probed.extend(flow.exit_when)
            probed.extend(c for key, c in flow.conds.items() if key.endswith("/cond"))
        for cond in probed:
            if not cond.now:
                continue
            atoms = monotone.time_atoms(cond.src, cond.fn.__globals__, segment, resolve)
            cond.atoms = [(cond.fn, None)] if atoms is None else atoms
            self.probing = self.probing or bool(cond.atoms)
        self.when_probed = [(tid, cond) for tid, cond, _ in self.when_triggers if cond.atoms]
        # A trigger that is just a segment (`when potential`) runs the segment's code: the
        # same value, without the trigger's and the segment cache's calls around it.
        for cond in self.when_conds:
            only = monotone.segment_only(cond.src)
            if only is not None and only in self.segments:
                cond.fn = self.segments[only]
        self._wake_plans: dict[tuple[bool | str | None, ...], _WakePlan] = {}
        self.on_triggers: dict[str, list[tuple[Flow, Cond | None]]] = {}
        for flow in self.flows:
            for ev, where in flow.on:
                self.on_triggers.setdefault(ev, []).append((flow, where))

    def _time_directions(self, program: dict[str, Any]) -> None:
        """Direction analysis (see `monotone`) of the conditions time-driven instants serve."""
        resolve = monotone.table_resolver(
            {"metric": program["metrics"], "segment": program["segments"]}
        )
        conds = [*self.when_conds]
        for flow in self.flows:
            conds.extend(flow.exit_when)
            conds.extend(c for key, c in flow.conds.items() if key.endswith("/cond"))
        for cond in conds:
            cond.dirs = (
                monotone.directions(cond.src, resolve)
                if cond.keys or cond.now
                else (monotone.CONST)
            )
            cond.free_now = cond.now and cond.dirs == monotone.ALWAYS
            if all(d is not None and d >= 0 for d in cond.dirs):
                cond.time_keeps = True
            elif all(d is not None and d <= 0 for d in cond.dirs):
                cond.time_keeps = False

    def _wake_plan(self, values: tuple[bool | str | None, ...]) -> _WakePlan:
        """What time-driven instants the `when` triggers need, given their current values.

        A trigger cannot fire at an instant that can only lower it when it is false (or only
        raise it when it is true), and evaluating it there would store the value it already
        has: such instants change nothing and are not scheduled for it. Instants of a kind
        the trigger can move either way, or towards a change, are kept.
        """
        plan = self._wake_plans.get(values)
        if plan is not None:
            return plan
        score = False
        windows: set[tuple[str, float]] = set()
        since: set[tuple[str, float]] = set()
        for (_, cond), value in zip(self.when_timed, values, strict=True):
            if value == BLOCKED or cond.time_keeps is False:
                # a falling trigger: false, time cannot raise it; true, its fall is seen
                # lazily, at its next input or time-driven step
                need = [False, False, False]
            else:
                need = [
                    d is None or (d == -1 and bool(value)) or (d == 1 and not value)
                    for d in cond.dirs
                ]
            if cond.score and need[monotone.SCORE]:
                score = True
            if need[monotone.WINDOW]:
                windows.update(cond.windows)
            if need[monotone.SINCE]:
                since.update(cond.since)
        decay = bool(self.decay_every)
        plan = _WakePlan(
            decay and score,
            tuple(sorted(windows)),
            tuple(sorted(since)),
        )
        self._wake_plans[values] = plan
        return plan

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
            channel = props.get("channel")
            table[channel if isinstance(channel, str) else None] = (t, contact.seq)
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
        # Waits that are due (simulate fires them before a same-instant event).
        enrolled = list(contact.enrollments.values()) if contact.enrollments else ()
        for enr in enrolled:
            if enr.deadline is not None and enr.deadline <= t:
                self._deadline(contact, enr, ctx, touched)
        if enrolled and event is not None and event.name is not None:
            for enr in enrolled:
                if enr.wait == "event":
                    state = self.flow_by_name[enr.flow].states[enr.state]  # type: ignore[index]
                    if state["event"] == event.name:
                        where = self.flow_by_name[enr.flow].conds.get(f"{enr.state}/where")
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
                self._recheck_waits(contact, ctx, changed, touched)
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
                if any(not e.ended and self.flow_by_name[e.flow].exit_when for e in ran):
                    # `exit when` holds or not at every pass (it is not an edge): one that
                    # holds for an enrollment that just ran (e.g. entered) removes it now,
                    # whether or not its steps changed the profile
                    self._exits(contact, ctx, None, None, step_changes, out)
                break
            # Steps changed the profile: conditions reading it are looked at again now.
            ctx.invalidate()
            changed, name, props = step_changes, None, None
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
        flow = self.flow_by_name[enr.flow]
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
            flow = self.flow_by_name[enr.flow]
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
        for flow in self.flows:
            enr = contact.enrollments.get(flow.name)
            if enr is None:
                continue
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
        flow = self.flow_by_name[enr.flow]
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
                secs = seconds(conds[f"{sid}/up_to"].fn(ctx, None)) or 0.0
                _wait(enr, "event", t + secs, None)
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

    # ------------------------------------------------------------------ timers

    def _wake(self, contact: Contact, t: float, ctx: Context, horizon: float) -> float | None:
        """The next instant at which time alone may change something for this contact: the
        first of the scheduled instants (`_scheduled_wake`) and, for conditions that read
        `now` freely, the instants they change at (`_probe`)."""
        wake = self._scheduled_wake(contact, t, ctx, horizon)
        return self._probe(contact, t, wake, horizon) if self.probing else wake

    def _probe(
        self, contact: Contact, t: float, wake: float | None, horizon: float
    ) -> float | None:
        """The first instant after `t` (and by `wake`, `horizon`) at which a probed leaf of a
        condition that matters now changes (LANGUAGE.md section 7: every condition whose value
        changes with time alone is re-evaluated at that exact instant)."""
        later = math.inf if wake is None else wake
        look = min(t + PROBE_AHEAD, LAST_PROBE)
        limit = min(later, horizon, look)
        best = math.inf
        probed = False
        values = contact.when_values
        for tid, cond in self.when_probed:
            keeps = cond.time_keeps
            # only falls: false stays false, a true one's fall is noticed lazily (`on_event`);
            # only rises: true stays true
            if keeps is False or (keeps is True and values.get(tid)):
                continue
            probed = True
            found = self._first_change(cond, contact, None, t, min(limit, best))
            if found < best:
                best = found
        for enr in contact.enrollments.values():
            flow = self.flow_by_name[enr.flow]
            conds = [c for c in flow.exit_when if c.atoms]
            if enr.wait == "check":
                check = flow.conds[f"{enr.state}/cond"]
                if check.atoms:
                    conds.append(check)
            for cond in conds:
                probed = True
                found = self._first_change(cond, contact, enr, t, min(limit, best))
                if found < best:
                    best = found
        if best <= limit:
            return best
        if probed and t < look < later and look < horizon:
            return look  # nothing changes that far ahead: look again from there
        return wake

    def _first_change(
        self, cond: Cond, contact: Contact, enr: Enrollment | None, t: float, hi: float
    ) -> float:
        """The first instant in (t, hi] at which one of the condition's probed leaves has a
        truth value other than at `t` (inf: none does). A leaf that time moves one way only
        is bisected over whole microseconds (the clock's resolution); one whose direction is
        not known is looked at every `PROBE_STEP` up to a day ahead (and again a day later,
        up to `PROBE_UNKNOWN_FOR` after the contact's last tracked event), and bisected where it
        changed between two looks."""
        best = math.inf
        for fn, direction in cond.atoms:
            before = self._leaf(fn, contact, enr, t)
            if direction == 0 or (direction == 1 and before) or (direction == -1 and not before):
                continue
            end = min(hi, best)
            if direction is not None:
                found = self._bisect(fn, contact, enr, before, t, end)
            else:
                found = math.inf
                step_end = min(end, t + 86400.0)
                lo = t
                while lo < step_end:
                    nxt = min(lo + PROBE_STEP, step_end)
                    if self._leaf(fn, contact, enr, nxt) != before:
                        found = self._bisect(fn, contact, enr, before, lo, nxt)
                        break
                    lo = nxt
                last = contact.last_activity
                if (
                    found == math.inf
                    and step_end < end
                    and last is not None
                    and step_end - last < PROBE_UNKNOWN_FOR
                ):
                    found = step_end  # look again from there
            if found < best:
                best = found
        return best

    def _bisect(
        self,
        fn: Any,
        contact: Contact,
        enr: Enrollment | None,
        before: bool,
        t: float,
        hi: float,
    ) -> float:
        """The first whole microsecond in (t, hi] at which the leaf is not `before`, given it
        changes at most once there (inf: it does not change by `hi`)."""
        a, b = math.floor(t * 1e6), math.floor(hi * 1e6)
        if b <= a or self._leaf(fn, contact, enr, b / 1e6) == before:
            return math.inf
        while b - a > 1:
            middle = (a + b) // 2
            if self._leaf(fn, contact, enr, middle / 1e6) == before:
                a = middle
            else:
                b = middle
        found = b / 1e6
        return found if found > t else math.nextafter(t, math.inf)

    def _leaf(self, fn: Any, contact: Contact, enr: Enrollment | None, t: float) -> bool:
        """A probed leaf's truth value at `t`, all else as it stands."""
        ctx = Context(self, contact, t)
        if enr is not None:
            ctx.enr = enr
            ctx.event = enr.event
        try:
            return bool(fn(ctx, None))
        except Exception:  # a leaf that cannot say reads as false, as its condition does
            return False

    def _scheduled_wake(
        self, contact: Contact, t: float, ctx: Context, horizon: float
    ) -> float | None:
        """The next scheduled instant at which time alone may change something.

        Candidates are the instants the conditions' inputs change at (deadlines, decay steps,
        window expiries, `days_since` bounds), as the semantics define. Those at which no
        condition can change (`_wake_plan`: a false `when` trigger time can only lower, a
        waiting `check` time can only lower, ...) are passed over: nothing would happen there.

        `horizon` is the caller's promise to come back with an input by then (simulate knows
        the contact's next event): when no candidate instant at all comes before it, which
        ones are needed does not matter, and None is returned without working that out.
        """
        if not contact.enrollments and not self.when_free_now:
            if horizon != math.inf and not self._any_instant_by(contact, t, horizon):
                return None
            plan, until = self._plan_for(contact, ctx)
            if plan.empty:
                return None if until == math.inf else until
            return self._next_instant(contact, t, until, plan.score, plan.windows, plan.since)
        best = math.inf  # the next instant that may change something
        full = self.when_free_now  # some condition reads `now` freely: every instant matters
        need_score = False
        need_windows: list[tuple[str, float]] = []
        need_since: list[tuple[str, float]] = []
        checks: list[Cond] = []
        if contact.enrollments:
            for enr in contact.enrollments.values():
                if enr.deadline is not None and enr.deadline < best:
                    best = enr.deadline
                flow = self.flow_by_name[enr.flow]
                for cond in flow.exit_when:
                    # `exit when` is checked (not as an edge) at every instant the contact is
                    # looked at, and may hold unacted since entry: keep every instant.
                    full = True
                    need_score = need_score or cond.score
                    need_windows.extend(cond.windows)
                    need_since.extend(cond.since)
                if enr.wait == "check":
                    cond = flow.conds[f"{enr.state}/cond"]
                    full = full or cond.free_now
                    checks.append(cond)
        if full:
            need_score = need_score or self.when_score
            need_windows.extend(self.when_windows)
            need_since.extend(self.when_since)
            for cond in checks:
                need_score = need_score or cond.score
                need_windows.extend(cond.windows)
                need_since.extend(cond.since)
        else:
            # A waiting condition is false now: only instants that may raise it matter.
            for cond in checks:
                up_score, up_window, up_since = (d != 0 and d != -1 for d in cond.dirs)
                need_score = need_score or (cond.score and up_score)
                if up_window:
                    need_windows.extend(cond.windows)
                if up_since:
                    need_since.extend(cond.since)
            # (no `when` candidate by the next deadline or input: the plan cannot matter)
            if self._any_instant_by(contact, t, min(best, horizon)):
                plan, until = self._plan_for(contact, ctx)
                best = min(best, until)
                need_score = need_score or plan.score
                need_windows.extend(plan.windows)
                need_since.extend(plan.since)
        return self._next_instant(contact, t, best, need_score, need_windows, need_since)

    def _any_instant_by(self, contact: Contact, t: float, horizon: float) -> bool:
        """Whether some `when` trigger's candidate instant (of any kind, needed or not) comes
        after `t` and by `horizon`."""
        every = self.decay_every
        last = contact.last_activity
        if (
            self.when_score
            and every
            and last is not None
            and contact.score > 0
            # the next decay step (whether score is left to lose then or not)
            and last + ((t - last) // every + 1) * every <= horizon
        ):
            return True
        history = contact.history
        for event, after in self.when_since:
            entry = history.get(event)
            if entry:
                instant = entry[0][-1] + after
                # (at `t` itself, the candidate is the moment just after: see `_next_instant`)
                if t < instant <= horizon or t == instant < horizon:
                    return True
        return _earliest_expiry(history, self.when_windows, t) <= horizon

    def _plan_for(self, contact: Contact, ctx: Context) -> tuple[_WakePlan, float]:
        """The wake-up plan for the contact's trigger values, and an instant to look again
        at for the triggers it leaves out until then.

        A false trigger one of whose falling conjuncts is false is marked blocked: time alone
        cannot raise it. A false trigger with conjuncts whose first instant of truth is known
        (`score <= 50` at a decay step, `days_since(E) >= 7` a week after the last E) cannot
        turn true before the latest of those instants: it is left out of the plan until then.
        """
        values = contact.when_values
        # (a trigger never evaluated reads None here, false in the plan)
        key: tuple[bool | str | None, ...] = tuple(map(values.get, self.when_timed_ids))
        plan = self._wake_plans.get(key)
        if plan is not None and plan.empty:
            # nothing needed even without the guards: they could not make anything quieter
            return plan, math.inf
        marked: list[bool | str | None] | None = None
        inf = until = math.inf
        t = ctx.t
        ctx.enr = None
        ctx.event = None
        for i, guards, bounds in self.when_checks:
            if key[i]:
                continue
            blocked = False
            if guards:
                for guard in guards:
                    try:
                        if not guard(ctx, None):
                            blocked = True
                            break
                    except Exception:  # a guard that cannot say blocks nothing
                        pass
            if not blocked and bounds:
                first = t
                for bound in bounds:
                    instant = self._first_true(contact, ctx, bound)
                    if instant > first:
                        first = instant
                        if first == inf:
                            break
                if first > t:
                    blocked = True
                    if first < until:
                        until = first
            if blocked:
                if marked is None:
                    marked = list(key)
                marked[i] = BLOCKED
        if marked is not None:
            key = tuple(marked)
        plan = self._wake_plans.get(key)
        if plan is None:
            plan = self._wake_plan(key)
        return plan, until

    def _first_true(self, contact: Contact, ctx: Context, bound: monotone.Bound) -> float:
        """The first instant at or after `t` at which `bound`'s conjunct holds if no input
        arrives before (inf: never by time alone)."""
        t = ctx.t
        if isinstance(bound, monotone.SinceAtLeast):
            entry = contact.history.get(bound.event)
            if not entry:
                return math.inf  # days_since is none: the comparison stays false
            instant = entry[0][-1] + bound.seconds
            if bound.strict:  # `> N` holds from just after N days
                instant = math.nextafter(instant, math.inf)
            return max(t, instant)
        limit, strict = bound.limit, bound.strict
        score = ctx.score()
        if score < limit or (not strict and score == limit):
            return t
        every, last = self.decay_every, contact.last_activity
        if every is None or last is None or self.decay_amount <= 0:
            return math.inf
        if limit < 0 or (strict and limit <= 0):
            return math.inf  # the score never goes below 0
        # the score after n decay steps counted from `last_activity`, exactly as `score_at`
        applied, base, amount = contact.applied_decay, contact.score, self.decay_amount
        if not self.decay_percent:
            guess = math.ceil((base - limit) / amount)
        elif amount >= 1:
            guess = 1
        elif limit <= 0:
            return math.inf  # compounding never reaches 0 (in any span simulated)
        else:
            guess = math.ceil(math.log(limit / base) / math.log(1 - amount))

        def holds(steps: int) -> bool:
            if self.decay_percent:
                value = float(base * (1 - amount) ** steps)
            else:
                value = max(0.0, base - steps * amount)
            return value < limit or (not strict and value == limit)

        steps = max(1, guess)
        while not holds(steps):
            steps += 1
        while steps > 1 and holds(steps - 1):
            steps -= 1
        return last + (steps + applied) * every

    def _next_instant(
        self,
        contact: Contact,
        t: float,
        best: float,
        need_score: bool,
        need_windows: Sequence[tuple[str, float]],
        need_since: Sequence[tuple[str, float]],
    ) -> float | None:
        """The earliest candidate instant after `t` (deadlines already in `best`)."""
        every = self.decay_every
        if need_score and every:
            last = contact.last_activity
            score = contact.score
            if last is not None and score > 0:
                taken = (t - last) // every
                steps = int(taken) - contact.applied_decay
                # (as `score_at`: is there score left to lose after the steps due by now?)
                if steps > 0:
                    if self.decay_percent:
                        score = float(score * (1 - self.decay_amount) ** steps)
                    else:
                        score = max(0.0, score - steps * self.decay_amount)
                if score > 0:
                    step = last + (taken + 1) * every
                    if step < best:
                        best = step
        history = contact.history
        if need_windows:
            best = min(best, _earliest_expiry(history, need_windows, t))
        for event, after in need_since:
            entry = history.get(event)
            if entry:
                instant = entry[0][-1] + after
                if instant == t:
                    # `days_since(E) > N` (or `<= N`) turns just after this instant: the next
                    # float is that moment (printed as this second)
                    instant = math.nextafter(instant, math.inf)
                if t < instant < best:
                    best = instant
        return None if best == math.inf else best


class _Chain:
    """The flows re-entered at one instant, in order (see `Engine._never_settles`)."""

    __slots__ = ("order", "seen", "stopped")

    def __init__(self) -> None:
        self.order: list[str] = []
        self.seen: dict[tuple[Any, ...], int] = {}  # (flow, state) -> index in `order`
        self.stopped = False


@attrs.frozen(slots=True)
class _WakePlan:
    """The time-driven instants `when` triggers need for one combination of their values."""

    score: bool
    windows: tuple[tuple[str, float], ...]
    since: tuple[tuple[str, float], ...]
    empty: bool = attrs.field(init=False)

    @empty.default
    def _empty(self) -> bool:
        return not (self.score or self.windows or self.since)


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


__all__ = ["Effect", "Engine", "Event", "split_arm", "to_datetime"]


def _earliest_expiry(
    history: dict[str, Any], windows: Iterable[tuple[str, float]], t: float
) -> float:
    """The next instant after `t` at which an event leaves one of the `within` windows."""
    earliest = math.inf
    for event, within in windows:
        entry = history.get(event)
        if entry:
            times = entry[0]
            i = bisect_right(times, t - within)
            if i < len(times) and times[i] + within < earliest:
                earliest = times[i] + within
    return earliest
