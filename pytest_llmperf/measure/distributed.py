"""torch.distributed awareness: ranks synchronized around the measured region.

Under torchrun every rank runs the same test; a barrier before and after the
region lines them up, each round's time becomes the slowest rank's time (the
time the job as a whole took), and only rank 0 writes baselines and reports.
Every decision that sets how many calls run (adaptive rounds, ``warmup="auto"``)
is rank 0's, broadcast (``same_on_all``): a model with collectives inside the
call hangs if one rank runs a call more than another.

When ``llmperf.torchrun`` launched the ranks (``torchrun.py``), each rank also
reports where it is (``report_state``: its pid, the test, measuring or done)
and dumps its stack on SIGUSR1, so the launcher can name a rank that hangs.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

#: Set by the launcher (``torchrun.py``) in the ranks' environment: a directory
#: where each rank keeps ``rank<N>.json`` (its state) and ``rank<N>.stack``.
STATE_DIR_ENV = "LLMPERF_RANK_STATE_DIR"


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


def collective_device(device: Any = None, group: Any = None) -> Any:
    """Where a collective's tensors live: NCCL (XCCL) reduces accelerator tensors (``device``
    when it is one, else the current one), gloo host tensors."""
    import torch

    dist = _dist()
    backend = str(dist.get_backend(group)) if dist is not None else ""
    for name, kind in (("nccl", "cuda"), ("xccl", "xpu")):
        if name in backend:
            if getattr(device, "type", None) == kind:
                return device
            return torch.device(kind, getattr(torch, kind).current_device())
    return torch.device("cpu")


def slowest(times: list[float], device: Any, group: Any = None) -> list[float]:
    """Per round (or per value), the largest over all ranks of ``group`` (all-reduce MAX):
    the time the job as a whole took, the same number on every rank."""
    dist = _dist()
    if dist is None or not times:
        return times
    import torch

    t = torch.tensor(times, dtype=torch.float64, device=collective_device(device, group))
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return t.cpu().tolist()


def same_on_all(value: int, device: Any = None) -> int:
    """Rank 0's ``value`` on every rank (a broadcast); ``value`` itself without ranks.

    How many calls a rank runs must not be each rank's own decision: with a
    collective inside the call, one extra call on one rank waits forever."""
    dist = _dist()
    if dist is None:
        return value
    import torch

    t = torch.tensor([int(value)], dtype=torch.int64, device=collective_device(device))
    dist.broadcast(t, src=0)
    return int(t.item())


def report_state(state: str, nodeid: str = "", **extra: Any) -> None:
    """Tell the launcher where this rank is (a no-op unless ``llmperf.torchrun`` launched
    it): a small JSON file written whole, so the launcher never reads half of one."""
    directory = os.environ.get(STATE_DIR_ENV)
    if not directory:
        return
    r = int(os.environ.get("RANK", "0") or 0)
    data = {"rank": r, "pid": os.getpid(), "state": state, "test": nodeid, **extra}
    path = os.path.join(directory, f"rank{r}.json")
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError:
        pass  # the launcher then knows less; the measurement itself is unaffected


def dump_stack_on_signal() -> None:
    """Under the launcher: SIGUSR1 writes every thread's stack to ``rank<N>.stack``, so a
    rank that hangs can be shown where it hangs (a blocked collective cannot be
    interrupted, but faulthandler writes from its own C-level handler)."""
    import faulthandler
    import signal

    directory = os.environ.get(STATE_DIR_ENV)
    if not directory or not hasattr(signal, "SIGUSR1"):
        return

    r = int(os.environ.get("RANK", "0") or 0)
    f = open(os.path.join(directory, f"rank{r}.stack"), "w", encoding="utf-8")  # noqa: SIM115
    faulthandler.register(signal.SIGUSR1, file=f, all_threads=True)
