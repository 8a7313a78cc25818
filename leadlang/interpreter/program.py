"""The checked program: what the checker hands to the compiler.

A `Program` exists only for scripts with no errors. It gathers the declarations of every
loaded module into tables, with settings and score rules merged, and records for each name
in an expression what it refers to (see `scope.py`). The compiler reads this and nothing
earlier (no Lark, no file reading).
"""

from __future__ import annotations

import attrs

from leadlang import ast


@attrs.frozen(slots=True, kw_only=True)
class Cap:
    channel: str
    count: int
    per_seconds: int


@attrs.frozen(kw_only=True)
class Program:
    modules: tuple[ast.Module, ...]
    timezone: str = "UTC"
    quiet_hours: tuple[ast.Time, ast.Time] | None = None
    caps: tuple[Cap, ...] = ()
    events: dict[str, ast.EventDecl] = attrs.field(factory=dict)
    traits: dict[str, ast.TraitDecl] = attrs.field(factory=dict)
    score_rules: tuple[ast.ScoreRule, ...] = ()
    decay: ast.Decay | None = None
    score_max: float | None = None
    metrics: dict[str, ast.MetricDecl] = attrs.field(factory=dict)
    segments: dict[str, ast.SegmentDecl] = attrs.field(factory=dict)
    messages: dict[str, ast.MessageDecl] = attrs.field(factory=dict)
    flows: dict[str, ast.FlowDecl] = attrs.field(factory=dict)  # in source order
    # message name -> its channel ("email", "sms", "push")
    message_channels: dict[str, str] = attrs.field(factory=dict)
    # base directory of each message's module, for `file "..."` templates
    message_dirs: dict[str, str] = attrs.field(factory=dict)
    # trait name -> type ("number", "text", ..., or "unknown"), built-in traits included
    trait_types: dict[str, str] = attrs.field(factory=dict)
    # event name -> {property: type}, declared and built-in events
    event_params: dict[str, dict[str, str]] = attrs.field(factory=dict)
