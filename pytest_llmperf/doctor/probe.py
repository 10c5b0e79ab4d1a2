"""The probe processes: a fresh Python that builds the workload and times it when asked,
and the schedule doctor times them on (each process once, then A/A pairs)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

from .gpu import LoadSampler
from .plan import WORKLOAD, Plan

#: Where the probes' replies start (torch may print other lines to stdout).
_REPLY = "@llmperf-doctor "


class _Probe:
    """A fresh Python process that builds the workload and times it when asked."""

    def __init__(self, threads: int | None) -> None:
        root = str(Path(__file__).resolve().parents[2])  # the directory holding pytest_llmperf
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        cmd = [sys.executable, "-m", "pytest_llmperf.doctor", "--_probe"]
        if threads:
            cmd += ["--threads", str(threads)]
        self._err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True, env=env
        )
        self.ready: dict[str, Any] | None = None

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(_REPLY):
                return json.loads(line[len(_REPLY) :])
        self._err.seek(0)
        tail = self._err.read()[-300:].strip().replace("\n", " | ")
        raise RuntimeError(f"probe exited ({self.proc.wait()}): {tail or 'no output'}")

    def wait_ready(self) -> dict[str, Any]:
        self.ready = self._reply()
        if "error" in self.ready:
            raise RuntimeError(self.ready["error"])
        return self.ready

    def time(self, warmup_s: float = 0.0, seconds: float = 0.0, rounds: int = 0) -> list[float]:
        assert self.proc.stdin is not None
        msg = {"warmup_s": warmup_s, "seconds": seconds, "rounds": rounds}
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        reply = self._reply()
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return [float(x) for x in reply["samples"]]

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self._err.close()


def _probe_main(threads: int | None) -> int:
    """The probe side: build the workload once, then time it per request from stdin."""

    def say(obj: dict[str, Any]) -> None:
        sys.stdout.write(_REPLY + json.dumps(obj) + "\n")
        sys.stdout.flush()

    try:
        import torch

        from ..measure.device import current_device, device_name, make_current, pci_bus_id
        from ..models import transformer_lm as tl

        if threads:
            torch.set_num_threads(threads)
        # made current, as the plugin does: on cuda:1 (LLMPERF_DEVICE) with cuda:0 current,
        # a bare synchronize() waited on cuda:0 and the probe timed nothing
        device = make_current(current_device())
        name, context, batch = WORKLOAD
        cfg = tl.TransformerLMConfig.from_name(name, context)
        model = tl.build(cfg, device).eval()
        idx = tl.random_batch(cfg, batch, device)[:, :-1]
        on_cpu = device.type == "cpu"
    except Exception as e:
        say({"error": f"workload set-up failed: {type(e).__name__}: {e}"})
        return 1
    bus = None
    with contextlib.suppress(Exception):  # how doctor's NVML sampler finds this GPU
        bus = pci_bus_id(device)
    say({"pid": os.getpid(), "device": str(device), "device_name": device_name(device),
         "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
         "pci_bus_id": bus})  # fmt: skip
    clock = time.perf_counter
    with torch.inference_mode():

        def one() -> float:
            t0 = clock()
            model(idx)
            if not on_cpu:
                torch.accelerator.synchronize(device.index)
            return clock() - t0

        for line in sys.stdin:
            try:
                req = json.loads(line)
                end = clock() + float(req.get("warmup_s", 0))
                one()
                while clock() < end:
                    one()
                samples: list[float] = []
                rounds = int(req.get("rounds", 0))
                end = clock() + float(req.get("seconds", 0))
                while len(samples) < rounds or (not rounds and (clock() < end or len(samples) < 5)):
                    samples.append(one())
                say({"samples": samples})
            except Exception as e:
                say({"error": f"{type(e).__name__}: {e}"})
    return 0


def measure(
    plan: Plan,
    threads: int | None,
    on_started: Callable[[], None],
    sampler: LoadSampler | None = None,
) -> dict:
    """Start the probes, let ``on_started`` read facts while they import torch, then time,
    with ``sampler`` reading the GPU's clocks while the probes run the workload.

    Returns the probes' samples, the A/A ratios and any error (the noise is then unknown).
    A probe that hangs is killed after ``plan.hard_limit_s``: doctor always answers.
    """
    probes = [_Probe(threads) for _ in range(plan.processes)]
    out: dict[str, Any] = {"samples": [], "ratios": [], "error": None, "probe": None}

    def kill() -> None:
        for p in probes:
            with contextlib.suppress(OSError):
                p.proc.kill()

    watchdog = threading.Timer(plan.hard_limit_s, kill)
    watchdog.daemon = True
    watchdog.start()
    try:
        on_started()
        for p in probes:
            p.wait_ready()
        out["probe"] = probes[0].ready
        with sampler.running(out["probe"]) if sampler else contextlib.nullcontext():
            _time_probes(plan, probes, out)
    except Exception as e:
        out["error"] = str(e)
    finally:
        watchdog.cancel()
        for p in probes:
            p.close()
    return out


def _time_probes(plan: Plan, probes: list[_Probe], out: dict[str, Any]) -> None:
    """Each fresh process timed once, then the A/A pairs; into ``out``."""
    for p in probes:  # between processes: one after the other
        out["samples"].append(p.time(plan.warmup_s, plan.window_s))
    # Paired A/A: two live processes in batches A B B A A B ..., ratio B / A per pair.
    a, b = probes[0], probes[1 % len(probes)]
    for p in (a, b):
        p.time(plan.warmup_s / 2, rounds=plan.pair_rounds)
    deadline = time.perf_counter() + plan.pairs_budget_s
    for i in range(plan.pairs):
        if i >= plan.min_pairs and time.perf_counter() > deadline:
            break
        first, second = (a, b) if i % 2 == 0 else (b, a)
        t_first = median(first.time(rounds=plan.pair_rounds))
        t_second = median(second.time(rounds=plan.pair_rounds))
        t_a, t_b = (t_first, t_second) if first is a else (t_second, t_first)
        out["ratios"].append(t_b / t_a)
