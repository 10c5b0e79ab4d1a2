"""torch.distributed awareness: ranks synchronized around the measured region.

Under torchrun every rank runs the same test; a barrier before and after the
region lines them up, each round's time becomes the slowest rank's time (the
time the job as a whole took), and only rank 0 writes baselines and reports.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _dist() -> Any | None:
    torch = sys.modules.get("torch")
    dist = getattr(torch, "distributed", None) if torch is not None else None
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist
    return None


def active() -> bool:
    return _dist() is not None


def rank() -> int:
    dist = _dist()
    return dist.get_rank() if dist is not None else int(os.environ.get("RANK", "0") or 0)


def barrier() -> None:
    dist = _dist()
    if dist is not None:
        dist.barrier()


def slowest(times: list[float], device: Any) -> list[float]:
    """Per round, the largest time over all ranks (all-reduce MAX)."""
    dist = _dist()
    if dist is None or not times:
        return times
    import torch

    backend = dist.get_backend()
    where = device if backend == "nccl" else torch.device("cpu")
    t = torch.tensor(times, dtype=torch.float64, device=where)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.cpu().tolist()
