"""Draw a compiled flow (machine IR) as a diagram: Graphviz DOT, Mermaid, or SVG via `dot`.

Reads only the IR, like the engine, so the picture shows exactly the state machine that runs:
one node per state (labelled with its step), edges for `next`, branch cases, split arms,
`else` paths and time-outs, and an `exit` node for the end of the flow.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import attrs

JSON = dict[str, Any]
END = "__end__"
START = "__start__"


class GraphError(Exception):
    """A user-facing problem drawing a graph (no such flow, Graphviz missing)."""


@attrs.frozen(slots=True)
class Edge:
    source: str
    target: str
    label: str = ""


def _text(expr: JSON | None) -> str:
    if not expr:
        return ""
    text = expr.get("text")
    return str(text) if text else "condition"


def _duration(seconds: int | float) -> str:
    seconds = int(seconds)
    parts = []
    units: tuple[tuple[str, int], ...] = (
        ("w", 604800),
        ("d", 86400),
        ("h", 3600),
        ("m", 60),
        ("s", 1),
    )
    if seconds % 604800:  # `30d` reads better than `4w2d`: weeks only when they are whole
        units = units[1:]
    for unit, size in units:
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _event(state: JSON) -> str:
    where = _text(state.get("where"))
    return f"{state['event']} where {where}" if where else str(state["event"])


def state_label(state: JSON) -> str:
    """A one-line description of a state's step, in the language's own words."""
    kind = state["kind"]
    if kind == "send":
        return f"send {state['channel']} {state['message']}"
    if kind == "wait":
        return f"wait {_text(state['duration'])}"
    if kind == "wait_until":
        return f"wait until {_text(state['target'])}"
    if kind == "wait_for":
        return f"wait for {_event(state)} up to {_text(state['up_to'])}"
    if kind == "check":
        within = state.get("within")
        suffix = f" within {_text(within)}" if within else ""
        return f"check {_text(state['cond'])}{suffix}"
    if kind == "branch":
        return "if"
    if kind == "split":
        return f"split {state['name']}"
    if kind in ("tag", "untag"):
        return f"{kind} {_text(state['tag'])}"
    if kind == "set":
        return f"set {state['trait']} = {_text(state['value'])}"
    if kind == "score":
        points = state["points"]
        return f"score {'+' if points >= 0 else ''}{points:g}"
    if kind == "enroll":
        return f"enroll {state['flow']}"
    return str(kind)


def _edges(flow: JSON) -> Iterator[Edge]:
    yield Edge(START, flow["start"] or END)
    for sid, state in flow["states"].items():
        kind = state["kind"]
        nxt = state["next"] or END
        if kind == "exit":
            yield Edge(sid, END, "exit")
        elif kind == "branch":
            for case in state["cases"]:
                yield Edge(sid, case["target"] or END, _text(case["cond"]))
            yield Edge(sid, state["otherwise"] or END, "else")
        elif kind == "split":
            for arm in state["arms"]:
                yield Edge(sid, arm["target"] or END, f"{arm['name']} {arm['percent']:.0%}")
        elif kind == "wait_for":
            yield Edge(sid, nxt, state["event"])
            yield Edge(sid, state["on_timeout"] or END, "timed out")
        elif kind == "check":
            yield Edge(sid, nxt, "yes")
            yield Edge(sid, state["on_else"] or END, "else")
        else:
            yield Edge(sid, nxt)


def _start_label(flow: JSON) -> str:
    triggers = []
    for trigger in flow["triggers"]:
        if trigger["kind"] == "on":
            triggers.append(f"on {_event(trigger)}")
        else:
            triggers.append(f"when {_text(trigger['cond'])}")
    lines = triggers or ["enroll only"]
    reenter = flow.get("reenter") or {}
    if reenter.get("mode") == "always":
        lines.append("reenter always")
    elif reenter.get("mode") == "after":
        lines.append(f"reenter after {_duration(reenter['after'] or 0)}")
    if flow.get("edits", "keep") != "keep":
        lines.append(f"edits {flow['edits']}")
    return "\n".join(lines)


@attrs.frozen(slots=True)
class Leave:
    """A header clause that ends the enrollment from wherever it is (`exit on`, `goal`)."""

    id: str
    label: str
    reason: str  # the exit reason it gives: removed or goal


def _leaves(flow: JSON) -> list[Leave]:
    out = []
    for i, clause in enumerate(flow.get("exits", ())):
        if clause["kind"] == "on":
            label = f"exit on {_event(clause)}"
        else:
            label = f"exit when {_text(clause['cond'])}"
        out.append(Leave(f"__exit{i}__", label, "removed"))
    for i, goal in enumerate(flow.get("goals", ())):
        within = goal.get("within")
        suffix = f" within {_duration(within)}" if within else ""
        out.append(Leave(f"__goal{i}__", f"goal {_event(goal)}{suffix}", "goal"))
    return out


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _dot_body(flow: JSON, prefix: str = "") -> list[str]:
    """The nodes and edges of one flow; `prefix` keeps node ids apart when several flows
    share one graph."""

    def node(sid: str) -> str:
        return _dot_quote(prefix + sid)

    lines = [
        f"  {node(START)} [shape=oval, label={_dot_quote(_start_label(flow))}];",
        f'  {node(END)} [shape=doublecircle, label="exit"];',
    ]
    for sid, state in flow["states"].items():
        shape = "diamond" if state["kind"] in ("branch", "split", "check") else "box"
        label = f"{state_label(state)}\n[{sid}]"
        lines.append(f"  {node(sid)} [shape={shape}, label={_dot_quote(label)}];")
    for edge in _edges(flow):
        attrs_ = f" [label={_dot_quote(edge.label)}]" if edge.label else ""
        lines.append(f"  {node(edge.source)} -> {node(edge.target)}{attrs_};")
    # Clauses that end the enrollment from any step: a note with a dashed edge to `exit`.
    for leave in _leaves(flow):
        lines.append(f"  {node(leave.id)} [shape=note, label={_dot_quote(leave.label)}];")
        lines.append(
            f"  {node(leave.id)} -> {node(END)} [style=dashed, label={_dot_quote(leave.reason)}];"
        )
    return lines


_DOT_STYLE = [
    "  rankdir=TB;",
    '  node [shape=box, style="rounded", fontname="Helvetica"];',
    '  edge [fontname="Helvetica", fontsize=10];',
]


def to_dot(flow: JSON) -> str:
    lines = [f"digraph {_dot_quote(flow['name'])} {{", *_DOT_STYLE, *_dot_body(flow), "}"]
    return "\n".join(lines) + "\n"


def to_dot_all(flows: list[JSON]) -> str:
    """Several flows as one graph, a labelled cluster each (one picture, one SVG document)."""
    if len(flows) == 1:
        return to_dot(flows[0])
    lines = ['digraph "flows" {', *_DOT_STYLE]
    for i, flow in enumerate(flows):
        lines.append(f"  subgraph {_dot_quote(f'cluster_{i}')} {{")
        lines.append(f"    label={_dot_quote('flow ' + flow['name'])};")
        lines.extend("  " + line for line in _dot_body(flow, prefix=f"f{i}:"))
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_id(sid: str) -> str:
    return "n_" + "".join(ch if ch.isalnum() else "_" for ch in sid)


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("\n", "<br/>")


def to_mermaid(flow: JSON) -> str:
    lines = [
        "flowchart TD",
        f'  {_mermaid_id(START)}(["{_mermaid_text(_start_label(flow))}"])',
        f'  {_mermaid_id(END)}((("exit")))',
    ]
    for sid, state in flow["states"].items():
        text = _mermaid_text(state_label(state))
        if state["kind"] in ("branch", "split", "check"):
            lines.append(f'  {_mermaid_id(sid)}{{"{text}"}}')
        else:
            lines.append(f'  {_mermaid_id(sid)}["{text}"]')
    for edge in _edges(flow):
        arrow = f' -->|"{_mermaid_text(edge.label)}"| ' if edge.label else " --> "
        lines.append(f"  {_mermaid_id(edge.source)}{arrow}{_mermaid_id(edge.target)}")
    for leave in _leaves(flow):
        lines.append(f'  {_mermaid_id(leave.id)}[/"{_mermaid_text(leave.label)}"/]')
        lines.append(f'  {_mermaid_id(leave.id)} -.->|"{leave.reason}"| {_mermaid_id(END)}')
    return "\n".join(lines) + "\n"


def to_svg(flows: list[JSON]) -> str:
    """One SVG document for all `flows` (Graphviz draws each graph it reads as its own
    document, so several flows go in as one graph of clusters)."""
    dot = shutil.which("dot")
    if dot is None:
        raise GraphError(
            "svg needs Graphviz's `dot` program, which is not installed "
            "(e.g. `apt-get install graphviz`); `--format dot` or `--format mermaid` work without it"
        )
    done = subprocess.run(
        [dot, "-Tsvg"], input=to_dot_all(flows), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise GraphError(f"`dot` failed: {done.stderr.strip()}")
    return done.stdout


RENDERERS = {"dot": to_dot, "mermaid": to_mermaid}


def select_flows(program_ir: JSON, flow_name: str | None) -> list[JSON]:
    flows: list[JSON] = program_ir["flows"]
    if flow_name is None:
        if not flows:
            raise GraphError("the script defines no flow")
        return flows
    for flow in flows:
        if flow["name"] == flow_name:
            return [flow]
    names = ", ".join(f"`{flow['name']}`" for flow in flows) or "none"
    raise GraphError(f"no flow named `{flow_name}` (flows: {names})")


def render_graph(program_ir: JSON, flow_name: str | None, fmt: str) -> str:
    """Every flow (or the named one), drawn in `fmt`: several flows are drawn one after
    another in text formats, and as one picture in SVG."""
    flows = select_flows(program_ir, flow_name)
    if fmt == "svg":
        return to_svg(flows)
    render = RENDERERS[fmt]
    return "".join(render(flow) for flow in flows)
