"""What an edit changes, read from the machine IR of the two versions (`leadlang diff`).

Flows are matched by name, and their steps by state id: the step's path (`s1`,
`s3.then.0`), which is where an enrollment waits and where `edits migrate` moves it. So a
step "changed" when the state of that id does something else now, even if the script only
inserted a step before it (the later steps of its block take new ids): that is exactly
what contacts waiting there would meet. Each step, trigger and condition is shown in the
language's own words (the `text` the compiler keeps beside each expression); two
expressions are the same when their compiled code is (the text alone can hide a changed
segment or trait type that the code inlines).

`diff_programs` returns plain JSON data; `format_text` renders it for people.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from leadlang import ir
from leadlang.graph import _duration, state_label

JSON = dict[str, Any]

# State fields naming another state: None there is the end of the flow.
_TARGETS = frozenset({"next", "target", "otherwise", "on_else", "on_timeout", "start"})
END = "(end)"


def diff_programs(old: JSON, new: JSON) -> JSON:
    """The report of what changes from program IR `old` to `new` (see docs/diff.md)."""
    old_flows = {flow["name"]: flow for flow in old["flows"]}
    new_flows = {flow["name"]: flow for flow in new["flows"]}
    names = list(new_flows) + [name for name in old_flows if name not in new_flows]
    flows = [_flow(old_flows.get(name), new_flows.get(name)) for name in names]
    removed = {f["flow"]: old_flows[f["flow"]] for f in flows if f["status"] == "removed"}
    for entry in flows:  # a one-line flow is named after its line: moving it renames it
        if entry["status"] == "added":
            twin = _same_body(new_flows[entry["flow"]], removed)
            if twin is not None:
                entry["same_as"] = twin
    program = _program(old, new)
    return {
        "version": {"old": old.get("version"), "new": new.get("version")},
        "changed": bool(program) or any(f["status"] != "unchanged" for f in flows),
        "flows": flows,
        "program": program,
    }


# ---------------------------------------------------------------------- flows


def _flow(old: JSON | None, new: JSON | None) -> JSON:
    name = (new or old or {})["name"]
    entry: JSON = {
        "flow": name,
        "status": "changed",
        "version": {
            "old": old["version"] if old else None,
            "new": new["version"] if new else None,
        },
    }
    if old is None or new is None:
        entry["status"] = "added" if old is None else "removed"
        flow = new or old or {}
        entry["header"] = _header(None, flow) if old is None else _header(flow, None)
        ids = sorted(flow["states"], key=lambda sid: step_order(sid, flow["states"]))
        states = [_step(sid, flow["states"][sid]) for sid in ids]
        entry["steps"] = {
            "added": states if old is None else [],
            "removed": states if new is None else [],
            "changed": [],
        }
        return entry
    entry["header"] = _header(old, new)
    both = {**old["states"], **new["states"]}
    ids = sorted(both, key=lambda sid: step_order(sid, both))
    added = [_step(sid, new["states"][sid]) for sid in ids if sid not in old["states"]]
    removed = [_step(sid, old["states"][sid]) for sid in ids if sid not in new["states"]]
    changed = []
    for sid in ids:
        before, after = old["states"].get(sid), new["states"].get(sid)
        if before is not None and after is not None and ir.canonical(before) != ir.canonical(after):
            changed.append(_changed_step(sid, before, after))
    entry["steps"] = {"added": added, "removed": removed, "changed": changed}
    if old["version"] == new["version"] and not entry["header"] and not (added or removed):
        entry["status"] = "unchanged"
    return entry


def _step(sid: str, state: JSON) -> JSON:
    return {"id": sid, "step": step_text(state)}


def step_text(state: JSON) -> str:
    """A step in the language's words: the graph's labels, with the conditions of an `if`
    and the arms of a `split` (a diagram puts those on its edges)."""
    if state["kind"] == "branch":
        cases = [_expr_text(case["cond"]) for case in state["cases"]]
        return "if " + "; elif ".join(cases)
    if state["kind"] == "split":
        arms = ", ".join(
            f"{arm['name']} {_shown('percent', arm['percent'])}" for arm in state["arms"]
        )
        return f"{state_label(state)}: {arms}"
    return state_label(state)


def _changed_step(sid: str, old: JSON, new: JSON) -> JSON:
    entry: JSON = {"id": sid, "old": step_text(old), "new": step_text(new)}
    if old["kind"] != new["kind"]:
        changes = [{"field": "step", "old": entry["old"], "new": entry["new"]}]
        if old["next"] != new["next"]:
            changes.append({"field": "next", "old": _shown("next", old["next"])})
            changes[-1]["new"] = _shown("next", new["next"])
    else:
        changes = _field_changes(_fields(old), _fields(new))
    entry["changes"] = changes
    return entry


def _fields(state: JSON) -> dict[str, tuple[Any, Any]]:
    """A state flattened to `field path -> (shown value, what decides equality)`:
    `cases.1.cond`, `arms.b.percent`, `with.discount`; expressions by their text, compared
    by their code; missing optional fields (`within`, `with`) left out."""
    out: dict[str, tuple[Any, Any]] = {}

    def walk(path: str, key: str, value: Any) -> None:
        if isinstance(value, dict) and "src" in value:
            out[path] = (value.get("text") or "(expression)", value["src"])
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{path}.{k}", k, v)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                label = item.get("name", i) if isinstance(item, dict) else i
                walk(f"{path}.{label}", key, item)
        elif value is not None or key in _TARGETS:
            shown = _shown(key, value)
            out[path] = (shown, shown)

    for key, value in state.items():
        if key not in ("id", "kind"):
            walk(key, key, value)
    return out


def _shown(key: str, value: Any) -> Any:
    if key in _TARGETS:
        return END if value is None else value
    if key == "percent" and isinstance(value, int | float):
        return f"{value * 100:g}%"
    return value


def _field_changes(old: dict[str, tuple[Any, Any]], new: dict[str, tuple[Any, Any]]) -> list[JSON]:
    changes = []
    for path in list(old) + [p for p in new if p not in old]:
        before, after = old.get(path), new.get(path)
        if before is not None and after is not None and before[1] == after[1]:
            continue
        change: JSON = {
            "field": path,
            "old": before[0] if before else None,
            "new": after[0] if after else None,
        }
        if before and after and before[0] == after[0]:
            change["note"] = "same words, compiled differently (what it reads changed)"
        changes.append(change)
    return changes


def _event_text(clause: JSON) -> str:
    where = clause.get("where")
    suffix = f" where {where.get('text') or '(condition)'}" if where else ""
    return f"{clause['event']}{suffix}"


def _expr_text(expr: JSON | None) -> str:
    return (expr or {}).get("text") or "(condition)"


def _clauses(flow: JSON | None) -> dict[str, list[tuple[str, bytes]]]:
    """A flow's header clauses in words, by kind, each with its canonical IR."""
    if flow is None:
        return {}
    out: dict[str, list[tuple[str, bytes]]] = {"triggers": [], "exits": [], "goals": []}
    for kind, word in (("triggers", ""), ("exits", "exit ")):
        for clause in flow[kind]:
            text = (
                f"{word}on {_event_text(clause)}"
                if clause["kind"] == "on"
                else f"{word}when {_expr_text(clause['cond'])}"
            )
            out[kind].append((text, ir.canonical(clause)))
    for goal in flow["goals"]:
        within = f" within {_duration(goal['within'])}" if goal.get("within") else ""
        out["goals"].append((f"goal {_event_text(goal)}{within}", ir.canonical(goal)))
    return out


def _reenter(flow: JSON) -> str:
    mode = flow["reenter"]["mode"]
    return f"after {_duration(flow['reenter']['after'] or 0)}" if mode == "after" else str(mode)


def _header(old: JSON | None, new: JSON | None) -> list[JSON]:
    """Header changes: for triggers, exits and goals the clauses removed and added; for
    `reenter`, `edits` and the start state, old -> new."""
    changes: list[JSON] = []
    before, after = _clauses(old), _clauses(new)
    for kind in ("triggers", "exits", "goals"):
        old_items, new_items = before.get(kind, []), after.get(kind, [])
        gone = Counter(key for _, key in old_items) - Counter(key for _, key in new_items)
        came = Counter(key for _, key in new_items) - Counter(key for _, key in old_items)
        removed = _pick(old_items, gone)
        added = _pick(new_items, came)
        if removed or added:
            changes.append({"clause": kind, "removed": removed, "added": added})
    for clause, read in (
        ("reenter", _reenter),
        ("edits", lambda f: f.get("edits", "keep")),
        ("start", lambda f: f["start"] or END),
    ):
        was = read(old) if old else None
        now = read(new) if new else None
        if was != now and not (clause == "start" and (old is None or new is None)):
            changes.append({"clause": clause, "old": was, "new": now})
    return changes


def _pick(items: list[tuple[str, bytes]], wanted: Counter[bytes]) -> list[str]:
    left = Counter(wanted)
    out = []
    for text, key in items:
        if left[key] > 0:
            left[key] -= 1
            out.append(text)
    return out


def _same_body(flow: JSON, candidates: dict[str, JSON]) -> str | None:
    def body(f: JSON) -> bytes:
        return ir.canonical({k: v for k, v in f.items() if k not in ("name", "version")})

    mine = body(flow)
    return next((name for name, other in candidates.items() if body(other) == mine), None)


# ---------------------------------------------------------------------- the rest


def _program(old: JSON, new: JSON) -> list[JSON]:
    """What changed outside the flows that the flows use: messages, segments, metrics,
    trait defaults, scoring, settings."""
    out: list[JSON] = []
    out += _named("message", old["messages"], new["messages"], _message_changes)
    out += _named("segment", old["segments"], new["segments"], _expr_changes)
    out += _named("metric", old["metrics"], new["metrics"], _expr_changes)
    out += _named("trait", old["traits"], new["traits"], _default_changes)
    if ir.canonical(old["score"]) != ir.canonical(new["score"]):
        parts = [
            k
            for k in ("rules", "decay", "max")
            if ir.canonical(old["score"][k]) != ir.canonical(new["score"][k])
        ]
        out.append({"kind": "score", "name": None, "status": "changed", "fields": parts})
    if ir.canonical(old["settings"]) != ir.canonical(new["settings"]):
        parts = [
            k
            for k in ("timezone", "quiet_hours", "caps")
            if ir.canonical(old["settings"].get(k)) != ir.canonical(new["settings"].get(k))
        ]
        out.append({"kind": "settings", "name": None, "status": "changed", "fields": parts})
    return out


def _named(kind: str, old: JSON, new: JSON, fields: Any) -> list[JSON]:
    out = []
    for name in list(new) + [n for n in old if n not in new]:
        if name not in old or name not in new:
            status = "added" if name not in old else "removed"
            out.append({"kind": kind, "name": name, "status": status, "fields": []})
            continue
        changed = fields(old[name], new[name])
        if changed:
            out.append({"kind": kind, "name": name, "status": "changed", "fields": changed})
    return out


def _default_changes(old: Any, new: Any) -> list[str]:
    return [] if ir.canonical(old) == ir.canonical(new) else ["default"]


def _expr_changes(old: JSON, new: JSON) -> list[str]:
    return ["expression"] if old["src"] != new["src"] else []


def _message_changes(old: JSON, new: JSON) -> list[str]:
    """The fields of a message that render differently: a template from a file compared by
    its content (the two versions usually live in different folders)."""
    changed = [] if old["channel"] == new["channel"] else ["channel"]
    keys = list(new["fields"]) + [k for k in old["fields"] if k not in new["fields"]]
    for key in keys:
        if _field_content(old, key) != _field_content(new, key):
            changed.append(key)
    if old.get("secrets") != new.get("secrets"):
        changed.append("secrets")
    return changed


def _field_content(message: JSON, key: str) -> Any:
    field = message["fields"].get(key)
    if field is None:
        return None
    if field["file"]:
        try:
            return (Path(message["dir"]) / field["value"]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return ("file", field["value"])
    return ir.canonical(field["value"])


# ---------------------------------------------------------------------- text


def short(version: str | None) -> str:
    return "-" if version is None else version[:12]  # as serve prints it


def format_text(report: JSON) -> str:
    """The report as a marketer reads it."""
    lines: list[str] = []
    unchanged = []
    for flow in report["flows"]:
        status, version = flow["status"], flow["version"]
        if status == "unchanged":
            unchanged.append(flow["flow"])
            continue
        if status == "added":
            twin = f"; same steps as removed flow `{flow['same_as']}`" if "same_as" in flow else ""
            lines.append(f"flow {flow['flow']}: added (version {short(version['new'])}){twin}")
        elif status == "removed":
            lines.append(f"flow {flow['flow']}: removed (version {short(version['old'])})")
        else:
            lines.append(
                f"flow {flow['flow']}: changed (version {short(version['old'])} ->"
                f" {short(version['new'])})"
            )
        for change in flow["header"]:
            lines.extend(_header_lines(change, status))
        steps = flow["steps"]
        if status in ("added", "removed"):
            sign = "+" if status == "added" else "-"
            for step in steps["added"] or steps["removed"]:
                lines.append(f"  {sign} {step['id']:<12} {step['step']}")
            continue
        rows = [("+", step, "  (new step)") for step in steps["added"]]
        rows += [("-", step, "  (step removed)") for step in steps["removed"]]
        rows += [("~", step, "") for step in steps["changed"]]
        # (each list is in written order; merged, split arms of removed steps go by name)
        for sign, step, note in sorted(rows, key=lambda row: step_order(row[1]["id"])):
            if sign != "~":
                lines.append(f"  {sign} {step['id']:<12} {step['step']}{note}")
                continue
            now = step["new"] if step["old"] == step["new"] else f"{step['old']}  ->  {step['new']}"
            lines.append(f"  ~ {step['id']:<12} {now}")
            for change in step["changes"]:
                if change["field"] != "step":
                    lines.append("      " + _change_text(change))
    for item in report["program"]:
        what = item["kind"] + (f" {item['name']}" if item["name"] else "")
        fields = f" ({', '.join(item['fields'])})" if item["fields"] else ""
        lines.append(f"{what}: {item['status']}{fields}")
    if unchanged:
        lines.append("unchanged: " + ", ".join(f"flow {name}" for name in unchanged))
    if not report["changed"]:
        lines.append("no changes")
    return "\n".join(lines)


def _header_lines(change: JSON, status: str) -> list[str]:
    clause = change["clause"]
    if clause in ("triggers", "exits", "goals"):
        out = [f"  - {text}" for text in change["removed"]]
        out += [f"  + {text}" for text in change["added"]]
        return [line + ("" if status != "changed" else "  (header)") for line in out]
    if status != "changed":
        value = change["new"] if status == "added" else change["old"]
        return [] if value in ("never", "keep") else [f"  {clause} {value}"]
    return [f"  ~ {clause} {change['old']} -> {change['new']}  (header)"]


def step_order(sid: str, states: JSON | None = None) -> list[Any]:
    """The order steps are written in: `s2` before `s10`, and the steps inside a step right
    after it, block by block in their written order (`then`, `elif1`, ..., `else`; split
    arms as declared), as far as `states` (the flow's, old and new merged) tell."""
    parts = sid.split(".")
    key: list[Any] = [_number(parts[0][1:])]
    for i in range(1, len(parts) - 1, 2):
        parent = ".".join(parts[:i])
        labels = _block_labels((states or {}).get(parent))
        label = parts[i]
        key += [labels.index(label) if label in labels else len(labels), label]
        key.append(_number(parts[i + 1]))
    return key


def _number(text: str) -> int:
    return int(text) if text.isdigit() else -1


def _block_labels(state: JSON | None) -> list[str]:
    """The labels of a state's blocks, in written order."""
    if state is None:
        return ["then"] + [f"elif{i}" for i in range(1, 100)] + ["else"]
    if state["kind"] == "branch":
        return ["then"] + [f"elif{i}" for i in range(1, len(state["cases"]))] + ["else"]
    if state["kind"] == "split":
        return [arm["name"] for arm in state["arms"]]
    return ["else"]


def _change_text(change: JSON) -> str:
    field, old, new = change["field"], change["old"], change["new"]
    if field.rsplit(".", 1)[-1] in _TARGETS:  # where the contact goes next
        where = {END: "the end of the flow", None: "(none)"}
        return f"{field}: goes to {where.get(new, new)} (was {where.get(old, old)})"
    note = f"  ({change['note']})" if "note" in change else ""
    if old is None:
        return f"{field}: added `{new}`{note}"
    if new is None:
        return f"{field}: removed (was `{old}`){note}"
    return f"{field}: `{old}` -> `{new}`{note}"
