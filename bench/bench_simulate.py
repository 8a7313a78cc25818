"""Benchmark `simulate`: 100,000 events from 10,000 contacts through realistic flows.

Prints events/s, the ratio to merely JSON-decoding the same lines with orjson, and peak
memory (tracemalloc) for a run holding 100,000 contacts. Deterministic (seeded).

    python bench/bench_simulate.py [--events 100000] [--contacts 10000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import orjson

from leadlang.interpreter.compile import compile_program
from leadlang.runtime.engine import Engine
from leadlang.runtime.simulate import parse_until, read_events, simulate

SCRIPT = """
use std.segments

settings:
  timezone "Europe/Paris"
  quiet hours 21:00 to 08:00
  cap email 2 per 1d
  cap sms 1 per 7d

message coupon:
  channel email
  subject "15% off"
  text "Hi {{ first_name }}"

message final_call:
  channel email
  subject "Last call"
  text "Last call"

message deal_a:
  channel email
  subject "A"
  text "A"

message deal_b:
  channel email
  subject "B"
  text "B"

message flash:
  channel sms
  text "Flash sale"

message thanks:
  channel email
  subject "Thanks"
  text "Thanks"

flow potential_offer:
  when potential
  reenter after 30d
  goal order_completed within 7d
  tag "audience_potential"
  send coupon
  wait 24h
  if not opened:
    send final_call
  wait until 12:00
  send flash

flow nurture_deals:
  when need_nurturing
  reenter after 30d
  split deal_test:
    50% a: send deal_a
    50% b: send deal_b
  check opened within 24h else send final_call

flow thank_buyers:
  on order_completed where total >= 20
  reenter always
  exit on unsubscribed
  send thanks
  wait for product_viewed up to 3d else:
    untag "buyer"
  tag "buyer"

when score > 50 and propensity < 60% then send "coupon" ; wait 24h ; check opened else send "final_call"
"""

EVENTS = [
    ("page", None, 40),
    ("track", "Product Viewed", 25),
    ("track", "Product Added", 12),
    ("track", "Checkout Started", 5),
    ("track", "Order Completed", 3),
    ("track", "message_opened", 8),
    ("track", "message_clicked", 3),
    ("identify", None, 4),
]


def generate(path: Path, n_events: int, n_contacts: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    start = datetime(2025, 11, 1, tzinfo=UTC).timestamp()
    span = 30 * 86400
    kinds = [k for k in EVENTS for _ in range(k[2])]
    times = sorted(start + rng.random() * span for _ in range(n_events))
    with path.open("wb") as out:
        for i, t in enumerate(times):
            user = f"user{rng.randrange(n_contacts)}"
            kind, name, _ = rng.choice(kinds)
            at = datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            line: dict[str, object] = {"type": kind, "userId": user, "timestamp": at}
            if kind == "identify" or i < n_contacts:
                line["type"] = "identify"
                line["traits"] = {"email": f"{user}@example.com", "first_name": user}
            elif kind == "track":
                line["event"] = name
                props: dict[str, object] = {"product_id": f"P{rng.randrange(50)}"}
                if name == "Order Completed":
                    props["total"] = rng.randrange(5, 300)
                if name and name.startswith("message_"):
                    props["message"] = rng.choice(["coupon", "deal_a", "deal_b"])
                line["properties"] = props
            out.write(orjson.dumps(line) + b"\n")


def load_program(script: Path) -> object:
    from leadlang.interpreter.check import check_paths

    result = check_paths([str(script)])
    errors = [d for d in result.diagnostics if d.is_error]
    if errors or result.program is None:
        raise SystemExit(f"bench script does not check: {errors}")
    return result.program


def run(events_path: Path, program_ir: dict[str, object]) -> tuple[float, float, int, int]:
    started = time.perf_counter()
    cpu_started = time.process_time()
    with events_path.open("rb") as handle:
        log = read_events(handle)
    until = parse_until(None, log.events[-1].t)
    assert until is not None
    count = 0

    def emit(effect: object) -> None:
        nonlocal count
        count += 1

    store = simulate(Engine(program_ir), log.events, until, emit)
    cpu = time.process_time() - cpu_started
    return time.perf_counter() - started, cpu, count, len(store.contacts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--memory-contacts", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        script = folder / "bench.lead"
        script.write_text(SCRIPT)
        program_ir = compile_program(load_program(script))  # type: ignore[arg-type]
        events_path = folder / "events.jsonl"
        generate(events_path, args.events, args.contacts)

        started = time.perf_counter()
        with events_path.open("rb") as handle:
            for line in handle:
                orjson.loads(line)
        decode = time.perf_counter() - started

        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
        elapsed, cpu, effects, contacts = run(events_path, program_ir)
        if args.profile:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        rate = args.events / elapsed
        print(f"simulate: {args.events:,} events, {contacts:,} contacts, {effects:,} effects")
        print(f"  {elapsed:.2f} s  {rate:,.0f} events/s  (target >= 50,000)")
        print(f"  CPU time {cpu:.2f} s: {args.events / cpu:,.0f} events per CPU second")
        print(
            f"  orjson decode only: {decode:.3f} s; simulate / decode time = {elapsed / decode:.1f}x"
        )

        mem_events = folder / "mem.jsonl"
        n = args.memory_contacts
        generate(mem_events, n, n, seed=11)  # every event its own contact's first: identify
        tracemalloc.start()
        run(mem_events, program_ir)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"memory: {n:,} contacts, peak {peak / 2**20:.0f} MB (tracemalloc; target < 500 MB)")


if __name__ == "__main__":
    main()
