"""`secret("NAME")` in a message, filled in by the http and webhook drivers at each attempt.

The daemon stores a message's `secret("NAME")` as the text `{{secret:NAME}}` (NAME an
environment-variable name: letters, digits, `_`, not starting with a digit), so the value is
never in the store, the ledger or the outbox files (RUNTIME.md section 4). A driver fills the
placeholders in at each attempt from the `secrets` mapping `make_drivers` was given, and any
error text it returns has the values put back as placeholders, so an outcome (stored on the
row, logged by the worker) never carries one.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{secret:([A-Za-z_][A-Za-z0-9_]*)\}\}")


def placeholder(name: str) -> str:
    """The stored form of `secret("NAME")`."""
    return "{{secret:" + name + "}}"


def defused(value: Any) -> Any:
    """`value` (text or JSON-like data from a contact: a trait, a property) with every
    `{{secret:` spelled `{{ secret:`, so no driver takes it for a placeholder: only the
    message's own `secret()` calls become values (the renderer applies this to whatever a
    template or an expression puts into a message)."""
    if isinstance(value, str):
        return value.replace("{{secret:", "{{ secret:") if "{{secret:" in value else value
    if isinstance(value, dict):
        return {defused(key): defused(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [defused(item) for item in value]
    return value


class MissingSecret(Exception):
    """A placeholder names a secret that is not set."""

    def __init__(self, name: str) -> None:
        super().__init__(f"secret `{name}` is not set")
        self.name = name


class Filler:
    """Fills placeholders in for one attempt and remembers the values, to redact errors.

    `allowed`, when given, is the names the message itself uses (the content's `secrets`
    list, from the compiled program): a placeholder naming any other secret is left as text,
    so a contact's trait rendered into the message cannot ask for one.
    """

    def __init__(self, secrets: Mapping[str, str], allowed: Collection[str] | None = None) -> None:
        self.secrets = secrets
        self.allowed = None if allowed is None else frozenset(allowed)
        self.used: dict[str, str] = {}  # name -> value filled in

    def text(self, value: str) -> str:
        if "{{secret:" not in value:
            return value
        return PLACEHOLDER.sub(self._fill, value)

    def data(self, value: Any) -> Any:
        """Strings anywhere inside JSON-like data (object keys stay as they are)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.data(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(item) for item in value]
        return value

    def redact(self, text: str) -> str:
        """`text` with every value filled in so far replaced by its placeholder."""
        for name, value in sorted(self.used.items(), key=lambda item: -len(item[1])):
            if value:
                text = text.replace(value, placeholder(name))
        return text

    def _fill(self, match: re.Match[str]) -> str:
        name = match.group(1)
        if self.allowed is not None and name not in self.allowed:
            return match.group(0)
        value = self.secrets.get(name)
        if value is None:
            raise MissingSecret(name)
        self.used[name] = value
        return value


def names_in(value: Any) -> set[str]:
    """The secrets the placeholders inside `value` (text or JSON-like data) name."""
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(names_in(item) for item in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(names_in(item) for item in value)) if value else set()
    return set()
