"""Engine behaviour written from LANGUAGE.md as a user reads it: scripts as text, event logs,
and effects worked out by hand from the spec (sections 3, 4, 5.2 and 7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from checking import check_text
from engine_run import identify, run, run_text, track

MESSAGES = "".join(
    f'message {m}:\n  channel email\n  subject "{m}"\n  text "{m}"\n' for m in ("a", "b", "m")
)


def _simulate(tmp_path: Path, script: str, events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (e["at"], e["contact"], e["action"], e.get("flow"), e.get("tag") or e.get("message"))
        for e in run_text(tmp_path, script, events)
        if e["action"] in ("tag", "send", "exit", "enter")
    ]


def test_message_statuses_are_about_this_enrollments_sends(tmp_path: Path) -> None:
    script = (
        MESSAGES
        + """
flow f:
  on go
  send a
  wait 1d
  send b
  wait 1d
  if opened(a):
    tag "opened_a"
  if opened:
    tag "opened_last"
  if clicked:
    tag "clicked_last"
"""
    )
    events = [
        identify("u", "2025-01-01T00:00:00Z", email="u@x"),
        identify("v", "2025-01-01T00:00:00Z", email="v@x"),
        # v opened an earlier `a` before this enrollment sent it: that does not count.
        track("v", "message_opened", "2025-01-01T12:00:00Z", message="a"),
        track("u", "go", "2025-01-02T00:00:00Z"),
        track("v", "go", "2025-01-02T00:00:00Z"),
        track("u", "Message Opened", "2025-01-02T01:00:00Z", message="a"),
        # After `b` is sent: opening `a` again says nothing about `b`; clicking `b` does.
        track("u", "message_opened", "2025-01-03T01:00:00Z", message="a"),
        track("u", "message_clicked", "2025-01-03T02:00:00Z", message="b"),
    ]
    tags = [(e[1], e[4]) for e in _simulate(tmp_path, script, events) if e[2] == "tag"]
    assert tags == [("u", "opened_a"), ("u", "clicked_last")]


def test_score_step_applies_due_decay_and_is_not_activity(tmp_path: Path) -> None:
    script = """
score:
  page_viewed +10
  decay 2 every 1d idle

flow bump:
  on page_viewed
  wait 3d
  score +5

flow nine:
  when score >= 9
  reenter always
  tag "nine"

flow low:
  when score < 8
  reenter always
  tag "low"
"""
    events = [track("u", "page_viewed", "2025-01-01T00:00:00Z")]
    tags = [(e[0], e[4]) for e in _simulate(tmp_path, script, events) if e[2] == "tag"]
    # d0: 10 (nine). d1: 8. d2: 6 (low). d3: the step applies the 3 due decays (10 - 6 = 4),
    # adds 5: 9 (nine again). last_activity stays d0, so the 4th decay lands at d4: 7 (low).
    assert tags[:4] == [
        ("2025-01-01T00:00:00Z", "nine"),
        ("2025-01-03T00:00:00Z", "low"),
        ("2025-01-04T00:00:00Z", "nine"),
        ("2025-01-05T00:00:00Z", "low"),
    ]


def test_identify_is_not_activity_so_decay_keeps_its_clock(tmp_path: Path) -> None:
    script = """
score:
  page_viewed +10
  decay 10 every 1d idle

flow cold:
  when score <= 0
  tag "cold"
"""
    events = [
        track("u", "page_viewed", "2025-01-01T00:00:00Z"),
        identify("u", "2025-01-01T12:00:00Z", email="u@x"),
    ]
    # `cold` is first evaluated at the page view (score 10: false), so the rise is the decay
    # instant one day after the last *track*, not after the identify.
    tags = [(e[0], e[4]) for e in _simulate(tmp_path, script, events) if e[2] == "tag"]
    assert tags == [("2025-01-02T00:00:00Z", "cold")]


def test_exit_when_removes_an_enrollment(tmp_path: Path) -> None:
    script = (
        MESSAGES
        + """
flow f:
  on go
  exit when "stop" in tags
  wait 2d
  send m

flow stopper:
  on stop_it
  tag "stop"
"""
    )
    events = [
        identify("u", "2025-01-01T00:00:00Z", email="u@x"),
        identify("w", "2025-01-01T00:00:00Z", email="w@x"),
        track("u", "go", "2025-01-01T00:00:00Z"),
        track("w", "go", "2025-01-01T00:00:00Z"),
        track("u", "stop_it", "2025-01-02T00:00:00Z"),
    ]
    program = check_text(tmp_path, script).program
    assert program is not None
    effects = run(program, events)
    u_f = [(e["at"], e["action"], e.get("reason")) for e in effects if e["contact"] == "u"]
    assert u_f == [
        ("2025-01-01T00:00:00Z", "enter", None),
        ("2025-01-02T00:00:00Z", "enter", None),  # `stopper`
        ("2025-01-02T00:00:00Z", "tag", None),
        ("2025-01-02T00:00:00Z", "exit", "done"),  # `stopper` ran to its end
        ("2025-01-02T00:00:00Z", "exit", "removed"),  # `f`: the tag made `exit when` true
    ]
    w_sends = [
        (e["at"], e["message"]) for e in effects if e["contact"] == "w" and e["action"] == "send"
    ]
    assert w_sends == [("2025-01-03T00:00:00Z", "m")]


def test_incoming_event_names_are_normalised(tmp_path: Path) -> None:
    script = """
score:
  "Order Completed" +25

flow thanks:
  on order_completed
  reenter always
  tag "thanked"

flow quoted:
  on "ORDER completed"
  reenter always
  tag "quoted"
"""
    events = [
        track("u", "Order Completed", "2025-01-01T00:00:00Z"),
        track("u", "  order--completed!! ", "2025-01-02T00:00:00Z"),
        track("u", "OrderCompleted", "2025-01-03T00:00:00Z"),  # one word: a different event
    ]
    tags = [(e[0], e[4]) for e in _simulate(tmp_path, script, events) if e[2] == "tag"]
    assert tags == [
        ("2025-01-01T00:00:00Z", "thanked"),
        ("2025-01-01T00:00:00Z", "quoted"),
        ("2025-01-02T00:00:00Z", "thanked"),
        ("2025-01-02T00:00:00Z", "quoted"),
    ]


def test_contacts_due_at_one_instant_go_in_order_of_first_appearance(tmp_path: Path) -> None:
    """docs/simulate.md, "Between contacts": three contacts' quiet-hours deferrals end at the
    same 08:00; their sends come in the order the contacts first appear in the log, not in the
    order their sends were deferred; time-driven changes come before an event at that instant."""
    script = (
        'settings:\n  timezone "UTC"\n  quiet hours 21:00 to 08:00\n'
        + MESSAGES
        + "flow f:\n  on go\n  send a\n"
    )
    events = [
        identify("carol", "2025-01-01T00:00:00Z", email="c@x"),
        identify("bob", "2025-01-01T00:00:01Z", email="b@x"),
        identify("alice", "2025-01-01T00:00:02Z", email="a@x"),
        track("alice", "go", "2025-01-01T21:00:00Z"),
        track("bob", "go", "2025-01-01T22:00:00Z"),
        track("carol", "go", "2025-01-01T23:00:00Z"),
        identify("dave", "2025-01-02T08:00:00Z", email="d@x"),
        track("dave", "go", "2025-01-02T08:00:00Z"),
    ]
    sends = [(e[0], e[1]) for e in _simulate(tmp_path, script, events) if e[2] == "send"]
    assert sends == [
        ("2025-01-02T08:00:00Z", "carol"),
        ("2025-01-02T08:00:00Z", "bob"),
        ("2025-01-02T08:00:00Z", "alice"),
        ("2025-01-02T08:00:00Z", "dave"),
    ]


def test_a_when_trigger_that_decayed_false_fires_again_on_the_next_rise(tmp_path: Path) -> None:
    """Rising edge (section 5.1) across a decay (section 4): true at day 0, false by decay
    alone on day 2 (no event then), true again at an event on day 3: a second enrollment."""
    script = (
        "score:\n  page_viewed +30\n  decay 10 every 1d idle\n"
        'flow f:\n  when score > 50\n  reenter always\n  tag "hot"\n'
    )
    events = [
        track("u", "page_viewed", "2025-01-01T00:00:00Z"),
        track("u", "page_viewed", "2025-01-01T00:01:00Z"),  # 60: enters
        track("u", "page_viewed", "2025-01-04T00:01:00Z"),  # 60 - 30 = 30, + 30 = 60: again
        track("u", "page_viewed", "2025-01-04T00:02:00Z"),  # 90: still true, no new edge
    ]
    tags = [e[0] for e in _simulate(tmp_path, script, events) if e[2] == "tag"]
    assert tags == ["2025-01-01T00:01:00Z", "2025-01-04T00:01:00Z"]


def test_event_in_a_wait_for_exit_or_goal_where_is_the_bound_event(tmp_path: Path) -> None:
    """Section 4: names in an event's `where` are its properties; `event.NAME` is always the
    bound event's. So `wait for order_completed where order_id == event.order_id` waits for
    the order the flow was entered for, not any order."""
    script = """
event checkout_started(order_id: text)
event order_completed(order_id: text)
event order_refunded(order_id: text)
flow f:
  on checkout_started
  exit on order_refunded where order_id == event.order_id
  goal order_completed where order_id == event.order_id
  wait for order_completed where order_id == event.order_id up to 1d else tag "timeout"
  tag "matched"
"""
    events = [
        *(track(u, "checkout_started", "2025-01-01T00:00:00Z", order_id="A") for u in "uvwx"),
        track("u", "order_completed", "2025-01-01T01:00:00Z", order_id="B"),  # another order
        track("v", "order_refunded", "2025-01-01T01:00:00Z", order_id="B"),  # another refund
        track("w", "order_completed", "2025-01-01T02:00:00Z", order_id="A"),  # this order
        track("x", "order_refunded", "2025-01-01T02:00:00Z", order_id="A"),  # this refund
    ]
    effects = _simulate(tmp_path, script, events)
    mine = {u: [(e[0][11:16], e[2], e[4]) for e in effects if e[1] == u] for u in "uvwx"}
    timed_out = [("00:00", "enter", None), ("00:00", "tag", "timeout"), ("00:00", "exit", None)]
    assert mine["u"] == mine["v"] == timed_out  # (at 00:00 the next day)
    assert [e[0][:10] for e in effects if e[1] == "u"] == ["2025-01-01", *["2025-01-02"] * 2]
    # this order is also the goal, which ends the enrollment before its next step runs
    assert mine["w"] == [("00:00", "enter", None), ("02:00", "exit", None)]
    assert mine["x"] == [("00:00", "enter", None), ("02:00", "exit", None)]


def test_an_undeclared_events_property_comes_before_a_profile_name(tmp_path: Path) -> None:
    """Section 4: names in an event's `where` are its properties first, then profile names;
    declarations are optional, so an undeclared event's `email` or `score` property is read
    when the event has one, and the trait or built-in otherwise."""
    script = """
score:
  review_posted +1
  form_submitted +5 where email ends with "@corp.com"
flow corp:
  on form_submitted where email ends with "@corp.com"
  reenter always
  tag "corp"
flow fan:
  on review_posted where score >= 4
  reenter always
  tag "fan"
"""
    events = [
        identify("u", "2025-01-01T00:00:00Z", email="me@gmail.com"),
        identify("v", "2025-01-01T00:00:00Z", email="me@corp.com"),
        track("u", "form_submitted", "2025-01-01T01:00:00Z", email="boss@corp.com"),
        track("u", "form_submitted", "2025-01-01T02:00:00Z", email="kid@gmail.com"),
        track("v", "form_submitted", "2025-01-01T01:00:00Z"),  # no property: the trait
        track("u", "review_posted", "2025-01-01T03:00:00Z", score=5),  # lead score 6
        track("u", "review_posted", "2025-01-01T04:00:00Z", score=2),
        track("v", "review_posted", "2025-01-01T03:00:00Z"),  # no property: lead score 5
    ]
    tags = [(e[0][11:16], e[1], e[4]) for e in _simulate(tmp_path, script, events) if e[2] == "tag"]
    assert tags == [
        ("01:00", "u", "corp"),
        ("01:00", "v", "corp"),
        ("03:00", "u", "fan"),
        ("03:00", "v", "fan"),
    ]


def test_days_since_greater_than_turns_true_just_after_n_days(tmp_path: Path) -> None:
    """`days_since(E) > N` holds from just after N days since the last E: the trigger fires,
    and a waiting `check` continues, at that instant (printed as that second), not at the next
    input or deadline."""
    script = """
flow idle:
  when days_since(a) > 2.5
  tag "idle"
flow watch:
  on a
  check days_since(a) > 2 within 10d else tag "never"
  tag "quiet_2d"
"""
    events = [track("u", "a", "2025-01-01T00:00:00Z")]
    tags = [(e[0], e[4]) for e in _simulate(tmp_path, script, events) if e[2] == "tag"]
    assert tags == [("2025-01-03T00:00:00Z", "quiet_2d"), ("2025-01-03T12:00:00Z", "idle")]


def test_exit_when_that_holds_at_entry_removes_at_once_with_or_without_a_profile_step(
    tmp_path: Path,
) -> None:
    """`exit when` is a level, not an edge: an enrollment for which it holds once its first
    steps ran is removed at that instant, whether or not those steps changed the profile
    (a `tag` starts another pass at the same instant; the removal must not depend on it)."""
    script = """
trait plan: text
flow plain:
  on b
  exit when plan == "free"
  wait 10d
  tag "done"
flow tagged:
  on c
  exit when plan == "free"
  tag "started"
  wait 10d
  tag "done"
"""
    events = [
        *(identify(u, "2025-01-01T00:00:00Z", plan="free") for u in "uw"),
        *(identify(u, "2025-01-01T00:00:00Z", plan="pro") for u in "vx"),
        *(track(u, "b", "2025-01-01T01:00:00Z") for u in "uv"),  # plain
        *(track(u, "c", "2025-01-01T01:00:00Z") for u in "wx"),  # tagged
    ]
    effects = _simulate(tmp_path, script, events)
    exits = [(e[0], e[1], e[3]) for e in effects if e[2] == "exit"]
    assert exits == [
        ("2025-01-01T01:00:00Z", "u", "plain"),
        ("2025-01-01T01:00:00Z", "w", "tagged"),
        ("2025-01-11T01:00:00Z", "v", "plain"),
        ("2025-01-11T01:00:00Z", "x", "tagged"),
    ]


def test_a_metric_that_is_days_since_gets_the_same_instants(tmp_path: Path) -> None:
    """`metric idle = days_since(a)` then `idle >= 10` changes exactly when
    `days_since(a) >= 10` does: in a trigger, an `exit when` and a waiting `check`."""
    script = """
metric idle = days_since(a)
flow dormant:
  when idle >= 10
  tag "dormant"
flow leave:
  on a
  exit when idle >= 3
  wait 30d
flow watch:
  on a
  check idle >= 4 within 20d else tag "never"
  tag "quiet_4d"
"""
    events = [track("u", "a", "2025-01-01T00:00:00Z")]
    effects = _simulate(tmp_path, script, events)
    assert [(e[0][:10], e[2], e[3]) for e in effects if e[2] in ("tag", "exit")] == [
        ("2025-01-04", "exit", "leave"),
        ("2025-01-05", "tag", "watch"),
        ("2025-01-05", "exit", "watch"),
        ("2025-01-11", "tag", "dormant"),
        ("2025-01-11", "exit", "dormant"),
    ]


def test_every_waiting_check_is_judged_again_when_the_profile_changes(tmp_path: Path) -> None:
    # three enrollments at rest: a time wait, a check the event does not touch, and a check
    # it makes true; the last one goes on at the event's instant, whatever comes before it
    script = """
score:
  bought  +20
flow a:
  on signed_up
  wait 1d
  tag "a_done"
flow b:
  on signed_up
  check "vip" in tags within 2d
  tag "b_done"
flow c:
  on signed_up
  check score > 10 within 2d
  tag "c_done"
"""
    effects = _simulate(
        tmp_path,
        script,
        [
            track("u", "signed_up", "2025-01-01T00:00:00Z"),
            track("u", "bought", "2025-01-01T01:00:00Z"),
        ],
    )
    tags = [(at, tag) for at, _, action, _, tag in effects if action == "tag"]
    assert tags == [("2025-01-01T01:00:00Z", "c_done"), ("2025-01-02T00:00:00Z", "a_done")]


def test_a_score_given_by_steps_without_activity_does_not_decay(tmp_path: Path) -> None:
    # identify is no activity and a score step is none either: no idle time to decay from
    script = """
score:
  bought  +1
  decay 1 every 1d idle
trait plan: text
flow vip:
  when plan == "pro"
  score +10
  wait 30d
  if score > 5:
    tag "kept"
"""
    effects = _simulate(tmp_path, script, [identify("u", "2025-01-01T00:00:00Z", plan="pro")])
    assert ("2025-01-31T00:00:00Z", "u", "tag", "vip", "kept") in effects


def test_a_score_of_one_decays_like_any_other(tmp_path: Path) -> None:
    script = """
score:
  visit  +1
  decay 1 every 1d idle
flow gone:
  when score <= 0
  tag "zero"
"""
    effects = _simulate(tmp_path, script, [track("u", "visit", "2025-01-01T00:00:00Z")])
    assert [e for e in effects if e[2] == "tag"] == [
        ("2025-01-02T00:00:00Z", "u", "tag", "gone", "zero")
    ]


def test_a_null_trait_in_an_identify_removes_it(tmp_path: Path) -> None:
    # docs/simulate.md: `identify` merges traits, "a `null` removes one" (also one never set)
    script = """
trait plan: text
trait nickname: text
flow churned:
  when plan == none and "paid" in tags
  tag "churned"
flow paying:
  when plan == "pro"
  tag "paid"
"""
    events = [
        identify("u", "2025-01-01T00:00:00Z", plan="pro"),
        identify("u", "2025-01-02T00:00:00Z", nickname=None),  # never set: nothing to remove
        identify("u", "2025-01-03T00:00:00Z", plan=None),
    ]
    tags = [
        (at, tag)
        for at, _, action, _, tag in _simulate(tmp_path, script, events)
        if action == "tag"
    ]
    assert tags == [("2025-01-01T00:00:00Z", "paid"), ("2025-01-03T00:00:00Z", "churned")]


def test_a_timer_comes_due_while_another_flow_waits_for_an_event(tmp_path: Path) -> None:
    # the reminder's wait ends at a time-driven instant where `waiting` still waits for `paid`
    script = """
flow waiting:
  on started
  wait for paid up to 7d else:
    tag "unpaid"
  tag "paid"

flow reminder:
  on started
  wait 1d
  tag "reminded"
"""
    events = [
        track("u", "started", "2025-01-01T00:00:00Z"),
        track("u", "paid", "2025-01-03T00:00:00Z"),
    ]
    effects = [e for e in _simulate(tmp_path, script, events) if e[2] in ("tag", "exit")]
    assert effects == [
        ("2025-01-02T00:00:00Z", "u", "tag", "reminder", "reminded"),
        ("2025-01-02T00:00:00Z", "u", "exit", "reminder", None),
        ("2025-01-03T00:00:00Z", "u", "tag", "waiting", "paid"),
        ("2025-01-03T00:00:00Z", "u", "exit", "waiting", None),
    ]


def test_the_last_instant_of_time_still_comes(tmp_path: Path) -> None:
    # 9999-12-29T23:59:59Z is the last instant a script may name (S008); `--until` past the
    # end of time runs the clock to it, so a wait until then ends there
    script = """
flow last:
  on started
  wait until 9999-12-29T23:59:59Z
  tag "at_the_end"
"""
    checked = check_text(tmp_path, script)
    assert checked.program is not None, [d.message for d in checked.diagnostics]
    events = [track("u", "started", "9999-12-01T00:00:00Z")]
    effects = run(checked.program, events, until="9999-12-31T00:00:00Z")
    assert [(e["at"], e["action"]) for e in effects if e["action"] != "enter"] == [
        ("9999-12-29T23:59:59Z", "tag"),
        ("9999-12-29T23:59:59Z", "exit"),
    ]


def test_a_wait_for_where_matches_the_bound_events_order_and_goes_on(tmp_path: Path) -> None:
    """Section 5.2: `wait for` resumes when a matching event arrives; with `event.NAME` in its
    `where` (section 4: the bound event's), the order the flow was entered for."""
    script = """
event checkout_started(order_id: text)
event order_completed(order_id: text)
flow f:
  on checkout_started
  wait for order_completed where order_id == event.order_id up to 1d else tag "timeout"
  tag "matched"
"""
    events = [
        track("u", "checkout_started", "2025-01-01T00:00:00Z", order_id="A"),
        track("u", "order_completed", "2025-01-01T01:00:00Z", order_id="B"),  # another order
        track("u", "order_completed", "2025-01-01T02:00:00Z", order_id="A"),  # this order
    ]
    effects = _simulate(tmp_path, script, events)
    assert [(e[0], e[2], e[4]) for e in effects] == [
        ("2025-01-01T00:00:00Z", "enter", None),
        ("2025-01-01T02:00:00Z", "tag", "matched"),
        ("2025-01-01T02:00:00Z", "exit", None),
    ]


def test_a_wait_reads_its_duration_and_target_from_the_profile(tmp_path: Path) -> None:
    """Section 5.2: `wait D` resumes after D (a computed D: 2 days, 1 second, 0: now) and
    `wait until EXPR` at that datetime, each read from the contact's traits."""
    script = """
trait delay: number
trait trial_end: datetime
flow later:
  on go
  wait delay * 1s
  tag "waited"
flow trial_ends:
  on trial
  wait until trial_end
  tag "trial_over"
"""
    events = [
        identify("u", "2025-01-01T00:00:00Z", delay=172800),
        identify("v", "2025-01-01T00:00:00Z", delay=1),
        identify("w", "2025-01-01T00:00:00Z", delay=0),
        identify("x", "2025-01-01T00:00:00Z", trial_end="2025-01-15T09:30:00Z"),
        *(track(c, "go", "2025-01-01T10:00:00Z") for c in "uvw"),
        track("x", "trial", "2025-01-01T10:00:00Z"),
    ]
    tags = {e[1]: e[0] for e in _simulate(tmp_path, script, events) if e[2] == "tag"}
    assert tags == {
        "u": "2025-01-03T10:00:00Z",
        "v": "2025-01-01T10:00:01Z",
        "w": "2025-01-01T10:00:00Z",
        "x": "2025-01-15T09:30:00Z",
    }


def test_a_wait_of_no_positive_duration_continues_at_once(tmp_path: Path) -> None:
    """Section 5.2: a computed `wait` duration that is negative or `none` (the trait is not
    set) waits for nothing: the flow goes on at that instant, never at an earlier one."""
    script = """
trait delay: number
flow later:
  on go
  wait delay * 1s
  tag "waited"
"""
    events = [
        identify("u", "2025-01-01T00:00:00Z", delay=-3600),
        *(track(c, "go", "2025-01-01T10:00:00Z") for c in "uv"),
    ]
    tags = {e[1]: e[0] for e in _simulate(tmp_path, script, events) if e[2] == "tag"}
    assert tags == {"u": "2025-01-01T10:00:00Z", "v": "2025-01-01T10:00:00Z"}


def test_a_check_that_holds_goes_on_and_one_that_fails_runs_its_else(tmp_path: Path) -> None:
    """Section 5.2: `check COND else STEP`: if COND holds now, the next step; otherwise the
    else steps, then the flow ends. `wait until` a datetime already past continues now."""
    script = """
trait plan: text
flow f:
  on go
  wait until 2024-06-01T00:00:00Z
  check plan == "pro" else tag "not_pro"
  tag "pro"
"""
    events = [
        identify("u", "2025-01-01T00:00:00Z", plan="pro"),
        identify("v", "2025-01-01T00:00:00Z", plan="free"),
        track("u", "go", "2025-01-01T10:00:00Z"),
        track("v", "go", "2025-01-01T10:00:00Z"),
    ]
    effects = [(e[1], e[2], e[4]) for e in _simulate(tmp_path, script, events)]
    assert effects == [
        ("u", "enter", None),
        ("u", "tag", "pro"),
        ("u", "exit", None),
        ("v", "enter", None),
        ("v", "tag", "not_pro"),
        ("v", "exit", None),
    ]


def test_wait_for_and_check_read_up_to_and_within_from_the_profile(tmp_path: Path) -> None:
    """Section 5.2: `wait for E up to D`: if D passes first, the else steps (D computed: 2
    days, or 0: at once); `check C within D`: C may come true within D, else the else steps
    when D has passed (D computed: 1 second, or 0: at once)."""
    script = """
trait wait_days: number
trait grace: number
flow f:
  on go
  wait for paid up to wait_days * 1d else tag "unpaid"
  tag "paid"
flow g:
  on start
  check "done" in tags within grace * 1s else tag "late"
  tag "in_time"
"""
    events = [
        identify("u", "2025-01-01T00:00:00Z", wait_days=2, grace=1),
        identify("v", "2025-01-01T00:00:00Z", wait_days=0, grace=0),
        *(track(c, e, "2025-01-01T10:00:00Z") for c in "uv" for e in ("go", "start")),
    ]
    tags = sorted((e[1], e[4], e[0]) for e in _simulate(tmp_path, script, events) if e[2] == "tag")
    assert tags == [
        ("u", "late", "2025-01-01T10:00:01Z"),
        ("u", "unpaid", "2025-01-03T10:00:00Z"),
        ("v", "late", "2025-01-01T10:00:00Z"),
        ("v", "unpaid", "2025-01-01T10:00:00Z"),
    ]


def test_tag_and_untag_read_the_tag_from_the_profile(tmp_path: Path) -> None:
    """`tag plan` tags the text of the trait `plan` (reference.md, steps: a tag is text,
    `tag vip` reads a trait named `vip`), and `untag plan` removes that tag."""
    script = """
trait plan: text
flow f:
  on go
  tag plan
  if "pro" in tags:
    tag "was_pro"
  untag plan
  if not ("pro" in tags):
    tag "pro_gone"
"""
    events = [
        identify("u", "2025-01-01T00:00:00Z", plan="pro"),
        track("u", "go", "2025-01-01T10:00:00Z"),
    ]
    tags = [e[4] for e in _simulate(tmp_path, script, events) if e[2] == "tag"]
    assert tags == ["pro", "was_pro", "pro_gone"]


def test_setting_a_trait_to_none_removes_it(tmp_path: Path) -> None:
    """`set TRAIT = EXPR` gives the trait the value of EXPR; `none` is a missing trait
    (section 7: `== none` tests presence), so `set coupon = none` removes the coupon, and
    is no error for a contact who never had one (`v`)."""
    script = """
trait coupon: text
flow f:
  on go
  set coupon = none
  if coupon == none:
    tag "no_coupon"
  else:
    tag "kept_coupon"
"""
    events = [
        identify("u", "2025-01-01T00:00:00Z", coupon="WELCOME"),
        identify("v", "2025-01-01T00:00:00Z", email="v@x"),
        track("u", "go", "2025-01-01T10:00:00Z"),
        track("v", "go", "2025-01-01T10:00:00Z"),
    ]
    tags = [(e[1], e[4]) for e in _simulate(tmp_path, script, events) if e[2] == "tag"]
    assert tags == [("u", "no_coupon"), ("v", "no_coupon")]


def test_a_wait_until_the_very_instant_does_not_wait(tmp_path: Path) -> None:
    """A `wait until` whose instant is now continues now (section 5.2: "now if past"): the
    enrollment runs on in the same pass, before the flows entered after it (simulate.md,
    one event: "run each touched enrollment until it waits or ends, ... the new ones in flow
    order"), not at a later pass of the same instant."""
    script = """
trait due: datetime
flow a:
  on go
  wait until due
  tag "a"
flow b:
  on go
  tag "b"
"""
    events = [
        identify("u", "2025-01-01T00:00:00Z", due="2025-01-01T10:00:00Z"),
        track("u", "go", "2025-01-01T10:00:00Z"),
    ]
    effects = [(e[0], e[2], e[3]) for e in _simulate(tmp_path, script, events)]
    at = "2025-01-01T10:00:00Z"
    assert effects == [
        (at, "enter", "a"),
        (at, "enter", "b"),
        (at, "tag", "a"),
        (at, "exit", "a"),
        (at, "tag", "b"),
        (at, "exit", "b"),
    ]


def test_a_trait_set_by_a_step_fires_a_when_trigger_at_that_instant(tmp_path: Path) -> None:
    """simulate.md: steps that change the profile (`set` among them) make the triggers be
    judged again at the same instant: `when plan == "pro"`, false since the contact's first
    event, fires at the instant another flow sets the trait, and a `check` waiting on it
    goes on then too."""
    script = """
trait plan: text
flow upgrade:
  on pay
  set plan = "pro"
flow welcome_pro:
  when plan == "pro"
  tag "pro_welcome"
flow trial:
  on start
  check plan == "pro" within 7d else tag "never_paid"
  tag "paid_in_trial"
"""
    events = [
        identify("u", "2025-01-01T00:00:00Z", plan="free"),
        track("u", "start", "2025-01-01T10:00:00Z"),
        track("u", "pay", "2025-01-02T10:00:00Z"),
    ]
    tags = [(e[0], e[4]) for e in _simulate(tmp_path, script, events) if e[2] == "tag"]
    assert tags == [
        ("2025-01-02T10:00:00Z", "paid_in_trial"),
        ("2025-01-02T10:00:00Z", "pro_welcome"),
    ]
