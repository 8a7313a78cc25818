"""The standard library's documented decisions: Flowio audience boundaries, the slipped-away
rule, the score cap and decay, and the persona, industry and geography segments.

Each test simulates a small script that `use`s a std module against a few contacts and reads
the tags its one-line flows add.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from leadlang.cli import main

START = datetime(2025, 11, 3, 10, 0, tzinfo=UTC)


def _at(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _identify(uid: str, t: datetime, **traits: object) -> dict:
    return {"type": "identify", "userId": uid, "traits": traits, "timestamp": _at(t)}


def _track(uid: str, t: datetime, event: str, **props: object) -> dict:
    return {
        "type": "track",
        "userId": uid,
        "event": event,
        "properties": props,
        "timestamp": _at(t),
    }


def _page_views(uid: str, t: datetime, n: int) -> list[dict]:
    return [
        {
            "type": "page",
            "userId": uid,
            "properties": {},
            "timestamp": _at(t + timedelta(minutes=i)),
        }
        for i in range(n)
    ]


def _tags(tmp_path: Path, script: str, events: list[dict], until: str) -> dict[str, list]:
    """Simulate; returns {contact: [(tag, at), ...]}."""
    (tmp_path / "t.lead").write_text(script)
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            str(tmp_path / "t.lead"),
            "--events",
            str(tmp_path / "events.jsonl"),
            "--until",
            until,
        ],
    )
    assert result.exit_code == 0, result.output
    tags: dict[str, list] = defaultdict(list)
    for line in result.output.splitlines():
        effect = json.loads(line)
        if effect["action"] == "tag":
            tags[effect["contact"]].append((effect["tag"], effect["at"]))
    return tags


AUDIENCES = """\
use std.segments
when potential then tag "potential"
when need_nurturing then tag "need_nurturing"
when slipped_away then tag "slipped_away"
when impulse_buyer then tag "impulse_buyer"
"""


def test_flowio_audience_boundaries(tmp_path: Path) -> None:
    events = [
        _identify("at50", START, email="a@example.com"),
        *_page_views("at50", START, 25),  # 25 x 2 = 50: not over 50
        _identify("at52", START, email="b@example.com"),
        *_page_views("at52", START, 26),  # 52, window shopping
        _identify("edge50", START, email="e@example.com"),
        *_page_views("edge50", START, 20),  # 40
        _track("edge50", START + timedelta(days=6), "Form Submitted", form="f"),  # 50
        _identify("newcomer", START, email="c@example.com"),
        _identify("buyer", START, email="d@example.com"),
        _track("buyer", START, "Product Added", product_id="P1", price=40, quantity=1),
        _track("buyer", START + timedelta(minutes=1), "Checkout Started", order_id="O1"),
        _track("buyer", START + timedelta(minutes=2), "Order Completed", order_id="O1", total=40),
    ]
    tags = _tags(tmp_path, AUDIENCES, events, "+10d")
    # 52 with propensity 5% is need nurturing at the 26th view.
    assert tags["at52"][0] == ("need_nurturing", "2025-11-03T10:25:00Z")
    # Exactly 50 is low; a week idle later (decay to 40, no page view for 7 days) it slipped
    # away, at the decay step's instant.
    assert tags["at50"] == [("slipped_away", "2025-11-10T10:24:00Z")]
    # A score of exactly 50 (the form a day earlier kept it from decaying): slipped away at
    # the instant its last page view is 7 days old, because 50 counts as low.
    assert tags["edge50"] == [("slipped_away", "2025-11-10T10:19:00Z")]
    # A contact who never viewed a page has not slipped away.
    assert "newcomer" not in tags
    # Score 35 with propensity 73%: in none of Flowio's three audiences.
    assert tags["buyer"] == [("impulse_buyer", "2025-11-03T10:02:00Z")]


def test_score_is_capped_at_100_and_decays_10_a_week(tmp_path: Path) -> None:
    script = """\
use std.scoring
when score >= 100 then tag "full"
when score < 100 and "full" in tags then tag "dropped"
"""
    # 60 page views are worth 120 points, capped at 100. The last view is at 10:59; a week
    # idle later the score is 90 (uncapped, it would still be 110 and drop under 100 only
    # after three weeks).
    events = [_identify("x", START, email="x@example.com"), *_page_views("x", START, 60)]
    tags = _tags(tmp_path, script, events, "+8d")
    assert tags["x"] == [("full", "2025-11-03T10:49:00Z"), ("dropped", "2025-11-10T10:59:00Z")]


def test_persona_industry_and_geography(tmp_path: Path) -> None:
    script = """\
use std.segments
on page_viewed where decision_maker then tag "decision_maker"
on page_viewed where influencer then tag "influencer"
on page_viewed where user then tag "user"
on page_viewed where industry_finance then tag "finance"
on page_viewed where industry_healthcare then tag "healthcare"
on page_viewed where geo_americas then tag "americas"
on page_viewed where geo_emea then tag "emea"
on page_viewed where geo_apac then tag "apac"
on page_viewed where customer then tag "customer"
"""
    people = {
        "vp": {
            "role": "VP of Marketing",
            "timezone": "America/Chicago",
            "industry": "Credit Union",
        },
        "manager": {"role": "Marketing Manager", "country": "FR", "industry": "Hospital group"},
        "coordinator": {"role": "Marketing Coordinator", "timezone": "Asia/Tokyo", "country": "US"},
        "doctor": {"role": "Doctor", "customer_status": "customer"},  # not `cto`: whole words
        "unknown": {},
    }
    events = []
    for uid, traits in people.items():
        events += [_identify(uid, START, **traits), *_page_views(uid, START, 1)]
    tags = _tags(tmp_path, script, events, "+1h")
    got = {uid: sorted(tag for tag, _ in tags.get(uid, [])) for uid in people}
    assert got == {
        "vp": ["americas", "decision_maker", "finance"],
        "manager": ["emea", "healthcare", "influencer"],
        "coordinator": ["apac", "user"],  # the time zone wins over the country
        "doctor": ["customer", "user"],
        "unknown": [],  # missing role, industry and place: in no segment
    }
