"""The delivery policy, in order: consent, address, quiet hours, caps (LANGUAGE.md section 6)."""

from __future__ import annotations

from pathlib import Path

from checking import check_text
from engine_build import flow, on, program, send, time
from engine_run import actions, identify, run, track

from leadlang.interpreter.program import Cap


def _prog(**kw: object) -> object:
    return program(
        messages={"hello": "email", "text": "sms"},
        flows=[flow("f", [on("go")], [send("hello")]), flow("g", [on("sms_go")], [send("text")])],
        **kw,  # type: ignore[arg-type]
    )


def test_send_with_address_and_consent() -> None:
    effects = run(
        _prog(),
        [
            identify("u", "2025-01-01T00:00:00Z", email="u@x"),
            track("u", "go", "2025-01-01T01:00:00Z"),
        ],
    )
    assert ("2025-01-01T01:00:00Z", "send", "f", "s0", "email", "hello") in actions(
        effects, "flow", "step", "channel", "message"
    )


def test_missing_address_is_skipped_and_the_flow_goes_on() -> None:
    effects = run(
        _prog(),
        [
            identify("u", "2025-01-01T00:00:00Z", email="u@x"),
            track("u", "sms_go", "2025-01-01T01:00:00Z"),
        ],
    )
    assert actions(effects, "flow", "reason") == [
        ("2025-01-01T01:00:00Z", "enter", "g", None),
        ("2025-01-01T01:00:00Z", "skip", "g", "no_address"),
        ("2025-01-01T01:00:00Z", "exit", "g", "done"),
    ]


def test_an_address_that_is_blank_or_no_text_is_no_address() -> None:
    # Delivery needs a text to send to: `"email": 5`, `true`, a list or "  " (as forms and
    # CRMs send them) skip with no_address; serve would have queued a send to "5". A phone
    # may be a whole number.
    odd: list[object] = ["  ", 5, True, ["a@x"], {"work": "a@x"}]
    events = [identify(f"u{i}", "2025-01-01T00:00:00Z", email=v) for i, v in enumerate(odd)]
    events += [track(f"u{i}", "go", "2025-01-01T01:00:00Z") for i in range(len(odd))]
    events += [identify("ok", "2025-01-01T00:00:00Z", email="ok@x", phone=33612345678)]
    events += [
        track("ok", "go", "2025-01-01T01:00:00Z"),
        track("ok", "sms_go", "2025-01-01T01:00:00Z"),
    ]
    outcome = {
        (e["contact"], e["channel"]): (e["action"], e.get("reason"))
        for e in run(_prog(), events)
        if e["action"] in ("send", "skip")
    }
    assert outcome == {
        **{(f"u{i}", "email"): ("skip", "no_address") for i in range(len(odd))},
        ("ok", "email"): ("send", None),
        ("ok", "sms"): ("send", None),
    }


def test_unsubscribed_trait_and_channel_events() -> None:
    base = [identify("u", "2025-01-01T00:00:00Z", email="u@x", phone="+1")]
    unsub_sms = track("u", "unsubscribed", "2025-01-01T00:10:00Z", channel="sms")
    effects = run(
        _prog(),
        [
            *base,
            unsub_sms,
            track("u", "go", "2025-01-01T01:00:00Z"),
            track("u", "sms_go", "2025-01-01T01:00:00Z"),
        ],
    )
    kinds = [
        (e["message"], e["action"], e.get("reason"))
        for e in effects
        if e["action"] in ("send", "skip")
    ]
    assert kinds == [("hello", "send", None), ("text", "skip", "unsubscribed")]
    # A later `subscribed` (no channel: every channel) lifts it.
    resub = track("u", "subscribed", "2025-01-01T00:20:00Z")
    effects = run(_prog(), [*base, unsub_sms, resub, track("u", "sms_go", "2025-01-01T01:00:00Z")])
    assert [e["action"] for e in effects if e.get("message") == "text"] == ["send"]
    trait = identify("u", "2025-01-01T00:30:00Z", unsubscribed=True)
    effects = run(_prog(), [*base, trait, track("u", "go", "2025-01-01T01:00:00Z")])
    assert [(e["action"], e.get("reason")) for e in effects if e.get("message")] == [
        ("skip", "unsubscribed")
    ]


def test_quiet_hours_defer_to_the_local_end_across_dst() -> None:
    # New York springs forward on 2025-03-09 at 02:00. 03:00Z on the 9th is 22:00 EST on the
    # 8th, inside 21:00-08:00; the window ends at 08:00 EDT = 12:00Z (not 13:00Z).
    prog = _prog(quiet_hours=(time(21), time(8)))
    events = [
        identify("u", "2025-03-01T00:00:00Z", email="u@x", timezone="America/New_York"),
        track("u", "go", "2025-03-09T03:00:00Z"),
    ]
    effects = run(prog, events)
    assert actions(effects, "flow") == [
        ("2025-03-09T03:00:00Z", "enter", "f"),
        ("2025-03-09T12:00:00Z", "send", "f"),
        ("2025-03-09T12:00:00Z", "exit", "f"),
    ]


def test_quiet_hours_use_settings_timezone_without_a_trait() -> None:
    # Paris in winter is UTC+1: 07:30Z is 08:30 local, outside 21:00-08:00; 06:30Z is inside.
    prog = _prog(quiet_hours=(time(21), time(8)), timezone="Europe/Paris")
    events = [
        identify("u", "2025-01-01T00:00:00Z", email="u@x"),
        track("u", "go", "2025-01-10T06:30:00Z"),
    ]
    sends = [e["at"] for e in run(prog, events) if e["action"] == "send"]
    assert sends == ["2025-01-10T07:00:00Z"]


def test_cap_counts_sends_in_the_rolling_window() -> None:
    prog = program(
        messages={"a": "email"},
        flows=[flow("f", [on("go"), _always()], [send("a")])],
        caps=[Cap(channel="email", count=2, per_seconds=86400)],
    )
    times = [
        "2025-01-01T00:00:00Z",
        "2025-01-01T01:00:00Z",
        "2025-01-01T02:00:00Z",
        "2025-01-02T00:00:00Z",
    ]
    events = [identify("u", "2024-12-31T00:00:00Z", email="u@x")] + [
        track("u", "go", t) for t in times
    ]
    effects = run(prog, events)
    # The 4th is exactly 1d after the 1st, which has left the window (now - 1d, now].
    assert [(e["at"], e["action"]) for e in effects if e["action"] in ("send", "skip")] == [
        ("2025-01-01T00:00:00Z", "send"),
        ("2025-01-01T01:00:00Z", "send"),
        ("2025-01-01T02:00:00Z", "skip"),
        ("2025-01-02T00:00:00Z", "send"),
    ]


def _always() -> object:
    from engine_build import S

    from leadlang import ast

    return ast.Reenter(mode="always", after=None, span=S)


def test_every_cap_on_a_channel_applies() -> None:
    """A daily and a weekly cap on email: a send is skipped when either is reached."""
    prog = program(
        messages={"a": "email", "t": "sms"},
        flows=[
            flow("f", [on("go"), _always()], [send("a")]),
            flow("g", [on("text"), _always()], [send("t")]),
        ],
        caps=[
            Cap(channel="email", count=1, per_seconds=86400),
            Cap(channel="email", count=3, per_seconds=7 * 86400),
            Cap(channel="sms", count=5, per_seconds=86400),
        ],
    )
    days = ["01", "01", "02", "03", "04", "04", "08"]
    events = [identify("u", "2024-12-31T00:00:00Z", email="u@x", phone="+1")]
    events += [track("u", "go", f"2025-01-{day}T09:00:00Z") for day in days]
    events += [track("u", "text", "2025-01-04T10:00:00Z")]  # another channel's caps only
    effects = run(prog, events)
    assert [
        (e["at"][:10], e["action"], e.get("reason"))
        for e in effects
        if e["action"] in ("send", "skip")
    ] == [
        ("2025-01-01", "send", None),
        ("2025-01-01", "skip", "capped"),  # the daily cap
        ("2025-01-02", "send", None),
        ("2025-01-03", "send", None),
        ("2025-01-04", "skip", "capped"),  # the weekly cap (3 in 7 days), not the daily
        ("2025-01-04", "skip", "capped"),
        ("2025-01-04", "send", None),  # sms
        ("2025-01-08", "send", None),  # 1 Jan has left the week: 2 in the window
    ]


def test_a_channel_subscribed_lifts_an_unsubscribe_from_every_channel_for_it_alone() -> None:
    # Unsubscribed from everything (no `channel`), then subscribed again to email only.
    events = [
        identify("u", "2025-01-01T00:00:00Z", email="u@x", phone="+1"),
        track("u", "unsubscribed", "2025-01-01T00:10:00Z"),
        track("u", "subscribed", "2025-01-01T00:20:00Z", channel="email"),
        track("u", "go", "2025-01-01T01:00:00Z"),
        track("u", "sms_go", "2025-01-01T01:00:00Z"),
    ]
    outcome = [
        (e["message"], e["action"], e.get("reason"))
        for e in run(_prog(), events)
        if e["action"] in ("send", "skip")
    ]
    assert outcome == [("hello", "send", None), ("text", "skip", "unsubscribed")]


def test_an_unsubscribed_trait_written_as_text_counts() -> None:
    # Forms and CRMs often send booleans as text: "true" in any case is true, "false" is not.
    events = [
        identify("yes", "2025-01-01T00:00:00Z", email="y@x", unsubscribed="True"),
        identify("no", "2025-01-01T00:00:00Z", email="n@x", unsubscribed="false"),
        track("yes", "go", "2025-01-01T01:00:00Z"),
        track("no", "go", "2025-01-01T01:00:00Z"),
    ]
    outcome = {
        e["contact"]: (e["action"], e.get("reason"))
        for e in run(_prog(), events)
        if e["action"] in ("send", "skip")
    }
    assert outcome == {"yes": ("skip", "unsubscribed"), "no": ("send", None)}


def test_a_consent_event_whose_channel_is_no_text_counts_for_every_channel() -> None:
    """docs/language.md, rule 1: a `channel` that is not a text (here a list) counts as no
    channel, so the event covers every channel: the unsubscribe alone stops the email, and a
    later subscribe of the same kind brings it back. The run never breaks on it."""
    unsubscribe = track("u", "unsubscribed", "2025-01-01T00:10:00Z", channel=["sms"])
    history = [identify("u", "2025-01-01T00:00:00Z", email="u@x"), unsubscribe]
    go = track("u", "go", "2025-01-01T01:00:00Z")
    effects = run(_prog(), [*history, go])
    assert [e["action"] for e in effects] == ["enter", "skip", "exit"]
    assert effects[1]["reason"] == "unsubscribed"
    subscribe = track("u", "subscribed", "2025-01-01T00:20:00Z", channel=7)
    effects = run(_prog(), [*history, subscribe, go])
    assert [e["action"] for e in effects] == ["enter", "send", "exit"]
    assert effects[-1]["reason"] == "done"


def test_a_consent_event_names_its_channel_in_any_case_and_a_blank_one_means_every_channel() -> (
    None
):
    """`"channel": "Email"` (as CRMs write it) is the email channel, and a blank `channel`
    is none: an unsubscribe the engine cannot place stops every channel. (Both were kept as
    channels of their own, matching no message: the email went out.)"""
    events = [
        identify("cased", "2025-01-01T00:00:00Z", email="c@x", phone="+1"),
        track("cased", "unsubscribed", "2025-01-01T00:10:00Z", channel=" Email "),
        identify("blank", "2025-01-01T00:00:00Z", email="b@x", phone="+1"),
        track("blank", "unsubscribed", "2025-01-01T00:10:00Z", channel=""),
        identify("back", "2025-01-01T00:00:00Z", email="s@x", phone="+1"),
        track("back", "unsubscribed", "2025-01-01T00:10:00Z", channel="SMS"),
        track("back", "subscribed", "2025-01-01T00:20:00Z", channel="sms"),
    ]
    for contact in ("cased", "blank", "back"):
        events += [
            track(contact, "go", "2025-01-01T01:00:00Z"),
            track(contact, "sms_go", "2025-01-01T01:00:00Z"),
        ]
    outcome = {
        (e["contact"], e["message"]): (e["action"], e.get("reason"))
        for e in run(_prog(), events)
        if e["action"] in ("send", "skip")
    }
    assert outcome == {
        ("cased", "hello"): ("skip", "unsubscribed"),
        ("cased", "text"): ("send", None),
        ("blank", "hello"): ("skip", "unsubscribed"),
        ("blank", "text"): ("skip", "unsubscribed"),
        ("back", "hello"): ("send", None),
        ("back", "text"): ("send", None),
    }


def test_a_subscribed_later_in_the_same_second_wins_across_timers_between(
    tmp_path: Path,
) -> None:
    """Section 6: consent is the later of the last `unsubscribed` and `subscribed`, and input
    order breaks ties of one second (simulate.md, order of work). The `unsubscribed` here
    starts a flow whose two waits of 0 days end at that very second, so two timers fire
    between the two events (a due timer fires before an event at its instant): the
    `subscribed` that follows them is still the later one, and the next send goes out."""
    script = """
trait gap: number
message hello:
  channel email
  subject "hi"
  text "hi"
flow on_leave:
  on unsubscribed
  wait for never_sent up to gap * 1d else:
    wait for never_sent up to gap * 1d
flow greet:
  on go
  send hello
"""
    result = check_text(tmp_path, script)
    assert result.program is not None, [d.message for d in result.diagnostics]
    effects = run(
        result.program,
        [
            identify("u", "2025-01-01T00:00:00Z", email="u@x", gap=0),
            track("u", "browsed", "2025-01-01T00:01:00Z"),
            track("u", "browsed", "2025-01-01T00:02:00Z"),
            track("u", "unsubscribed", "2025-01-01T00:10:00Z"),
            track("u", "subscribed", "2025-01-01T00:10:00Z"),
            track("u", "go", "2025-01-01T01:00:00Z"),
        ],
    )
    assert actions(effects, "flow", "reason")[-3:] == [
        ("2025-01-01T01:00:00Z", "enter", "greet", None),
        ("2025-01-01T01:00:00Z", "send", "greet", None),
        ("2025-01-01T01:00:00Z", "exit", "greet", "done"),
    ]
