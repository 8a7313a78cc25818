"""serve's configuration: the TOML file (with `${VAR}` from the environment) over the defaults.

With no file at all serve runs on the embedded defaults: the store `sqlite:///leadlang.db`,
listening on 127.0.0.1:8484, email into the Maildir `outbox/`, SMS and push into
`outbox/sms.jsonl` and `outbox/push.jsonl`.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import attrs

DEFAULT_LISTEN = "127.0.0.1:8484"
DEFAULT_STORE = "sqlite:///leadlang.db"
DEFAULT_MAX_BACKLOG = 1_000_000
MAX_CONFIG_BYTES = 1 << 20  # a config is a page or two; more is not one
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class ConfigError(Exception):
    """The config cannot be used; the message says which setting and why."""


@attrs.frozen
class Config:
    listen: str = DEFAULT_LISTEN
    store: str = DEFAULT_STORE
    public_url: str | None = None
    write_keys: tuple[str, ...] = ()
    admin_token: str | None = None
    secret: str | None = None
    channels: dict[str, Any] = attrs.field(factory=dict)
    max_attempts: int = 8
    timeout: float = 15.0
    secrets: dict[str, str] = attrs.field(factory=dict)
    base_dir: Path = Path(".")
    processes: int | None = None  # 1: all in one process; 2: the back end in its own
    # accepted events not yet processed beyond which ingest answers 429 (0: no limit)
    max_backlog: int = DEFAULT_MAX_BACKLOG

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen)


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen `{text}`: expected HOST:PORT, e.g. 127.0.0.1:8484")
    return host.strip("[]") or "127.0.0.1", int(port)


def _expand(value: Any, where: str) -> Any:
    """`${VAR}` in every string, from the environment; an unset variable is an empty string
    (so `write_keys = ["${KEY}"]` with KEY unset means "none set")."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: os.environ.get(m.group(1), ""), value)
    if isinstance(value, list):
        return [_expand(v, where) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    return value


def _duration(value: Any, name: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf:
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f'{name} = {value!r}: expected a positive duration like "15s"')
    return float(match.group(1)) * _UNIT[match.group(2)]


def _credentials_from_environment() -> dict[str, Any]:
    """`[server]`'s credentials when the config does not set them: the documented lines
    `write_keys = ["${LEADLANG_WRITE_KEY}"]`, `admin_token = "${LEADLANG_ADMIN_TOKEN}"` and
    `secret = "${LEADLANG_SECRET}"` (an unset variable: none set)."""
    return {
        "write_keys": [os.environ.get("LEADLANG_WRITE_KEY", "")],
        "admin_token": os.environ.get("LEADLANG_ADMIN_TOKEN", ""),
        "secret": os.environ.get("LEADLANG_SECRET", ""),
    }


def load_config(path: str | None, db: str | None = None, listen: str | None = None) -> Config:
    """The config from `path` (None: the defaults), with `--db` and `--listen` over it."""
    # (given but empty, as `--db "$DATABASE_URL"` with the variable unset: not the default,
    # which would make, and serve from, a new store where nobody looks for it)
    if db == "":
        raise ConfigError("--db is empty: give a store URL, e.g. sqlite:///leadlang.db")
    if listen == "":
        raise ConfigError("--listen is empty: give HOST:PORT, e.g. 127.0.0.1:8484")
    data: dict[str, Any] = {}
    base = Path(".")
    if path is not None:
        try:
            with open(path, "rb") as handle:  # (a pipe too: `--config <(envsubst < t.toml)`)
                raw = handle.read(MAX_CONFIG_BYTES + 1)  # (`/dev/zero` took all memory)
            if len(raw) > MAX_CONFIG_BYTES:
                raise ConfigError(
                    f"cannot read config `{path}`: it is larger than {MAX_CONFIG_BYTES >> 20} MB"
                )
            data = tomllib.loads(raw.decode("utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config `{path}`: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config `{path}` is not valid TOML: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"config `{path}` is not valid TOML: it is not UTF-8 text "
                f"(invalid byte at offset {exc.start})"
            ) from None
        data = _expand(data, "")
    # the three credentials default to the variables the documented config reads, so that
    # they work without a file too (set: used; unset: generated and stored, as before)
    server = {**_credentials_from_environment(), **_table(data, "server")}
    store = _table(data, "store")
    delivery = _table(data, "delivery")
    channels = _table(data, "channels")
    write_keys = server.get("write_keys", [])
    if isinstance(write_keys, str):
        write_keys = [write_keys]
    if not isinstance(write_keys, list) or not all(isinstance(k, str) for k in write_keys):
        raise ConfigError("server.write_keys: expected a list of strings")
    attempts = delivery.get("max_attempts", 8)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise ConfigError("delivery.max_attempts: expected a whole number of at least 1")
    processes = server.get("processes")
    if processes is not None and (type(processes) is not int or processes not in (1, 2)):
        raise ConfigError("server.processes: 1 (everything in one process) or 2")
    backlog = server.get("max_backlog", DEFAULT_MAX_BACKLOG)
    if not isinstance(backlog, int) or isinstance(backlog, bool) or backlog < 0:
        raise ConfigError("server.max_backlog: expected a whole number of events (0: no limit)")
    config = Config(
        processes=processes,
        max_backlog=backlog,
        listen=listen or _text(server, "listen", "server") or DEFAULT_LISTEN,
        store=_with_pool(db or _text(store, "url", "store") or DEFAULT_STORE, store),
        public_url=(_text(server, "public_url", "server") or None),
        write_keys=tuple(k for k in write_keys if k),
        admin_token=_text(server, "admin_token", "server") or None,
        secret=_text(server, "secret", "server") or None,
        channels=dict(channels),  # (make_drivers refuses what it cannot drive)
        max_attempts=attempts,
        timeout=_duration(delivery.get("timeout", "15s"), "delivery.timeout"),
        secrets={k: str(v) for k, v in _table(data, "secrets").items()},
        base_dir=base,
    )
    if config.admin_token is not None and config.admin_token in config.write_keys:
        # a write key ships inside web pages and apps: it must never open the admin API
        raise ConfigError("server.admin_token: must differ from every write key")
    config.host_port  # noqa: B018 (validates `listen`)
    return config


def _with_pool(url: str, store: dict[str, Any]) -> str:
    """The store URL with `[store] pool_size` and `pool_timeout` as its parameters (the store
    takes them off the URL: `open_store`); a parameter already in the URL wins."""
    params: dict[str, str] = {}
    size = store.get("pool_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError("store.pool_size: expected a whole number of at least 1")
        params["pool_size"] = str(size)
    if store.get("pool_timeout") is not None:
        params["pool_timeout"] = f"{_duration(store['pool_timeout'], 'store.pool_timeout'):g}"
    try:
        given = parse_qs(urlsplit(url).query)
    except ValueError as exc:  # (`postgresql://[::1`: an IPv6 host without its bracket)
        raise ConfigError(f"not a database URL: `{url}`: {exc}") from None
    extra = urlencode({k: v for k, v in params.items() if k not in given})
    if not extra:
        return url
    return url + ("&" if "?" in url else "?") + extra


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _text(table: dict[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: expected a string")
    return value


def resolve_secrets(config: Config, program: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The secrets the drivers are given: those named by `secret("NAME")` in the program's
    messages and by `{{secret:NAME}}` in the config's `[channels]`, as ({name: value} from
    the config's `[secrets]` or else the environment, [names unset])."""
    from leadlang.runtime.delivery.drivers.placeholders import names_in

    names = {name for m in program["messages"].values() for name in m.get("secrets", ())}
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in sorted(names | names_in(config.channels)):
        value = config.secrets.get(name) or os.environ.get(name)
        if value:
            found[name] = value
        else:
            missing.append(name)
    return found, missing
