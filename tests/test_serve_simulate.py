"""Same answers as simulate: each example's event log, shifted into the recent past and
posted to a real `leadlang serve` in one batch, gives a ledger equal byte for byte to
`leadlang simulate --until NOW` (RUNTIME.md section 3), on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.serve_daemon import Daemon

pytestmark = pytest.mark.timeout(120)
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "events.jsonl").exists())


def shifted_log(example: str, end: float) -> list[dict[str, object]]:
    """The example's events moved by whole days so the last one is a day before `end`."""
    lines = [
        orjson.loads(raw)
        for raw in (EXAMPLES / example / "events.jsonl").read_bytes().splitlines()
        if raw.strip()
    ]
    times = [
        datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()
        for line in lines
    ]
    days = int((end - 86400 - max(times)) // 86400)
    for line, t in zip(lines, times, strict=True):
        line["timestamp"] = (
            datetime.fromtimestamp(t + days * 86400, UTC).isoformat().replace("+00:00", "Z")
        )
    return lines


def simulate(example: str, log: Path, until: float) -> bytes:
    stamp = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "leadlang",
            "simulate",
            str(EXAMPLES / example),
            "--events",
            str(log),
            "--until",
            stamp,
        ],
        capture_output=True,
        check=True,
    )
    return result.stdout


def ledger_lines(db: str, cwd: Path) -> bytes:
    return subprocess.run(
        [sys.executable, "-m", "leadlang", "effects", "--db", db],
        capture_output=True,
        check=True,
        cwd=cwd,
    ).stdout


def run_example(example: str, tmp_path: Path, db: str | None) -> None:
    log = shifted_log(example, time.time())
    log_path = tmp_path / "events.jsonl"
    log_path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in log))
    # (the contactflow example's push message uses `secret("PUSH_SERVICE_TOKEN")`)
    env = {"PUSH_SERVICE_TOKEN": "test-token"}
    daemon = Daemon(tmp_path, [str(EXAMPLES / example)], db=db, env=env).start()
    try:
        response = daemon.post("/v1/batch", {"batch": log})
        assert response.status_code == 200, response.text
        daemon.wait_idle()
        # the ledger through the API equals the one `leadlang effects` prints, in another order
        api = daemon.ledger()
    finally:
        assert daemon.stop() == 0
    now = time.time()
    served = ledger_lines(daemon.db, tmp_path)
    expected = simulate(example, log_path, now)
    assert served.decode() == expected.decode()
    assert sorted(orjson.dumps({k: v for k, v in e.items() if k != "id"}) for e in api) == sorted(
        served.splitlines()
    )
    assert expected.strip(), "the example must have effects for this test to mean anything"


@pytest.mark.parametrize("example", NAMES)
def test_serve_equals_simulate_on_sqlite(example: str, tmp_path: Path) -> None:
    run_example(example, tmp_path, None)


@pytest.mark.parametrize("example", NAMES)
def test_serve_equals_simulate_on_postgresql(
    example: str, tmp_path: Path, postgres_db: str
) -> None:
    run_example(example, tmp_path, postgres_db)
