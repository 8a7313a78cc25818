"""Placeholder until the delivery branch lands: messages rendered in Jinja2's sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from leadlang.interpreter.templates import template_environment


class RenderError(Exception):
    pass


def render_message(message: dict[str, Any], variables: dict[str, Any]) -> dict[str, Any]:
    env = template_environment()
    out: dict[str, Any] = {}
    try:
        for name, field in message["fields"].items():
            value = field["value"]
            if field["file"]:
                value = (Path(message["dir"]) / value).read_text(encoding="utf-8")
            if isinstance(value, str):
                out[name] = env.from_string(value).render(variables)
            else:
                out[name] = value
    except (TemplateError, OSError) as exc:
        raise RenderError(str(exc)) from exc
    return out
