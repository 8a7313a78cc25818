"""File helpers the file drivers share."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable (where directories can be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class DirSync:
    """`fsync_dir` shared by threads that rename files into one directory: one fsync covers
    every rename made before it started, so a thread whose rename comes while another's sync
    runs waits for the next one, and the threads arriving meanwhile share that next one
    (under load one sync a batch, not one a file)."""

    def __init__(self, path: Path, fsync: Callable[[Path], None] = fsync_dir) -> None:
        self.path = path
        self._fsync = fsync
        self._cond = threading.Condition()
        self._started = 0  # syncs started so far
        self._done = 0  # the last sync finished
        self._running = False

    def sync(self) -> None:
        """Return once a sync of the directory that started after this call has finished."""
        with self._cond:
            wanted = self._started + 1  # the running one (if any) may predate our rename
            while self._done < wanted:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                self._started += 1
                number = self._started
                self._cond.release()
                try:
                    self._fsync(self.path)
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._done = number
                    self._cond.notify_all()
