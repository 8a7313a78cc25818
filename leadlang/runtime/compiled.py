"""The IR as the engine holds it: each condition compiled once (`Cond`) and each flow (`Flow`).

A `Cond` is a compiled expression with what can change its value (the profile keys it
reads, `now`, the score, `within` windows, `days_since` bounds); the engine fills in which
way time alone moves it (`runtime/monotone.py`). A `Flow` is a flow's triggers, exits,
goals and steps with their conditions compiled.
"""

from __future__ import annotations

from typing import Any

from leadlang.runtime import monotone
from leadlang.runtime.reorder import cheap_first
from leadlang.runtime.values import compile_expr


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


def optional_cond(node: dict[str, Any] | None, label: str) -> Cond | None:
    return None if node is None else Cond(node, label)


class Flow:
    def __init__(self, node: dict[str, Any], trigger_ids: list[int]) -> None:
        self.name: str = node["name"]
        self.version: str = node["version"]
        self.edits: str = node.get("edits", "keep")  # what a reload does to its enrollments
        self.start: str | None = node["start"]
        self.reenter: dict[str, Any] = node["reenter"]
        self.on: list[tuple[str, Cond | None]] = []
        self.when: list[tuple[int, Cond]] = []
        for trig in node["triggers"]:
            if trig["kind"] == "on":
                self.on.append((trig["event"], optional_cond(trig["where"], f"<{self.name}:on>")))
            else:
                tid = len(trigger_ids)
                trigger_ids.append(tid)
                cond = Cond(trig["cond"], f"<{self.name}:when>", truth=True)
                self.when.append((tid, cond))
        self.exit_on: list[tuple[str, Cond | None]] = []
        self.exit_when: list[Cond] = []
        for ex in node["exits"]:
            if ex["kind"] == "on":
                self.exit_on.append(
                    (ex["event"], optional_cond(ex["where"], f"<{self.name}:exit>"))
                )
            else:
                self.exit_when.append(Cond(ex["cond"], f"<{self.name}:exit>"))
        self.goals = [
            (g["event"], optional_cond(g["where"], f"<{self.name}:goal>"), g["within"])
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
