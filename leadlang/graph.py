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
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
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
    return "\n".join(triggers) or "enroll only"


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(flow: JSON) -> str:
    name = flow["name"]
    lines = [
        f"digraph {_dot_quote(name)} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
        f"  {_dot_quote(START)} [shape=oval, label={_dot_quote(_start_label(flow))}];",
        f'  {_dot_quote(END)} [shape=doublecircle, label="exit"];',
    ]
    for sid, state in flow["states"].items():
        shape = "diamond" if state["kind"] in ("branch", "split", "check") else "box"
        label = f"{state_label(state)}\n[{sid}]"
        lines.append(f"  {_dot_quote(sid)} [shape={shape}, label={_dot_quote(label)}];")
    for edge in _edges(flow):
        attrs_ = f" [label={_dot_quote(edge.label)}]" if edge.label else ""
        lines.append(f"  {_dot_quote(edge.source)} -> {_dot_quote(edge.target)}{attrs_};")
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
    return "\n".join(lines) + "\n"


def to_svg(flow: JSON) -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise GraphError(
            "svg needs Graphviz's `dot` program, which is not installed "
            "(e.g. `apt-get install graphviz`); `--format dot` or `--format mermaid` work without it"
        )
    done = subprocess.run(
        [dot, "-Tsvg"], input=to_dot(flow), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise GraphError(f"`dot` failed: {done.stderr.strip()}")
    return done.stdout


RENDERERS = {"dot": to_dot, "mermaid": to_mermaid, "svg": to_svg}


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
    """Every flow (or the named one), drawn in `fmt`; several flows are drawn one after another."""
    render = RENDERERS[fmt]
    return "".join(render(flow) for flow in select_flows(program_ir, flow_name))
