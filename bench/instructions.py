"""Count the machine instructions `simulate` takes, a figure the machine's noise cannot move.

The shared VM's speed drifts by ±20% from run to run, so comparing two versions of the engine
by time needs many alternated runs. Instruction counts under `valgrind --tool=cachegrind` are
deterministic: this runs a 20,000-event workload (the generators of bench_simulate.py) twice
under valgrind, once only reading and compiling and once simulating too, and prints the
difference.

    python bench/instructions.py [--workload flowio|synthetic] [--events 20000]

Needs valgrind (`apt-get install valgrind`). To compare with another version of the package,
put that version's `leadlang` first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _instructions(argv: list[str]) -> int:
    valgrind = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
    ]
    done = subprocess.run(
        [*valgrind, *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr}")
    return int(found.group(1).replace(",", ""))


def child(workload: str, log: Path, simulate_too: bool) -> None:
    """Read and compile (and simulate): what runs under valgrind."""
    sys.path.insert(0, str(HERE))
    import bench_simulate as bench

    from leadlang.interpreter.compile import compile_program
    from leadlang.runtime.engine import Engine
    from leadlang.runtime.simulate import parse_until, read_events, simulate

    if workload == "flowio":
        program = bench.load_program([bench.FLOWIO])
    else:
        script = log.with_suffix(".lead")
        script.write_text(bench.SCRIPT)
        program = bench.load_program([script])
    ir = compile_program(program)  # type: ignore[arg-type]
    with log.open("rb") as handle:
        events = read_events(handle).events
    until = parse_until(None, events[-1].t)
    assert until is not None
    if simulate_too:
        simulate(Engine(ir), events, until, lambda effect: None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", choices=["flowio", "synthetic"], default="flowio")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--child", choices=["setup", "run"], help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.workload, Path(args.log), args.child == "run")
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    sys.path.insert(0, str(HERE))
    import bench_simulate as bench

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / f"{args.workload}.jsonl"
        generate = bench.generate_flowio if args.workload == "flowio" else bench.generate
        generate(log, args.events, args.events // 10, 7)
        base = [sys.executable, __file__, "--workload", args.workload, "--log", str(log)]
        setup = _instructions([*base, "--child", "setup"])
        total = _instructions([*base, "--child", "run"])
    print(
        f"{args.workload}: simulate of {args.events:,} events takes "
        f"{(total - setup) / 1e6:,.0f} M instructions"
    )


if __name__ == "__main__":
    main()
