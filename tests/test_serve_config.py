"""serve's config (RUNTIME.md section 1): `${VAR}` from the environment, the defaults, and a
write key that can never be the admin token."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from leadlang.cli import main
from leadlang.runtime.server.config import ConfigError, load_config
from leadlang.runtime.store.sql import StoreError, open_store
from tests.serve_daemon import ADMIN_TOKEN, GREET, WRITE_KEY, Daemon


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "leadlang.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def serve_greet(tmp_path: Path, config: str) -> subprocess.CompletedProcess[bytes]:
    """`leadlang serve greet.lead --config CONFIG` in `tmp_path`, to its end (a refusal)."""
    return subprocess.run(
        [sys.executable, "-m", "leadlang", "serve", "greet.lead", "--config", config],
        cwd=tmp_path,
        capture_output=True,
        timeout=50,
    )


CREDENTIAL_VARIABLES = ("LEADLANG_WRITE_KEY", "LEADLANG_ADMIN_TOKEN", "LEADLANG_SECRET")


def test_defaults_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    config = load_config(None)
    assert config.listen == "127.0.0.1:8484" and config.store == "sqlite:///leadlang.db"
    assert config.write_keys == () and config.admin_token is None


def test_variables_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LL_KEY", "k1")
    monkeypatch.setenv("LL_ADMIN", "a1")
    monkeypatch.delenv("LL_UNSET", raising=False)
    path = write(
        tmp_path,
        '[server]\nwrite_keys = ["${LL_KEY}", "${LL_UNSET}"]\nadmin_token = "${LL_ADMIN}"\n',
    )
    config = load_config(path, db="sqlite:///x.db", listen="127.0.0.1:9")
    assert config.write_keys == ("k1",) and config.admin_token == "a1"
    assert config.store == "sqlite:///x.db" and config.listen == "127.0.0.1:9"


def test_the_documented_variables_set_the_credentials_without_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`LEADLANG_WRITE_KEY`, `LEADLANG_ADMIN_TOKEN` and `LEADLANG_SECRET` are what the
    documented config reads; with no config (or one without those lines) they are used as
    they are, and a config's own line wins."""
    monkeypatch.setenv("LEADLANG_WRITE_KEY", "wk-env")
    monkeypatch.setenv("LEADLANG_ADMIN_TOKEN", "admin-env")
    monkeypatch.setenv("LEADLANG_SECRET", "secret-env")
    for config in (load_config(None), load_config(write(tmp_path, "[server]\n"))):
        assert config.write_keys == ("wk-env",)
        assert config.admin_token == "admin-env" and config.secret == "secret-env"
    own = load_config(write(tmp_path, '[server]\nwrite_keys = ["own"]\nadmin_token = "mine"\n'))
    assert own.write_keys == ("own",) and own.admin_token == "mine"
    assert own.secret == "secret-env"


@pytest.mark.timeout(120)
def test_serve_without_a_config_takes_its_keys_from_the_environment(tmp_path: Path) -> None:
    """The daemon itself, started with no `--config`: the write key and the admin token of
    the environment open ingest and the admin API, and none is generated or printed."""
    (tmp_path / "greet.lead").write_text(GREET, encoding="utf-8")
    env = {"LEADLANG_WRITE_KEY": "wk-from-env", "LEADLANG_ADMIN_TOKEN": "admin-from-env"}
    served = Daemon(tmp_path, [str(tmp_path / "greet.lead")], env=env, config="")
    served.config_path.unlink()  # (no file at all: embedded defaults)
    served.start()
    try:
        ok = served.post("/v1/track", {"userId": "u1", "event": "signed_up"}, key="wk-from-env")
        assert ok.status_code == 200, ok.text
        assert served.post("/v1/track", {"userId": "u1", "event": "x"}).status_code == 401
        assert served.admin("/v1/flows", token="admin-from-env").status_code == 200
        assert served.admin("/v1/flows").status_code == 401
        assert not [line for line in served.output if "generated" in line]
    finally:
        assert served.stop() == 0, "\n".join(served.output)


@pytest.mark.parametrize(
    "text",
    [
        '[server]\nwrite_keys = ["same"]\nadmin_token = "same"\n',
        '[server]\nwrite_keys = "same"\nadmin_token = "same"\n',
    ],
)
def test_a_write_key_is_never_the_admin_token(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="admin_token"):
        load_config(write(tmp_path, text))


@pytest.mark.timeout(60)
def test_serve_refuses_such_a_config_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "greet.lead").write_text(GREET, encoding="utf-8")
    path = write(tmp_path, '[server]\nwrite_keys = ["same"]\nadmin_token = "same"\n')
    result = serve_greet(tmp_path, path)
    assert result.returncode == 2
    assert b"admin_token" in result.stderr
    assert not (tmp_path / "leadlang.db").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processes", [1, 2])
def test_serve_refuses_a_channel_it_cannot_drive_with_exit_2(
    tmp_path: Path, processes: int
) -> None:
    # (SMTP needs a sender: with two processes the delivery process would otherwise fail at
    # each start while the daemon answered requests)
    (tmp_path / "greet.lead").write_text(GREET, encoding="utf-8")
    path = write(
        tmp_path,
        f"[server]\nprocesses = {processes}\n"
        '[channels.email]\ndriver = "smtp"\nhost = "127.0.0.1"\nport = 2525\n',
    )
    result = serve_greet(tmp_path, path)
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "error: channel email (`smtp` driver): `from` is required"
    )
    assert not (tmp_path / "leadlang.db").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("channels", "error"),
    [
        ('email = "smtp"', "[channels.email] must be a table"),
        ("sms = false", "[channels.sms] must be a table"),
        (
            'fax = "+15550100"',
            "unknown channel `fax` in [channels]: the channels are email, sms, push",
        ),
    ],
)
def test_a_channel_that_is_not_a_table_is_refused_not_ignored(
    tmp_path: Path, channels: str, error: str
) -> None:
    """`email = "smtp"` is no SMTP channel: refused, not silently the default maildir."""
    (tmp_path / "greet.lead").write_text(GREET, encoding="utf-8")
    result = serve_greet(
        tmp_path, write(tmp_path, f"[server]\nprocesses = 1\n[channels]\n{channels}\n")
    )
    assert result.returncode == 2
    assert result.stderr.decode().strip() == f"error: {error}"
    assert not (tmp_path / "leadlang.db").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://", "sqlite:///:memory:"])
def test_a_sqlite_url_without_a_file_is_refused_in_one_line(tmp_path: Path, url: str) -> None:
    (tmp_path / "greet.lead").write_text(GREET, encoding="utf-8")
    path = write(tmp_path, f'[store]\nurl = "{url}"\n')
    result = serve_greet(tmp_path, path)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "a SQLite store is a file" in lines[0], lines


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", [["effects"], ["outbox", "list"]])
def test_reading_commands_do_not_make_a_store_that_is_not_there(
    tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "nowhere" / "x.db"
    result = subprocess.run(
        [sys.executable, "-m", "leadlang", *command, "--db", f"sqlite:///{missing}"],
        capture_output=True,
        timeout=50,
    )
    assert result.returncode == 2
    assert result.stderr.decode().strip() == f"error: there is no store at `{missing}` " + (
        "(`leadlang serve` makes it)"
    )
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.timeout(60)
def test_the_start_up_summary_says_where_each_configured_channel_delivers(
    tmp_path: Path,
) -> None:
    (tmp_path / "greet.lead").write_text(GREET, encoding="utf-8")
    config = (
        f'[server]\nwrite_keys = ["{WRITE_KEY}"]\nadmin_token = "{ADMIN_TOKEN}"\n'
        '[channels.email]\ndriver = "maildir"\npath = "mail"\nfrom = "Shop <s@example.com>"\n'
        '[channels.sms]\ndriver = "http"\nurl = "https://user:pw@sms.example.com:8443/v1?t=x"\n'
    )
    daemon = Daemon(tmp_path, [str(tmp_path / "greet.lead")], config=config).start()
    assert daemon.stop() == 0
    shown = [line.split() for line in daemon.output if line.startswith("  ")]
    assert ["email", "maildir", "mail/"] in shown
    assert ["sms", "http", "https://sms.example.com:8443"] in shown  # (no user, path, query)
    assert ["push", "outbox/push.jsonl"] in shown


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", [["effects"], ["diff", "greet.lead", "greet.lead"]])
def test_reading_commands_refuse_a_database_that_is_not_a_store(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "greet.lead").write_text(GREET, encoding="utf-8")
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE x (a)")
    conn.commit()
    conn.close()
    result = subprocess.run(
        [sys.executable, "-m", "leadlang", *command, "--db", f"sqlite:///{other}"],
        capture_output=True,
        cwd=tmp_path,
        timeout=50,
    )
    assert result.returncode == 2, result
    assert "is not a leadlang store" in result.stderr.decode()
    conn = sqlite3.connect(other)
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    conn.close()
    assert tables == ["x"]  # nothing written into it


@pytest.mark.parametrize(
    "query",
    ["pool_size=0", "pool_size=two", "pool_timeout=0", "pool_timeout=-1", "pool_timeout=inf"],
)
def test_a_pool_of_no_connections_or_no_patience_is_refused(tmp_path: Path, query: str) -> None:
    """`?pool_size=N` is at least 1 and `?pool_timeout=SECONDS` a positive, finite number."""
    with pytest.raises(StoreError, match="pool_size must be a whole number of at least 1"):
        asyncio.run(open_store(f"sqlite:///{tmp_path / 'store.db'}?{query}"))


@pytest.mark.parametrize("url", ["postgresql://[::1", "postgresql://u:p@[zz]/x"])
def test_a_url_whose_host_cannot_be_read_is_a_config_error(tmp_path: Path, url: str) -> None:
    # (urllib raises ValueError on a bracketed host it cannot read: it was a traceback)
    with pytest.raises(ConfigError, match=r"^not a database URL: `postgresql://"):
        load_config(None, url)
    with pytest.raises(ConfigError, match=r"^not a database URL: `postgresql://"):
        load_config(write(tmp_path, f'[store]\nurl = "{url}"\n'), None)
    result = subprocess.run(
        [sys.executable, "-m", "leadlang", "effects", "--db", url],
        capture_output=True,
        timeout=50,
    )
    assert result.returncode == 2
    assert result.stderr.decode().startswith(f"error: not a database URL: `{url}`: ")
    assert b"Traceback" not in result.stderr


def test_a_config_that_is_not_utf8_is_not_valid_toml(tmp_path: Path) -> None:
    path = tmp_path / "leadlang.toml"
    path.write_bytes(b'[store]\nurl = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value) == (
        f"config `{path}` is not valid TOML: it is not UTF-8 text (invalid byte at offset 18)"
    )


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_a_delivery_timeout_that_is_not_a_finite_number_is_refused(
    tmp_path: Path, value: str
) -> None:
    # (`inf` passed: a delivery attempt that never times out, put back at `now + inf`)
    with pytest.raises(ConfigError, match=rf"^delivery.timeout = {value}: expected a positive"):
        load_config(write(tmp_path, f"[delivery]\ntimeout = {value}\n"))


@pytest.mark.timeout(60)
def test_a_store_whose_folder_cannot_be_made_is_refused_in_one_line(tmp_path: Path) -> None:
    # (a file where the store's folder goes, or a name too long: an OSError traceback; as a
    # user without the right to make the folder, `/var/lib/leadlang/x.db`, the same)
    (tmp_path / "greet.lead").write_text(GREET, encoding="utf-8")
    for url, reason in (
        (f"sqlite:///{tmp_path / 'greet.lead' / 'x.db'}", f"File exists (`{tmp_path}/greet.lead`)"),
        (f"sqlite:///{tmp_path / ('a' * 300) / 'x.db'}", "File name too long"),
    ):
        result = serve_greet(tmp_path, write(tmp_path, f'[store]\nurl = "{url}"\n'))
        assert result.returncode == 2, result.stderr.decode()[-2000:]
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cannot open the store "), lines
        assert reason in lines[0]


def test_an_empty_db_or_listen_is_refused_not_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (`--db "$DATABASE_URL"` with the variable unset: serve made and ran on a new
    # `leadlang.db` here, diff skipped its replay, effects looked in the wrong store)
    with pytest.raises(ConfigError, match=r"^--db is empty: give a store URL"):
        load_config(None, "")
    with pytest.raises(ConfigError, match=r"^--listen is empty: give HOST:PORT"):
        load_config(None, None, "")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "greet.lead").write_text(GREET, encoding="utf-8")
    for args in (["effects", "--db", ""], ["diff", "greet.lead", "greet.lead", "--db", ""]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output == (
            "error: --db is empty: give a store URL, e.g. sqlite:///leadlang.db\n"
        )
    assert not (tmp_path / "leadlang.db").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("channel", "error"),
    [
        (
            'email]\ndriver = "maildir"\npath = "afile"',
            "channel email: the `maildir` driver cannot use `{tmp}/afile/tmp`: Not a directory",
        ),
        (
            'sms]\ndriver = "jsonl"\npath = "afile/sms.jsonl"',
            "channel sms: the `jsonl` driver cannot use `{tmp}/afile`: File exists",
        ),
        (
            'push]\ndriver = "jsonl"\npath = "box"',
            "channel push: `box` is a folder: the `jsonl` driver appends to a file",
        ),
    ],
)
def test_a_file_channel_whose_path_cannot_be_used_is_refused_at_start_up(
    tmp_path: Path, channel: str, error: str
) -> None:
    # (a file where the maildir goes: a NotADirectoryError traceback; a folder where the
    # JSON-lines file goes: serve ran, and every delivery failed until dead)
    (tmp_path / "greet.lead").write_text(GREET, encoding="utf-8")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "box").mkdir()
    path = write(tmp_path, f"[server]\nprocesses = 1\n[channels.{channel}\n")
    result = serve_greet(tmp_path, path)
    assert result.returncode == 2, result.stderr.decode()[-2000:]
    assert result.stderr.decode().strip() == f"error: {error.format(tmp=tmp_path)}"
    assert not (tmp_path / "leadlang.db").exists()


@pytest.mark.parametrize("value", ["true", "false", "1.0", '"2"'])
def test_processes_is_the_number_1_or_2_not_a_boolean(tmp_path: Path, value: str) -> None:
    # (`true in (1, 2)` and `1.0 in (1, 2)` hold in Python: `processes = true` was one process)
    with pytest.raises(ConfigError, match=r"^server.processes: 1 \(everything in one process\)"):
        load_config(write(tmp_path, f"[server]\nprocesses = {value}\n"))
