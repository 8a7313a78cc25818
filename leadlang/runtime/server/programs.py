"""The program serve runs: scripts checked and compiled into serve's IR, for start-up and reload.

`serve_ir` turns a checked program into the IR serve runs (with the declared event property
types beside it) and names the secrets its messages use that are not set. `load_scripts`
reads, checks and compiles the scripts again for a reload, and instead of exiting on a
problem returns it: the diagnostics (as `leadlang check --format json` gives them, and as
text for the log) or the missing secrets. `publish` stores a program as the one every
daemon of the store runs.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import orjson

from leadlang.interpreter.compile import compile_program
from leadlang.interpreter.program import Program
from leadlang.render import as_json, render
from leadlang.runtime.server.config import Config, resolve_secrets
from leadlang.runtime.store.sql import SqlStore

JSON = dict[str, Any]


@attrs.frozen
class Loaded:
    """What reading the scripts again gave: the IR, or why there is none."""

    ir: JSON | None
    error: str = ""  # one line: what is wrong
    diagnostics: list[JSON] = attrs.field(factory=list)  # as `leadlang check --format json`
    text: str = ""  # the diagnostics for people (the log)


def serve_ir(program: Program, config: Config) -> tuple[JSON, list[str]]:
    """The IR serve runs for a checked program, and the secrets its messages use that are
    set neither in the environment nor in the config."""
    ir = compile_program(program)
    _, missing = resolve_secrets(config, ir)
    # beside the IR (not part of its versions): the declared property types, applied to
    # stored events before the engine sees them, as simulate applies them to its log
    ir["event_types"] = {name: dict(params) for name, params in program.event_params.items()}
    return ir, missing


def missing_secrets(missing: list[str]) -> str:
    names = ", ".join(f"`{name}`" for name in missing)
    these = "it" if len(missing) == 1 else "them"
    return (
        f"the messages use {'secrets' if len(missing) > 1 else 'secret'} {names},"
        f" not set: set {these} in the environment or in the config's [secrets] table"
    )


def load_scripts(paths: list[str], config: Config) -> Loaded:
    """Read, check and compile the scripts at `paths` (CPU-bound: run it in a thread)."""
    from leadlang.interpreter.check import check_paths

    result = check_paths(list(paths))
    if result.usage_error:
        return Loaded(None, result.usage_error)
    errors = [d for d in result.diagnostics if d.is_error]
    if errors:
        count = f"{len(errors)} error{'s' * (len(errors) != 1)}"
        return Loaded(
            None,
            f"the scripts have {count}; the running version is kept",
            [as_json(d) for d in result.diagnostics],
            render(result.diagnostics, result.sources, "full", color=False),
        )
    if result.program is None:
        return Loaded(None, result.several_programs())
    ir, missing = serve_ir(result.program, config)
    if missing:
        return Loaded(None, missing_secrets(missing))
    return Loaded(ir)


async def publish(store: SqlStore, ir: JSON) -> int:
    """Store `ir` as the program every daemon of `store` runs (with its flow versions);
    returns its generation."""
    return await store.publish_program(
        orjson.dumps(ir).decode(),
        ((f["name"], f["version"], orjson.dumps(f).decode()) for f in ir["flows"]),
        time.time(),
    )
