"""Changes that steps make within one instant are followed to their end, however long the
chain; a chain that never settles is stopped and reported (a `stop` effect), never a hang.

Generated chains of N flows raised by each other's tags (N up to 50) run to the last flow at
the same instant; generated enroll graphs are compared with a small independent model of
`enroll` at one instant, which says whether the chain settles and in which order flows enter.
Every simulate runs under a time limit and a memory cap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bounded import bounded
from checking import check_text
from engine_run import run, track
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadlang.runtime.engine import MAX_REENTRIES

START = "2025-01-01T00:00:00Z"


def simulate(
    tmp_path: Path, script: str, events: list[dict[str, Any]], seconds: int = 10
) -> list[dict[str, Any]]:
    checked = check_text(tmp_path, script)
    assert checked.program is not None, [d.message for d in checked.diagnostics]
    with bounded(seconds=seconds):
        return run(checked.program, events)


def tag_chain(n: int, reenter: str = "never") -> str:
    """flow_0 on signed_up tags t1; flow_i (when t_i in tags) tags t_{i+1}."""
    flows = [f'flow flow_0:\n  on signed_up\n  reenter {reenter}\n  tag "t1"\n']
    for i in range(1, n):
        flows.append(
            f'flow flow_{i}:\n  when "t{i}" in tags\n  reenter {reenter}\n  tag "t{i + 1}"\n'
        )
    return "\n".join(flows)


def tag_ring(n: int) -> str:
    """start tags t0; flow_i (when t_i in tags, reenter always) untags t_i and tags the next,
    and the last tags t0 again: round and round."""
    flows = ['flow start:\n  on signed_up\n  tag "t0"\n']
    for i in range(n):
        flows.append(
            f'flow flow_{i}:\n  when "t{i}" in tags\n  reenter always\n'
            f'  untag "t{i}"\n  tag "t{(i + 1) % n}"\n'
        )
    return "\n".join(flows)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.integers(1, 50))
def test_a_chain_of_n_flows_runs_to_its_end_at_one_instant(tmp_path: Path, n: int) -> None:
    effects = simulate(tmp_path, tag_chain(n), [track("u", "signed_up", START)])
    entered = [e["flow"] for e in effects if e["action"] == "enter"]
    assert entered == [f"flow_{i}" for i in range(n)]
    assert {e["at"] for e in effects} == {START}
    assert not [e for e in effects if e["action"] == "stop"]


@pytest.mark.parametrize("n", [2, 9, 50])
def test_a_tag_cycle_that_never_settles_is_stopped_and_named(tmp_path: Path, n: int) -> None:
    # a ring of n flows (tag_ring): round and round
    effects = simulate(tmp_path, tag_ring(n), [track("u", "signed_up", START)])
    stops = [e for e in effects if e["action"] == "stop"]
    assert len(stops) == 1
    cycle = stops[0]["cycle"]
    assert cycle[0] == cycle[-1] and sorted(cycle[:-1]) == sorted(f"flow_{i}" for i in range(n))
    assert stops[0]["reason"] == "never_settles"
    # every enrollment still ends exactly once
    enters = [e["flow"] for e in effects if e["action"] == "enter"]
    exits = [e["flow"] for e in effects if e["action"] == "exit"]
    assert sorted(enters) == sorted(exits)
    assert len(effects) < 20 * n  # stopped at the first repeat, not after thousands of turns


def test_a_chain_that_changes_at_every_turn_is_stopped_too(tmp_path: Path) -> None:
    # the score grows at every turn (no max), so the state never repeats: the bound stops it
    # (a ping-pong of tags through `when` triggers: a cycle `check` cannot see; an `enroll`
    # cycle it can see is refused, F020)
    script = """
flow up:
  on signed_up
  when "up" in tags
  reenter always
  untag "up"
  score +1
  tag "down"
flow down:
  when "down" in tags
  reenter always
  untag "down"
  tag "up"
"""
    effects = simulate(tmp_path, script, [track("u", "signed_up", START)])
    stops = [e for e in effects if e["action"] == "stop"]
    assert len(stops) == 1
    # the bound, exactly: each flow's first entry, then MAX_REENTRIES re-entries; the stop
    # names the turn since the refused flow's previous re-entry
    enters = [e for e in effects if e["action"] == "enter"]
    assert len(enters) == MAX_REENTRIES + 2
    assert stops[0]["flow"] == "up" and stops[0]["cycle"] == ["up", "down", "up"]
    assert stops[0]["at"] == START and stops[0]["reason"] == "never_settles"


def test_after_the_stop_no_flow_is_entered_at_that_instant(tmp_path: Path) -> None:
    # up and down re-enter each other (through tags and `when`) and each then re-enters
    # side: when side is refused, the running enrollments still end
    script = """
flow up:
  on signed_up
  when "up" in tags
  reenter always
  untag "up"
  score +1
  tag "down"
  enroll side
flow down:
  when "down" in tags
  reenter always
  untag "down"
  tag "up"
  enroll side
flow side:
  reenter always
  tag "side"
"""
    effects = simulate(tmp_path, script, [track("u", "signed_up", START)])
    stops = [i for i, e in enumerate(effects) if e["action"] == "stop"]
    assert len(stops) == 1
    after = effects[stops[0] :]
    assert [e for e in after if e["action"] == "enter"] == []
    assert [e["action"] for e in after].count("exit") >= 1  # the running ones end


def test_a_flow_re_entered_by_a_new_flow_each_time_is_stopped_at_the_bound(tmp_path: Path) -> None:
    # `a` is re-entered by b_1, b_2, ... each entering for the first time (a first entry is
    # no re-entry): `a`'s re-entries follow one another with nothing between them
    script = 'flow start:\n  on signed_up\n  tag "go"\n'
    script += 'flow a:\n  when "go" in tags\n  reenter always\n  untag "go"\n  score +1\n'
    script += "".join(
        f'flow b_{i}:\n  when score >= {i}\n  tag "go"\n' for i in range(1, MAX_REENTRIES + 5)
    )
    # (about 1 s; a minute allowed for mutation testing's slower runs)
    effects = simulate(tmp_path, script, [track("u", "signed_up", START)], seconds=60)
    assert [e["flow"] for e in effects if e["action"] == "enter"].count("a") == MAX_REENTRIES + 1
    stops = [e for e in effects if e["action"] == "stop"]
    assert len(stops) == 1
    # the turn since `a`'s previous re-entry: `a` right after `a`
    assert stops[0]["flow"] == "a" and stops[0]["cycle"] == ["a", "a"]


def test_re_entries_past_the_bound_by_flows_each_re_entered_once_are_stopped(
    tmp_path: Path,
) -> None:
    # a tag ring of MAX_REENTRIES + 1 flows: the first lap enters each flow, the second
    # re-enters each; the last re-entry is one past the bound, before any state repeats
    n = MAX_REENTRIES + 1
    effects = simulate(tmp_path, tag_ring(n), [track("u", "signed_up", START)], seconds=60)
    stops = [e for e in effects if e["action"] == "stop"]
    assert len(stops) == 1
    # the refused flow had no earlier re-entry at this instant: the stop names it twice
    last = f"flow_{n - 1}"
    assert stops[0]["flow"] == last and stops[0]["cycle"] == [last, last]
    assert [e["flow"] for e in effects if e["action"] == "enter"].count(last) == 1


LOOP = """
flow ping:
  on signed_up
  reenter always
  {step}
  if more:
    enroll pong
flow pong:
  reenter always
  enroll ping
"""


@pytest.mark.parametrize(
    "script",
    [
        # the score reaches its max of 60
        "score:\n  max 60\nsegment more = score < 60\n" + LOOP.format(step="score +1"),
        # a trait counts the turns: the turns differ only by it (no repeat to stop at)
        "trait turns: number = 0\nsegment more = turns < 60\n"
        + LOOP.format(step="set turns = turns + 1"),
    ],
    ids=["score", "trait"],
)
def test_a_long_settling_chain_is_not_stopped(tmp_path: Path, script: str) -> None:
    # 60 turns of a two-flow loop that ends by itself
    effects = simulate(tmp_path, script, [track("u", "signed_up", START)])
    assert not [e for e in effects if e["action"] == "stop"]
    assert [e["flow"] for e in effects if e["action"] == "enter"].count("ping") == 60


def test_an_enroll_cycle_through_a_condition_that_holds_is_stopped_at_run_time(
    tmp_path: Path,
) -> None:
    # check only warns (F022: the condition might turn); at run time it never does
    script = LOOP.replace("if more:", "if score >= 0:").format(step="score +1")
    checked = check_text(tmp_path, script)
    assert [d.code for d in checked.diagnostics] == ["F022"]
    effects = simulate(tmp_path, script, [track("u", "signed_up", START)])
    stops = [e for e in effects if e["action"] == "stop"]
    assert len(stops) == 1 and stops[0]["reason"] == "never_settles"
    assert stops[0]["cycle"] == ["ping", "pong", "ping"]


# ---------------------------------------------------------------- generated enroll graphs

# A flow: reenter always?, its steps: ("enroll", j) or ("wait",)
Graph = list[tuple[bool, list[tuple[Any, ...]]]]


@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    n = draw(st.integers(1, 6))
    steps = st.one_of(st.tuples(st.just("enroll"), st.integers(0, n - 1)), st.just(("wait",)))
    return [(draw(st.booleans()), draw(st.lists(steps, max_size=4))) for _ in range(n)]


def script_of(graph: Graph) -> str:
    out = []
    for i, (always, steps) in enumerate(graph):
        lines = [f"flow f{i}:"]
        if i == 0:
            lines.append("  on signed_up")
        lines.append(f"  reenter {'always' if always else 'never'}")
        lines += [f"  enroll f{s[1]}" if s[0] == "enroll" else "  wait 1h" for s in steps]
        if not steps:
            lines.append('  tag "x"')
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def started_at(graph: Graph, start: int) -> Graph:
    """The same graph with flows `0` and `start` swapped (the model enters flow 0 first)."""

    def swap(i: int) -> int:
        return start if i == 0 else 0 if i == start else i

    renamed = [
        (always, [("enroll", swap(s[1])) if s[0] == "enroll" else s for s in steps])
        for always, steps in graph
    ]
    renamed[0], renamed[start] = renamed[start], renamed[0]
    return renamed


def model(graph: Graph, limit: int = 500) -> list[str] | None:
    """The flows entered at the first instant, in order, by the rules of `enroll`: a flow
    is entered unless it is enrolled now, or was entered before and is not `reenter always`;
    the entered flow runs after the one enrolling it waits or ends. None: it never settles."""
    queue, enrolled, entered, order = [0], {0}, {0}, ["f0"]
    while queue:
        flow = queue.pop(0)
        waits = False
        for step in graph[flow][1]:
            if step[0] == "wait":
                waits = True
                break
            target = step[1]
            if target not in enrolled and (target not in entered or graph[target][0]):
                enrolled.add(target)
                entered.add(target)
                queue.append(target)
                order.append(f"f{target}")
                if len(order) > limit:
                    return None
        if not waits:
            enrolled.discard(flow)
    return order


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(graphs())
def test_enroll_graphs_settle_as_the_model_says_or_are_stopped(
    tmp_path: Path, graph: Graph
) -> None:
    checked = check_text(tmp_path, script_of(graph))
    if any(d.code == "F020" for d in checked.diagnostics):  # refused: it never settles
        assert checked.program is None
        return
    effects = simulate(tmp_path, script_of(graph), [track("u", "signed_up", START)])
    now = [e for e in effects if e["at"] == START]
    stopped = [e for e in now if e["action"] == "stop"]
    expected = model(graph)
    if expected is None:
        assert len(stopped) == 1
    else:
        assert not stopped
        assert [e["flow"] for e in now if e["action"] == "enter"] == expected
    enters = sorted(e["flow"] for e in effects if e["action"] == "enter")
    exits = sorted(e["flow"] for e in effects if e["action"] == "exit")
    # each enrollment ends once, except those still waiting when the run ends
    assert len(exits) <= len(enters)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(graphs())
def test_check_warns_of_the_enroll_cycles_it_can_see(tmp_path: Path, graph: Graph) -> None:
    """A cycle of `reenter always` flows each enrolling the next before any wait, some path
    of each to its end with no wait: F022 (a warning), or F020 (an error) when none of them
    waits at all, which certainly never settles (the model agrees). Without one the graph
    settles (the model says so)."""
    checked = check_text(tmp_path, script_of(graph))
    found = {d.code for d in checked.diagnostics}
    for d in checked.diagnostics:
        if d.code == "F020":  # entered from its first flow, the cycle never settles
            start = int(d.message.split("`")[1][1:])
            assert model(started_at(graph, start)) is None
    if not found & {"F020", "F022"}:
        assert model(graph) is not None


@st.composite
def tag_graphs(draw: st.DrawFn) -> str:
    """Flows raised by tags and enrolling each other, with any reenter mode: any script."""
    n = draw(st.integers(1, 6))
    tags = st.integers(0, 3)
    step = st.one_of(
        tags.map(lambda k: f'tag "t{k}"'),
        tags.map(lambda k: f'untag "t{k}"'),
        st.integers(0, n - 1).map(lambda j: f"enroll f{j}"),
        st.just("wait 1h"),
        st.just("score +1"),
    )
    flows = []
    for i in range(n):
        trigger = draw(
            st.one_of(
                st.just("on signed_up"),
                tags.map(lambda k: f'when "t{k}" in tags'),
                tags.map(lambda k: f'when not ("t{k}" in tags)'),
                st.just(""),
            )
        )
        reenter = draw(st.sampled_from(["always", "never", "after 1h"]))
        steps = draw(st.lists(step, min_size=1, max_size=4))
        lines = [f"flow f{i}:", *([f"  {trigger}"] if trigger else []), f"  reenter {reenter}"]
        flows.append("\n".join(lines + [f"  {s}" for s in steps]))
    return "\n\n".join(flows) + "\n"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tag_graphs())
def test_any_graph_of_tags_and_enrolls_ends_with_paired_enrollments(
    tmp_path: Path, script: str
) -> None:
    events = [track("u", "signed_up", START), track("u", "signed_up", "2025-01-01T00:30:00Z")]
    checked = check_text(tmp_path, script)
    if any(d.code == "F020" for d in checked.diagnostics):  # refused: never settles
        assert checked.program is None
        return
    effects = simulate(tmp_path, script, events)
    stops_at = [e["at"] for e in effects if e["action"] == "stop"]
    assert len(stops_at) == len(set(stops_at))  # at most one stop per instant
    open_flows: set[str] = set()
    for effect in effects:  # a flow is entered only when not in it, and left once
        if effect["action"] == "enter":
            assert effect["flow"] not in open_flows
            open_flows.add(effect["flow"])
        elif effect["action"] == "exit":
            open_flows.remove(effect["flow"])


def test_a_flow_first_entered_in_the_middle_of_a_cycle_is_part_of_the_state(
    tmp_path: Path,
) -> None:
    """The state compared at a re-entry includes the flows entered at this instant
    (docs/simulate.md). Here `flow_0` raises the score by one a turn up to its max of 3; at
    3, `x` enters for the first time, just after `flow_1`'s re-entry. The next re-entry of
    `flow_1` differs from that one only by `x` having been entered: no repeat yet. The
    re-entry of `flow_0` after it is the first repeat (of the one just before `flow_1`'s)."""
    script = """
score:
  visit +1
  max 3

flow start:
  on signed_up
  tag "t0"

flow flow_0:
  when "t0" in tags
  reenter always
  untag "t0"
  score +1
  tag "t1"

flow flow_1:
  when "t1" in tags
  reenter always
  untag "t1"
  tag "t0"

flow x:
  when score >= 3
  untag "nothing"
"""
    effects = simulate(tmp_path, script, [track("u", "signed_up", START)])
    entered = [e["flow"] for e in effects if e["action"] == "enter"]
    # score after each flow_0 turn: 1, 2, 3, 3: x enters after the second flow_1 re-entry
    assert entered == ["start"] + ["flow_0", "flow_1"] * 3 + ["x", "flow_0", "flow_1"]
    stops = [e for e in effects if e["action"] == "stop"]
    assert [(s["flow"], s["cycle"]) for s in stops] == [("flow_0", ["flow_0", "flow_1", "flow_0"])]


def test_an_enrollment_bound_to_another_event_is_another_state(tmp_path: Path) -> None:
    """Where an enrollment stands includes the event it is bound to (what `event.X` reads in
    its steps), so a turn of a chain that differs from an earlier one only by that is no
    repeat yet. Here `y` is first entered by `z`'s `enroll`, bound to the earlier
    `page_viewed`; the chain `a`, `a2`, `a3`, `a4`, `b` ends it (`exit when`) and enters it
    again by its `when`, bound to `clicked`: the second re-entry of `a` differs from the
    first only by `y`'s event, and the first repeat is the re-entry of `a2` one turn on."""
    script = """
flow z:
  on page_viewed
  check "zz" in tags within 2d
  enroll y

flow y:
  when "yy" in tags
  reenter always
  exit when "yx" in tags
  wait 1d
  tag "never"

flow s:
  on clicked
  tag "a"

flow a:
  when "a" in tags
  reenter always
  untag "a"
  tag "yx"

flow a2:
  when "yx" in tags
  reenter always
  untag "yx"
  tag "zz"

flow a3:
  when "zz" in tags
  reenter always
  tag "yy"

flow a4:
  when "yy" in tags
  reenter always
  untag "yy"
  untag "zz"
  tag "b"

flow b:
  when "b" in tags
  reenter always
  untag "b"
  tag "a"
"""
    events = [track("u", "page_viewed", START), track("u", "clicked", "2025-01-01T01:00:00Z")]
    effects = simulate(tmp_path, script, events)
    entered = [e["flow"] for e in effects if e["action"] == "enter"]
    turn = ["a", "a2", "a3", "y", "a4", "b"]
    assert entered == ["z", "s", "a", "a2", "a3", "y", "a4", "b", *turn, "a"]
    stops = [(e["flow"], e["cycle"]) for e in effects if e["action"] == "stop"]
    assert stops == [("a2", ["a2", "a3", "y", "a4", "b", "a", "a2"])]
