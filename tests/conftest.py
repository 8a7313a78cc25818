"""Shared fixtures: parse a script from a string, write scripts into a temporary folder, a
fresh PostgreSQL database, a recording HTTP receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from leadlang import ast
from leadlang.diagnostics import Diagnostic
from leadlang.source import Source
from leadlang.syntax import parse
from tests.receiver import Receiver

ParseText = Callable[..., tuple[ast.Module, list[Diagnostic]]]


@pytest.fixture
def parse_text() -> ParseText:
    """`parse_text(text, path="t.lead")` -> (module, diagnostics)."""

    def run(text: str, path: str = "t.lead") -> tuple[ast.Module, list[Diagnostic]]:
        return parse(Source(path, text))

    return run


@pytest.fixture
def write_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[dict[str, str]], Path]:
    """Write {relative path: text} under a temporary folder, made the current directory."""
    monkeypatch.chdir(tmp_path)

    def write(files: dict[str, str]) -> Path:
        for name, text in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return tmp_path

    return write


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """A fresh PostgreSQL database on the server of `LEADLANG_TEST_POSTGRES` (CI sets it;
    the test fails when it is set but unusable, and is skipped only when it is not set)."""
    from tests.serve_daemon import fresh_postgres

    with fresh_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store's URL: a SQLite file, then a fresh PostgreSQL database (`postgres_db`)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_db"))


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A started `Receiver` (tests/receiver.py), stopped after the test."""
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
