"""Out of memory is a result, not an error: one policy and one note text for it.

A cell that does not fit the device (references 001/002/004 list them as OOM)
records status ``oom`` and ends its test, which then passes unless the baseline
said ``ok``. Whether the error surfaced inside a measured call or in the test's
own set-up (building a model that does not fit), it is recognised and noted the
same way here.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from typing import Any

from ..results import Status, TestResult
from .memory import release


class OutOfMemoryResult(Exception):
    """Ends a test whose measured call ran out of memory; the plugin records status ``oom``."""


def is_oom(exc: BaseException) -> bool:
    """An out-of-memory error on any device (torch.OutOfMemoryError, MemoryError, CPU allocator)."""
    if isinstance(exc, (MemoryError, OutOfMemoryResult)):
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    if isinstance(exc, RuntimeError):
        msg = str(exc).lower()
        return "out of memory" in msg or "can't allocate memory" in msg
    return False


def oom_message(exc: BaseException) -> str:
    """The first line of the error (at most 200 characters), or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def record_oom(result: TestResult, exc: BaseException) -> None:
    """Status ``oom`` with the one note that says why (once, whichever path saw it first)."""
    if result.status is Status.OOM:
        return
    result.status = Status.OOM
    result.note(f"out of memory: {oom_message(exc)}")


@contextlib.contextmanager
def oom_as_status(result: TestResult, device: Any) -> Iterator[None]:
    """Turn an out-of-memory error inside the block into status ``oom`` and end the test.

    The error's frames hold the activations that did not fit: they are cleared,
    and the error dropped, before memory is returned to the device.
    """
    message = None
    try:
        yield
    except BaseException as exc:
        if not is_oom(exc):
            raise
        record_oom(result, exc)
        message = oom_message(exc)
        traceback.clear_frames(exc.__traceback__)
    if message is not None:  # outside the except block: the error and its frames are gone
        release(device)
        raise OutOfMemoryResult(message)


def forget_last_error() -> None:
    """pytest keeps the last error in ``sys.last_*``: its frames would keep the model that
    did not fit alive into the next test."""
    for name in ("last_exc", "last_type", "last_value", "last_traceback"):
        if hasattr(sys, name):
            setattr(sys, name, None)
