"""`leadlang diff --db`: replay a store's event history through the edited program, on
simulate's engine, and say per contact which effects would differ from the ledger.

Each contact's processed events (`pending` = 0) are rebuilt as the engine's `Event`s, in
(t, id) order, and run from a fresh state to `until` (now) with `simulate.run_contact`,
through the new version and through the old one. The effects are compared with the
contact's ledger as multisets of the lines `leadlang simulate` prints: the ledger's order
at one instant follows serve's processing rounds, and what matters is which effects happen
(each line carries its instant). The old version's replay tells the edit from the rest: the
ledger may hold effects of earlier versions, or of late events serve ran at a later
instant, and then the old replay differs from it too, and the report says so instead of
blaming the edit.

Memory holds one page of contacts (the store reads them so), and the report only the
contacts that differ (`max_contacts` of them in `diff_report`; the command streams them).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import click
import msgspec
import orjson

from leadlang.diff import diff_programs, format_text, step_order
from leadlang.runtime.effects import format_text as effect_text
from leadlang.runtime.effects import format_time, printable, public
from leadlang.runtime.engine import WAIT_AT_STEP, Engine, Event
from leadlang.runtime.log_types import apply_declared_types
from leadlang.runtime.simulate import run_contact
from leadlang.runtime.state import Contact
from leadlang.runtime.store.sql import SqlStore, StoreError, open_store

JSON = dict[str, Any]
BATCH = 200  # contacts replayed per call into a worker thread
_encode = msgspec.json.Encoder().encode  # as serve writes the ledger's bodies
_decode = msgspec.json.Decoder().decode


async def diff_report(
    old_program_ir: JSON,
    new_program_ir: JSON,
    store: SqlStore | None = None,
    *,
    now: float | None = None,
    max_contacts: int | None = 1000,
) -> JSON:
    """What going from `old_program_ir` to `new_program_ir` changes: the flows and steps
    (`leadlang.diff.diff_programs`) and, with a store, the replay of its history (under
    `"replay"`: a summary and the first `max_contacts` contacts that differ, None: all).
    The IRs are serve's (with `event_types` beside them, when declared). The replay runs in
    worker threads, so an event loop serving requests meanwhile is not held up."""
    report = diff_programs(old_program_ir, new_program_ir)
    if store is not None:
        contacts: list[JSON] = []

        def keep(entry: JSON) -> None:
            if max_contacts is None or len(contacts) < max_contacts:
                contacts.append(entry)

        until = time.time() if now is None else now
        summary = await replay(old_program_ir, new_program_ir, store, until, keep)
        summary["in_flight"] = in_flight(
            report, summary["in_flight"], old_program_ir, new_program_ir
        )
        report["replay"] = {**summary, "contacts": contacts}
    return report


async def replay(
    old_ir: JSON, new_ir: JSON, store: SqlStore, until: float, on_contact: Callable[[JSON], None]
) -> JSON:
    """Replay every contact of `store`; `on_contact` hears about each one that differs (in
    contact id order); returns the counts, and `in_flight` as {flow: {step id: contacts}}
    (`in_flight()` says what the edit does to them)."""
    replayer = await asyncio.to_thread(_Replayer, old_ir, new_ir, until)  # (compiles both)
    summary: JSON = {
        "until": format_time(until),
        "replayed_contacts": 0,
        "replayed_events": 0,
        "unprocessed_events": 0,
        "failed_events": 0,
        "differ": 0,
        "changed_by_edit": 0,
        "ledger_not_old": 0,
        "errors": 0,
        "in_flight": {},  # where the old version's replay leaves contacts: what an edit meets
    }
    batch: list[tuple[str, list[tuple[int, float, str, int]], list[str]]] = []

    async def flush() -> None:
        entries = await asyncio.to_thread(replayer.batch, batch, summary)
        batch.clear()
        for entry in entries:
            on_contact(entry)

    async for history in store.histories(BATCH):
        batch.append(history)
        if len(batch) >= BATCH:
            await flush()
    if batch:
        await flush()
    return summary


class _Replayer:
    def __init__(self, old_ir: JSON, new_ir: JSON, until: float) -> None:
        self.old = (Engine(old_ir), old_ir.get("event_types") or {})
        self.new = (Engine(new_ir), new_ir.get("event_types") or {})
        self.until = until

    def batch(
        self,
        histories: list[tuple[str, list[tuple[int, float, str, int]], list[str]]],
        summary: JSON,
    ) -> list[JSON]:
        out = []
        for contact, events, ledger in histories:
            entry = self.contact(contact, events, ledger, summary)
            if entry is not None:
                out.append(entry)
        return out

    def contact(
        self,
        contact: str,
        events: list[tuple[int, float, str, int]],
        ledger: list[str],
        summary: JSON,
    ) -> JSON | None:
        """The contact's entry of the report, None when its replay equals its ledger."""
        summary["replayed_contacts"] += 1
        rows = []
        for row in events:
            if row[3] == 0:
                rows.append(row)
            elif row[3] == 1:
                summary["unprocessed_events"] += 1
            else:
                summary["failed_events"] += 1
        summary["replayed_events"] += len(rows)
        kept = [_normal(body) for body in ledger]
        try:
            old = self.run(self.old, contact, rows, summary["in_flight"])
        except Exception as exc:  # the engine failed on this history: say so, go on
            return self.failed(contact, "old", exc, summary)
        try:
            new = self.run(self.new, contact, rows)
        except Exception as exc:
            return self.failed(contact, "new", exc, summary)
        ledger_only, replay_only = _differ(kept, new)
        edit = Counter(old) != Counter(new)
        old_ledger_only, old_replay_only = _differ(kept, old)
        drift = bool(old_ledger_only or old_replay_only)
        summary["changed_by_edit"] += edit
        summary["ledger_not_old"] += drift
        if not (ledger_only or replay_only):
            return None
        summary["differ"] += 1
        entry: JSON = {
            "contact": contact,
            "ledger_only": ledger_only,
            "replay_only": replay_only,
            "edit": edit,
            "old_replay_matches_ledger": not drift,
        }
        if drift:
            entry["old_replay"] = {"ledger_only": old_ledger_only, "replay_only": old_replay_only}
            if edit:
                old_only, new_only = _differ(old, new)
                entry["edit_only"] = {"old_only": old_only, "new_only": new_only}
        return entry

    def run(
        self, version: tuple[Engine, JSON], contact: str, rows: list[Any], where: JSON | None = None
    ) -> list[str]:
        """The effect lines of one contact's history run through one version (and, into
        `where`, the steps its active enrollments are at in the end: {flow: {step: n}})."""
        engine, types = version
        timeline = []
        for event_id, t, body, _ in rows:
            data = orjson.loads(body)
            timeline.append(
                Event(t, event_id, contact, data.get("n"), data.get("p") or {}, data.get("tr"))
            )
        apply_declared_types(timeline, types)
        steps: list[Any] = []
        state = Contact(contact)
        if timeline:
            run_contact(engine, state, 0, timeline, self.until, steps)
        if where is not None:
            for enrollment in state.enrollments.values():
                at = where.setdefault(enrollment.flow, {})
                step = enrollment.state or "(entering)"
                at[step] = at.get(step, 0) + 1
        return [_encode(public(effect)).decode() for step in steps for effect in step[4]]

    def failed(self, contact: str, which: str, exc: Exception, summary: JSON) -> JSON:
        summary["errors"] += 1
        return {
            "contact": contact,
            "error": f"the {which} version's replay failed: {type(exc).__name__}: {exc}",
        }


def _step_kinds(ir: JSON) -> dict[str, dict[str, str]]:
    return {
        flow["name"]: {sid: state["kind"] for sid, state in flow["states"].items()}
        for flow in ir["flows"]
    }


def in_flight(report: JSON, where: JSON, old_ir: JSON, new_ir: JSON) -> list[JSON]:
    """What the edit means for the contacts inside a changed flow now, step by step, as each
    flow's `edits` policy in the new version says: `keep` (they finish on the old version),
    `migrate` (they move to the new version at the step of the same id, or keep when it is
    gone, or is now a step of another kind, where their wait cannot go on). Contacts in a
    removed flow finish on its last version."""
    policies = {flow["name"]: flow.get("edits", "keep") for flow in new_ir["flows"]}
    old_kinds, new_kinds = _step_kinds(old_ir), _step_kinds(new_ir)
    out = []
    for flow in report["flows"]:
        name, status = flow["flow"], flow["status"]
        if status in ("added", "unchanged") or name not in where:
            continue
        changed = {step["id"]: step["new"] for step in flow["steps"]["changed"]}
        removed = {step["id"] for step in flow["steps"]["removed"]}
        policy = policies.get(name)
        for step, count in sorted(where[name].items(), key=lambda item: step_order(item[0])):
            if status == "removed":
                outcome = "the flow is removed: they finish on its last version"
            elif policy == "keep":
                outcome = "they finish on the old version (edits keep)"
            elif step in removed:
                outcome = "their step is gone: they finish on the old version (edits migrate)"
            elif WAIT_AT_STEP.get(old_kinds[name].get(step, "")) != WAIT_AT_STEP.get(
                new_kinds[name].get(step, "")
            ):
                outcome = "their step is now of another kind: they finish on the old version"
                outcome += " (edits migrate)"
            elif step in changed:
                outcome = f"they move to the new version at this step, now `{changed[step]}`"
                outcome += " (edits migrate)"
            else:
                outcome = "they move to the new version at this same step (edits migrate)"
            entry = {"flow": name, "step": step, "contacts": count, "edits": policy}
            out.append({**entry, "outcome": outcome})
    return out


def _normal(body: str) -> str:
    return _encode(_decode(body)).decode()


def _differ(before: list[str], after: list[str]) -> tuple[list[str], list[str]]:
    """(lines only in `before`, lines only in `after`), as multisets, each in its order."""
    surplus = Counter(before)
    surplus.subtract(after)
    gone = _take(before, surplus)
    surplus = Counter(after)
    surplus.subtract(before)
    return gone, _take(after, surplus)


def _take(lines: list[str], surplus: Counter[str]) -> list[str]:
    out = []
    for line in lines:
        if surplus[line] > 0:
            surplus[line] -= 1
            out.append(line)
    return out


# ---------------------------------------------------------------------- text


def replay_summary_text(summary: JSON) -> str:
    s = summary
    skipped = []
    if s["unprocessed_events"]:
        skipped.append(f"{s['unprocessed_events']} not yet processed")
    if s["failed_events"]:
        skipped.append(f"{s['failed_events']} the engine failed on")
    left = f"; left out: {', '.join(skipped)}" if skipped else ""
    lines = [
        f"replayed {_count(s['replayed_events'], 'event')}"
        f" of {_count(s['replayed_contacts'], 'contact')}"
        f" to {s['until']}{left}:",
        f"  the edit changes the effects of {_count(s['changed_by_edit'], 'contact')};"
        f" the replay differs from the ledger for {_count(s['differ'], 'contact')}",
    ]
    if s["ledger_not_old"]:
        lines.append(
            f"  the ledger of {_count(s['ledger_not_old'], 'contact')} differs from the old"
            " version's replay too: effects of earlier versions or of late events, not this edit's"
        )
    if s["errors"]:
        lines.append(f"  {_count(s['errors'], 'contact')} could not be replayed")
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


REPLAY_HEADING = (
    "effects on the store's history that differ from its ledger"
    " (-: only in the ledger, +: only in the new version's replay):"
)


def contact_text(entry: JSON) -> str:
    contact = printable(entry["contact"])  # (escaped, as in the effect lines below it)
    if "error" in entry:
        return f"contact {contact}: {entry['error']}"
    if entry["edit"] and entry["old_replay_matches_ledger"]:
        head = f"contact {contact}: the edit changes its effects"
    elif entry["edit"]:
        head = (
            f"contact {contact}: the edit changes its effects, and its ledger differs from the"
            " old version's replay too (effects of earlier versions or late events), so not"
            " every line is the edit's"
        )
    else:
        head = (
            f"contact {contact}: differs from the ledger, but the old version's replay differs"
            " the same way (effects of earlier versions or late events): not this edit"
        )
    lines = [head]
    lines += [f"  - {_line(body)}" for body in entry["ledger_only"]]
    lines += [f"  + {_line(body)}" for body in entry["replay_only"]]
    edit_only = entry.get("edit_only")
    if edit_only:
        lines.append("  the edit alone (old version's replay -> new version's):")
        lines += [f"    - {_line(body)}" for body in edit_only["old_only"]]
        lines += [f"    + {_line(body)}" for body in edit_only["new_only"]]
    return "\n".join(lines)


def _line(body: str) -> str:
    return effect_text(orjson.loads(body))


# ---------------------------------------------------------------------- the command


def run_diff(old_path: str, new_path: str, fmt: str, store_url: str | None) -> int:
    """`leadlang diff`'s exit code: 0 the programs are the same, 1 they differ, 2 a script is
    broken or the store cannot be read (what the replay finds is output, not the code)."""
    from leadlang.interpreter.compile import compile_program

    programs = [_checked(path) for path in (old_path, new_path)]
    if any(program is None for program in programs):
        return 2
    irs = []
    for program in programs:
        assert program is not None
        program_ir = compile_program(program)
        # (as serve keeps them: the declared property types, applied to stored events)
        program_ir["event_types"] = {n: dict(p) for n, p in program.event_params.items()}
        irs.append(program_ir)
    try:
        return asyncio.run(_diff(irs[0], irs[1], fmt, store_url))
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2


async def _diff(old_ir: JSON, new_ir: JSON, fmt: str, store_url: str | None) -> int:
    store = await open_store(store_url, create=False) if store_url is not None else None
    try:
        if fmt == "json":
            report = await diff_report(old_ir, new_ir, store, max_contacts=None)
            sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 1 if report["changed"] else 0
        report = diff_programs(old_ir, new_ir)
        click.echo(format_text(report))
        if store is None:
            return 1 if report["changed"] else 0
        click.echo()
        click.echo(REPLAY_HEADING)

        def show(entry: JSON) -> None:
            click.echo(contact_text(entry))

        summary = await replay(old_ir, new_ir, store, time.time(), show)
        click.echo(replay_summary_text(summary))
        waiting = in_flight(report, summary["in_flight"], old_ir, new_ir)
        if waiting:
            click.echo(
                "contacts inside the changed flows now (where the old version's replay leaves them):"
            )
        for entry in waiting:
            click.echo(
                f"  {entry['flow']} {entry['step']}: {_count(entry['contacts'], 'contact')};"
                f" {entry['outcome']}"
            )
        return 1 if report["changed"] else 0
    finally:
        if store is not None:
            await store.close()


def _checked(path: str) -> Any:
    """The checked program at `path`, or None after printing why it cannot be had."""
    from leadlang.interpreter.check import check_paths
    from leadlang.render import render

    result = check_paths([path])
    if result.usage_error:
        click.echo(f"error: {result.usage_error}", err=True)
        return None
    if any(d.is_error for d in result.diagnostics):
        output = render(result.diagnostics, result.sources, "full")
        click.echo(output, err=True, nl=not output.endswith("\n"))
        return None
    if result.program is None:
        click.echo(f"error: `{path}` holds several programs (one folder each): name one", err=True)
        return None
    return result.program
