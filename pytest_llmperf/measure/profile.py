"""Diagnosis of a regression: the call re-run once under the profiler or the memory recorder.

Only for ``--llmperf-profile-on-failure``: the trace says *where* the time or
memory went, which the verdict (that it went) cannot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: How much of the sanitised test id a trace's name keeps: its head (the file) and its
#: tail (the test and its parameters), the middle cut out when the id is longer.
_HEAD, _TAIL = 60, 90


def trace_stem(nodeid: str) -> str:
    """The file-name stem of a test's trace: readable, unique per test id and short.

    Readable: the test id with every character but ASCII letters, digits and ``-_.``
    replaced by ``_`` (its middle cut out beyond 152 characters). Unique: a hash of the
    *whole* id follows, because the readable part alone is not: two long ids that share
    their tail, or ``a/b`` and ``a_b``, would overwrite each other's trace. Short: at most
    165 bytes, so with ``.memory.pickle`` it stays far under the usual 255-byte name
    limit (which is why non-ASCII letters are replaced too: each takes up to 4 bytes).
    """
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in nodeid)
    if len(safe) > _HEAD + 2 + _TAIL:
        safe = f"{safe[:_HEAD]}..{safe[-_TAIL:]}"
    safe = safe.lstrip("-.")  # neither a hidden file nor one a shell reads as an option
    digest = hashlib.sha256(nodeid.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{safe}-{digest}" if safe else digest


def profile_call(
    call: Callable[[], Any], device: Any, directory: Path, nodeid: str, *, memory: bool
) -> Path:
    """Run ``call`` once under ``torch.profiler`` (or, for a CUDA memory regression, the
    allocator's history recorder) and return the file it saved, named after ``nodeid``
    (:func:`trace_stem`)."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    stem = trace_stem(nodeid)
    if memory and device.type == "cuda":
        path = directory / f"{stem}.memory.pickle"
        torch.cuda.memory._record_memory_history(max_entries=100000)
        try:
            call()
            torch.cuda.synchronize(device)
            torch.cuda.memory._dump_snapshot(str(path))
        finally:
            torch.cuda.memory._record_memory_history(enabled=None)
        return path
    path = directory / f"{stem}.trace.json"
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities, profile_memory=memory) as prof:
        call()
        if device.type != "cpu":
            torch.accelerator.synchronize(device.index)
    prof.export_chrome_trace(str(path))
    return path
