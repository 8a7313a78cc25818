"""Source text and spans: where every AST node and diagnostic points in a `.lead` file."""

from __future__ import annotations

import bisect
import errno
import os
import re
import stat
from functools import cached_property
from pathlib import Path

import attrs

# A script or template file larger than this is refused instead of read: checking is linear
# in the text (about 10 s a megabyte on a busy two-core machine), and a path such as
# `/dev/zero` would otherwise be read without end.
MAX_FILE_BYTES = 4 * 1024 * 1024


def read_file(path: Path) -> bytes:
    """The bytes of a script or template file, read no further than `MAX_FILE_BYTES`: an
    `OSError` (EFBIG, its `strerror` saying so) for a larger file, and (ESPIPE) for a pipe,
    which would wait for a writer that may never come (opened without waiting, to see)."""
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
        if stat.S_ISFIFO(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.ESPIPE, "it is a pipe (FIFO), not a file")
        os.set_blocking(handle.fileno(), True)
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(errno.EFBIG, f"it is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
    return data


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escaped(ch: str) -> str:
    """An unprintable character as text shows it: `\\n`, `\\x1b`, `\\u200b` (so a script,
    an id or a tag can neither break a line nor move a terminal's cursor)."""
    code = ord(ch)
    return _ESCAPES.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


@attrs.frozen(slots=True)
class Span:
    """A range of a source file. Lines and columns are 1-based; `end_column` is exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int
    start: int = 0  # character offsets into the text, end exclusive
    end: int = 0

    def to(self, other: Span) -> Span:
        """The span from the start of `self` to the end of `other`."""
        return Span(
            self.file,
            self.line,
            self.column,
            other.end_line,
            other.end_column,
            self.start,
            other.end,
        )


NO_SPAN = Span("<builtin>", 1, 1, 1, 1, 0, 0)


def line_ends(text: str) -> str:
    """`text` with each carriage return that no line feed follows made a line feed: a file
    saved with classic Mac line ends (CR alone) reads as the lines an editor shows, not as
    one line (where a first-line comment would hide the whole file). CRLF stays as it is."""
    return _LONE_CR.sub("\n", text) if "\r" in text else text


_LONE_CR = re.compile(r"\r(?!\n)")


@attrs.define(eq=False)
class Source:
    """One file's text (its line ends as `line_ends` reads them), with line starts computed
    on demand."""

    path: str
    text: str = attrs.field(converter=line_ends)

    @cached_property
    def _line_starts(self) -> list[int]:
        starts = [0]
        find = self.text.find
        pos = find("\n")
        while pos != -1:
            starts.append(pos + 1)
            pos = find("\n", pos + 1)
        return starts

    def line_col(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        index = bisect.bisect_right(self._line_starts, offset) - 1
        return index + 1, offset - self._line_starts[index] + 1

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its newline."""
        starts = self._line_starts
        if not 1 <= line <= len(starts):
            return ""
        begin = starts[line - 1]
        end = starts[line] - 1 if line < len(starts) else len(self.text)
        return self.text[begin:end].rstrip("\r")

    def span(self, start: int, end: int) -> Span:
        line, column = self.line_col(start)
        end_line, end_column = self.line_col(end)
        return Span(self.path, line, column, end_line, end_column, start, end)
