"""Diagnosis of a regression: the call re-run once under the profiler or the memory recorder.

Only for ``--llmperf-profile-on-failure``: the trace says *where* the time or
memory went, which the verdict (that it went) cannot.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def profile_call(
    call: Callable[[], Any], device: Any, directory: Path, stem: str, *, memory: bool
) -> Path:
    """Run ``call`` once under ``torch.profiler`` (or, for a CUDA memory regression, the
    allocator's history recorder) and return the file it saved."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[-150:]
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
