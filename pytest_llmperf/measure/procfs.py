"""Linux ``/proc/self`` files, kept open: opening one costs more than reading it.

A memory pass reads ``/proc/self/status`` twice and writes ``clear_refs`` once, and
each drift window reads the thread's ``schedstat`` twice: at 2,000 tiny tests the
opens were a tenth of the plugin's cost per test (``scripts/evidence/scale.py``). A file
under ``/proc/self`` names the process that opened it, so a descriptor is kept
per process id (a forked child reopens its own) and per thread for thread files.
"""

from __future__ import annotations

import contextlib
import os

_OPEN: dict[tuple[str, int, int], int] = {}


def _fd(path: str, flags: int) -> int:
    key = (path, flags, os.getpid())
    fd = _OPEN.get(key)
    if fd is None:
        fd = _OPEN[key] = os.open(path, flags | os.O_CLOEXEC)
    return fd


def read(path: str, size: int = 8192) -> bytes:
    """The file's current content (from offset 0: proc files regenerate on each read)."""
    try:
        return os.pread(_fd(path, os.O_RDONLY), size, 0)
    except OSError:
        _forget(path, os.O_RDONLY)
        raise


def write(path: str, data: bytes) -> None:
    try:
        os.write(_fd(path, os.O_WRONLY), data)
    except OSError:
        _forget(path, os.O_WRONLY)
        raise


def _forget(path: str, flags: int) -> None:
    """A descriptor that failed (its thread ended, say) is closed and opened anew next time."""
    fd = _OPEN.pop((path, flags, os.getpid()), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
