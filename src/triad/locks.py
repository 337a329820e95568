"""Project-wide locks: one scheduler per project, one pipeline at a time per project.

Each lock is an ``flock`` on a file under ``<project>/.triad/``. The kernel drops it when its holder
exits, however it exits (a SIGKILL included), so a killed process never leaves a stale lock. The
file holds a line describing the holder (pid, start time, what it runs), which a refused or waiting
process repeats to its user.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from triad.errors import TriadError


class Busy(TriadError):
    """The lock is held by another process and the caller would not wait."""


def describe(what: str) -> str:
    """A holder's line: ``pid N, started <time>, <what>``."""
    return f"pid {os.getpid()}, started {dt.datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}, {what}"


def holder(path: Path) -> str | None:
    """The line of the process holding ``path``'s lock now, or None when it is free (nothing is taken)."""
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return path.read_text().strip() or "another process"
    finally:
        os.close(fd)


@contextmanager
def exclusive(
    path: Path,
    holder: str,
    *,
    wait: bool,
    refuse: Callable[[str], str],
    waiting: Callable[[str], None] | None = None,
    poll_s: float = 1.0,
) -> Iterator[None]:
    """Hold ``path``'s lock while the block runs, writing ``holder`` into the file.

    When another process holds it: with ``wait``, call ``waiting(their line)`` once and wait until
    it is free; without, raise ``Busy(refuse(their line))`` at once.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                theirs = path.read_text().strip() or "another process"
                if not wait:
                    raise Busy(refuse(theirs)) from None
                if waiting and not told:
                    waiting(theirs)
                    told = True
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (holder + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
