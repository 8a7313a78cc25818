"""The wake-up planner: the next instant at which time alone can change something.

After each instant the engine asks for `contact.wake`: the first of the scheduled instants
(wait deadlines, decay steps, events leaving `within` windows, `days_since` bounds) at
which some condition can change, leaving out the ones at which none can (`_wake_plan`,
`_plan_for`), and, for conditions that read `now` freely, the exact instant each changes
at (`_probe`: bisection where time moves a leaf one way). `WakeupPlanner` is a base class
of `Engine`; it reads the engine's compiled conditions and never changes the contact.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from leadlang.runtime import monotone
from leadlang.runtime.compiled import Cond, Flow
from leadlang.runtime.context import Context
from leadlang.runtime.state import Contact, Enrollment

BLOCKED = "blocked"  # a false `when` trigger time alone cannot raise (see `_plan_for`)
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


class WakeupPlanner:
    """The engine's wake-up planning (see the module's first lines); `Engine` sets these."""

    metrics: dict[str, Any]
    segments: dict[str, Any]
    score_at: Callable[[Contact, float], float]
    flow_by_name: dict[str, Flow]
    flow_of: Callable[[Enrollment], Flow]
    probing: bool
    decay_every: float | None
    decay_amount: float
    decay_percent: bool
    when_free_now: bool
    when_score: bool
    when_windows: list[tuple[str, float]]
    when_since: list[tuple[str, float]]
    when_timed: list[tuple[int, Cond]]
    when_timed_ids: list[int]
    when_probed: list[tuple[int, Cond]]
    when_checks: list[tuple[int, Any, Any]]
    _wake_plans: dict[tuple[bool | str | None, ...], _WakePlan]

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
            flow = self.flow_of(enr)
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
                flow = self.flow_of(enr)
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
