"""The module loader: folders, `use std.NAME`, relative `use`, once-only loading, dependency
order, cycles (N011), missing modules (N010), unreadable files (S006), usage errors."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from leadlang import ast
from leadlang.cli import main
from leadlang.loader import load, stdlib_dir, stdlib_modules

WriteFiles = Callable[[dict[str, str]], Path]


def module_paths(result_modules: list[ast.Module]) -> list[str]:
    return [m.path for m in result_modules]


def test_stdlib_folder_is_found_and_lists_modules() -> None:
    assert stdlib_dir().is_dir()
    assert "segments" in stdlib_modules()


def test_use_std_loads_the_stdlib_module_before_the_user(write_files: WriteFiles) -> None:
    write_files({"main.lead": "use std.segments\nmetric m = 1\n"})
    result = load(["main.lead"])
    assert result.usage_error is None
    assert [d for d in result.diagnostics if d.is_error] == []
    paths = module_paths(result.modules)
    assert paths[-1] == "main.lead"
    assert any(Path(p).name == "segments.lead" for p in paths[:-1])


def test_relative_use_once_only_and_dependencies_first(write_files: WriteFiles) -> None:
    write_files(
        {
            "app/main.lead": 'use "lib/a.lead"\nuse "lib/b.lead"\nuse "lib/a.lead"\n',
            "app/lib/a.lead": 'use "b.lead"\nmetric a = 1\n',
            "app/lib/b.lead": "metric b = 2\n",
        }
    )
    result = load(["app/main.lead", "app/lib/b.lead"])
    assert result.diagnostics == []
    assert module_paths(result.modules) == ["app/lib/b.lead", "app/lib/a.lead", "app/main.lead"]
    assert set(result.sources) == {"app/lib/b.lead", "app/lib/a.lead", "app/main.lead"}


def test_spans_use_paths_relative_to_the_current_directory(write_files: WriteFiles) -> None:
    write_files({"examples/card/card.lead": "flow x\n"})
    result = load(["examples"])
    (diagnostic,) = result.diagnostics
    assert (diagnostic.span.file, diagnostic.span.line) == ("examples/card/card.lead", 1)


def test_folder_loads_every_lead_file_sorted(write_files: WriteFiles) -> None:
    write_files({"s/b.lead": "metric b = 1\n", "s/a/c.lead": "metric c = 1\n", "s/x.txt": "no"})
    result = load(["s"])
    assert module_paths(result.modules) == ["s/a/c.lead", "s/b.lead"]


def test_cycle_is_n011_naming_the_chain(write_files: WriteFiles) -> None:
    write_files({"a.lead": 'use "b.lead"\n', "b.lead": '\nuse "a.lead"\n'})
    result = load(["a.lead"])
    (diagnostic,) = result.diagnostics
    assert diagnostic.code == "N011"
    assert "a.lead -> b.lead -> a.lead" in diagnostic.message
    assert (diagnostic.span.file, diagnostic.span.line) == ("b.lead", 2)
    assert len(result.modules) == 2


def test_missing_std_module_suggests_a_close_name(write_files: WriteFiles) -> None:
    write_files({"main.lead": "use std.segmnts\n"})
    (diagnostic,) = load(["main.lead"]).diagnostics
    assert diagnostic.code == "N010" and "std.segmnts" in diagnostic.message
    assert diagnostic.help == "did you mean `std.segments`?"


def test_missing_relative_file_is_n010(write_files: WriteFiles) -> None:
    write_files({"main.lead": 'use "nope.lead"\n'})
    (diagnostic,) = load(["main.lead"]).diagnostics
    assert diagnostic.code == "N010" and "nope.lead" in diagnostic.message


def test_not_utf8_is_s006(write_files: WriteFiles) -> None:
    root = write_files({"main.lead": 'use "bin.lead"\n'})
    (root / "bin.lead").write_bytes(b"metric a = \xff\xfe\n")
    (diagnostic,) = load(["main.lead"]).diagnostics
    assert diagnostic.code == "S006" and "UTF-8" in diagnostic.message


def test_a_byte_that_is_not_utf8_is_pointed_at_by_the_lines_an_editor_shows(
    write_files: WriteFiles,
) -> None:
    root = write_files({})
    (root / "mac.lead").write_bytes(b"# one\r# two\rmetric a = \xff\r")
    (root / "win.lead").write_bytes(b"# one\r\n# two\r\nmetric a = \xff\r\n")
    for name in ("mac.lead", "win.lead"):
        (diagnostic,) = load([name]).diagnostics
        assert diagnostic.code == "S006" and "line 3, column 12" in diagnostic.message
        assert (diagnostic.span.line, diagnostic.span.column) == (3, 12)


def test_a_file_over_4_mb_is_s006_without_being_read_whole(write_files: WriteFiles) -> None:
    root = write_files({"main.lead": 'use "huge.lead"\n'})
    (root / "huge.lead").write_bytes(b"# a comment line\n" * (4 * 1024 * 1024 // 17 + 1))
    (diagnostic,) = load(["main.lead"]).diagnostics
    assert diagnostic.code == "S006" and "larger than 4 MB" in diagnostic.message
    assert diagnostic.span.line == 1 and diagnostic.span.file == "main.lead"  # (the `use`)
    # a path that never ends is refused too, instead of taking all memory
    (endless,) = load(["/dev/zero"]).diagnostics
    assert endless.code == "S006" and "larger than 4 MB" in endless.message


def test_missing_path_and_empty_folder_are_usage_errors(write_files: WriteFiles) -> None:
    root = write_files({"x.lead": "metric a = 1\n"})
    assert load(["missing.lead"]).usage_error is not None
    (root / "empty").mkdir()
    result = load(["x.lead", "empty"])
    assert result.usage_error is not None and "empty" in result.usage_error


def test_syntax_errors_are_collected_from_every_file(write_files: WriteFiles) -> None:
    write_files({"a.lead": "flow x\n", "b.lead": "metric = 1\n"})
    result = load(["a.lead", "b.lead"])
    assert sorted(d.span.file for d in result.diagnostics) == ["a.lead", "b.lead"]


def _nest_past_path_max(folder: Path) -> None:
    """Folders nested deeper than a path can name (PATH_MAX), a `.lead` file at the bottom:
    made one level at a time through directory descriptors, as only such a walk can."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        for _ in range(25):  # 201 bytes a level: past 4096 in few levels
            os.mkdir("d" * 200, dir_fd=handle)
            inner = os.open("d" * 200, os.O_RDONLY, dir_fd=handle)
            os.close(handle)
            handle = inner
        fd = os.open("z.lead", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=handle)
        os.write(fd, b"event z\n")
        os.close(fd)
    finally:
        os.close(handle)


def test_a_path_the_system_cannot_name_is_a_usage_error(write_files: WriteFiles) -> None:
    root = write_files({"x.lead": "metric a = 1\n"})
    too_long = "a" * 300 + ".lead"  # longer than a file name can be (NAME_MAX)
    result = load([too_long])
    assert result.usage_error == f"cannot read `{too_long}`: File name too long"
    (root / "deep").mkdir()
    _nest_past_path_max(root / "deep")
    result = load(["deep"])
    assert result.usage_error is not None
    assert result.usage_error.startswith("cannot read `deep` (`deep/ddd")
    assert result.usage_error.endswith(": File name too long")
    # `check` walks folders to split them into programs first: the same usage error
    cli = CliRunner().invoke(main, ["check", "deep"])
    assert cli.exit_code == 2, cli.output
    assert "error: cannot read `deep`" in cli.output and "Traceback" not in cli.output


def test_a_use_of_a_name_no_file_can_have_is_n010(write_files: WriteFiles) -> None:
    long_name = "a" * 300 + ".lead"
    write_files({"main.lead": f'use "{long_name}"\nuse "a\\u0000b.lead"\n'})
    result = load(["main.lead"])
    assert result.usage_error is None
    assert [d.code for d in result.diagnostics] == ["N010", "N010"]
    assert f"file `{long_name}` not found" in result.diagnostics[0].message


def test_an_empty_path_is_a_usage_error_not_the_current_folder(write_files: WriteFiles) -> None:
    # (`leadlang check "$SCRIPTS"` with the variable unset checked whatever was here)
    write_files({"a.lead": "metric a = 1\n"})
    assert load([""]).usage_error == "an empty path names no file or folder"
    for args in (["check", ""], ["check", "a.lead", ""], ["diff", "a.lead", ""]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output == "error: an empty path names no file or folder\n"


def test_folders_nested_1500_deep_are_walked(write_files: WriteFiles) -> None:
    # (`rglob` recursed once a level: a RecursionError traceback past some 1,000 levels)
    root = write_files({"top.lead": "event a\n"})
    handle = os.open(root, os.O_RDONLY)
    try:
        for _ in range(1_500):  # (2 bytes a level: well inside PATH_MAX)
            os.mkdir("d", dir_fd=handle)
            inner = os.open("d", os.O_RDONLY, dir_fd=handle)
            os.close(handle)
            handle = inner
        fd = os.open("z.lead", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=handle)
        os.write(fd, b"event z\n")
        os.close(fd)
        os.close(handle)
        result = load(["."])
        assert result.usage_error is None and result.diagnostics == []
        assert len(result.modules) == 2
        assert CliRunner().invoke(main, ["check", "."]).output == (
            "checked 2 files, 0 flows: no problems\n"
        )
    finally:
        subprocess.run(["rm", "-rf", str(root / "d")], check=True)  # (rmtree recurses too)


def test_a_folder_that_cannot_be_listed_is_a_usage_error(write_files: WriteFiles) -> None:
    # (`rglob` skipped it without a word: a program checked, or served, without its scripts)
    root = write_files({"app/main.lead": "event a\n", "app/flows/f.lead": "event b\n"})
    (root / "app" / "flows").chmod(0)
    try:
        if os.access(root / "app" / "flows", os.R_OK):
            pytest.skip("this user reads a folder whatever its mode (root)")
        assert load(["app"]).usage_error == "cannot read `app` (`app/flows`): Permission denied"
        result = CliRunner().invoke(main, ["check", "app"])
        assert result.exit_code == 2
        assert result.output == "error: cannot read `app` (`app/flows`): Permission denied\n"
    finally:
        (root / "app" / "flows").chmod(0o755)


def test_a_pipe_is_named_as_given(write_files: WriteFiles) -> None:
    # (`leadlang check <(...)`: `/dev/fd/63` resolves to `/proc/PID/fd/pipe:[N]`, which was
    # named, and read, to say "No such file or directory")
    write_files({})
    read, write = os.pipe()
    try:
        os.write(write, b"event a\n")
        os.close(write)
        (diagnostic,) = load([f"/dev/fd/{read}"]).diagnostics
        assert diagnostic.code == "S006"
        assert (
            diagnostic.message == f"cannot read `/dev/fd/{read}`: it is a pipe (FIFO), not a file"
        )
    finally:
        os.close(read)
