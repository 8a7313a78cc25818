"""The JSON-lines driver: real files, one object per delivery, exactly once by key."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import attrs
import pytest

from leadlang.runtime.delivery.drivers.jsonl import JsonLinesDriver
from leadlang.runtime.delivery.outbox import Delivery, Outcome

pytestmark = pytest.mark.timeout(30)


def sms(n: int = 0, **changes: Any) -> Delivery:
    base = Delivery(
        key=f"{n:032x}",
        contact=f"c{n}",
        flow="loyalty",
        message="loyalty_sms",
        channel="sms",
        at="2025-11-03T10:00:00Z",
        to="+15550100",
        content={"text": f"25% off, contact {n}"},
        attempts=0,
    )
    return attrs.evolve(base, **changes)


def push(n: int = 0) -> Delivery:
    return attrs.evolve(
        sms(n),
        channel="push",
        message="loyalty_push",
        to=None,
        content={
            "url": "https://push.example.com/v1",
            "headers": {"Authorization": "Bearer SECRET-TOKEN"},
            "json": {"customer_id": f"c{n}", "n": n},
            "title": "Hi",
        },
    )


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run(driver: JsonLinesDriver, *deliveries: Delivery) -> list[Outcome]:
    async def go() -> list[Outcome]:
        try:
            return list(await asyncio.gather(*(driver.deliver(d) for d in deliveries)))
        finally:
            await driver.close()

    return asyncio.run(go())


def test_an_sms_line_has_the_specified_fields(tmp_path: Path) -> None:
    path = tmp_path / "outbox" / "sms.jsonl"
    assert run(JsonLinesDriver(path), sms(7)) == [Outcome.sent()]
    assert lines(path) == [
        {
            "at": "2025-11-03T10:00:00Z",
            "contact": "c7",
            "flow": "loyalty",
            "message": "loyalty_sms",
            "channel": "sms",
            "message_id": f"{7:032x}",
            "to": "+15550100",
            "text": "25% off, contact 7",
        }
    ]


def test_a_push_line_has_url_and_json_and_never_the_headers(tmp_path: Path) -> None:
    path = tmp_path / "push.jsonl"
    run(JsonLinesDriver(path), push(1))
    (row,) = lines(path)
    assert row["url"] == "https://push.example.com/v1"
    assert row["json"] == {"customer_id": "c1", "n": 1}
    assert row["title"] == "Hi" and row["to"] is None and row["message_id"] == f"{1:032x}"
    assert "headers" not in row
    assert "SECRET-TOKEN" not in path.read_text(encoding="utf-8")


def test_the_same_key_twice_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "sms.jsonl"
    driver = JsonLinesDriver(path)
    assert run(driver, sms(1), sms(2), sms(1, attempts=1)) == [Outcome.sent()] * 3
    assert run(driver, sms(1, attempts=2)) == [Outcome.sent()]
    assert [row["contact"] for row in lines(path)] == ["c1", "c2"]


def test_after_a_restart_the_file_says_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "sms.jsonl"
    run(JsonLinesDriver(path), sms(1), sms(2))
    # A crash between the write and the store's `sent`: the row comes back, attempts 0.
    assert run(JsonLinesDriver(path), sms(2), sms(3)) == [Outcome.sent()] * 2
    assert [row["contact"] for row in lines(path)] == ["c1", "c2", "c3"]


def test_a_half_line_left_by_a_crash_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "sms.jsonl"
    run(JsonLinesDriver(path), sms(1))
    with open(path, "ab") as file:
        file.write(json.dumps({"message_id": f"{2:032x}", "contact": "c2"}).encode()[:30])
    run(JsonLinesDriver(path), sms(2))  # the half-written send, retried
    assert [row["contact"] for row in lines(path)] == ["c1", "c2"]
    assert lines(path)[1]["text"] == "25% off, contact 2"


def test_concurrent_deliveries_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "sms.jsonl"
    big = [sms(n, content={"text": "x" * 5000 + str(n)}) for n in range(300)]
    assert set(run(JsonLinesDriver(path), *big, *big[:50])) == {Outcome.sent()}
    rows = lines(path)
    assert len(rows) == 300
    assert sorted(row["message_id"] for row in rows) == sorted(d.key for d in big)
    assert all(row["text"] == "x" * 5000 + row["contact"][1:] for row in rows)


def test_sms_and_push_sharing_a_file_share_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "all.jsonl"
    driver = JsonLinesDriver(path)
    run(driver, *(sms(n) for n in range(20)), *(push(100 + n) for n in range(20)))
    assert len(lines(path)) == 40


def test_a_rotated_file_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "sms.jsonl"
    driver = JsonLinesDriver(path)
    run(driver, sms(1))
    os.rename(path, tmp_path / "sms.jsonl.1")
    run(driver, sms(2))
    assert [row["contact"] for row in lines(path)] == ["c2"]


def test_the_keys_kept_in_memory_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "sms.jsonl"
    run(JsonLinesDriver(path), *(sms(n) for n in range(10)))
    driver = JsonLinesDriver(path, max_keys=4)
    run(driver, *(sms(n) for n in range(10, 20)))
    assert len(driver._file.hashes) == len(driver._file.order) == 4
    # The last keys are still recognised.
    run(driver, sms(19), sms(18))
    assert len(lines(path)) == 20


def test_content_that_is_not_json_fails_for_good(tmp_path: Path) -> None:
    outcome = run(JsonLinesDriver(tmp_path / "x.jsonl"), sms(1, content={"text": {1, 2}}))
    assert outcome[0].status == "failed"
    assert not (tmp_path / "x.jsonl").exists()


def test_a_hash_that_matches_is_confirmed_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sms.jsonl"
    driver = JsonLinesDriver(path)
    run(driver, sms(1))
    driver._file.hashes.add(hash(sms(2).key))  # as if sms(2)'s key collided with another's
    run(driver, sms(2))
    assert [row["contact"] for row in lines(path)] == ["c1", "c2"]
