"""One doctor run: sample the load, start the probes, read the facts and decide."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from .advice import _advice
from .cpu import (
    _read,
    busy_cores,
    busy_share,
    cpu_facts,
    parse_proc_stat,
    rss_reset_fact,
    schedstat_fact,
    thread_facts,
)
from .gpu import LoadSampler, gpu_facts
from .noise import noise_summary
from .plan import FULL, QUICK, WORKLOAD
from .probe import measure
from .verdict import decide


def run(args: argparse.Namespace) -> dict:
    """Measure, read the facts and decide: the report as a dict (what ``--json`` prints)."""
    t0 = time.perf_counter()
    plan = QUICK if args.quick else FULL
    try:
        load: tuple[float, float, float] | None = os.getloadavg()  # before the probes add to it
    except (AttributeError, OSError):
        load = None
    stat0 = parse_proc_stat(_read("/proc/stat") or "")
    time.sleep(plan.busy_sample_s)
    share = busy_share(stat0, parse_proc_stat(_read("/proc/stat") or ""))
    online = os.cpu_count() or 1
    busy = busy_cores(load[0] if load else None, share[0] if share else None, online)
    facts: dict[str, dict] = {}

    def read_facts() -> None:  # while the probes import torch; no torch here
        facts.update(cpu_facts(usable=_usable_set(), load=load, share=share))
        facts["rss_peak_reset"] = rss_reset_fact()
        facts["schedstat"] = schedstat_fact()

    sampler = LoadSampler()  # the GPU's clocks under the probes' load
    measured = measure(plan, args.threads, read_facts, sampler)
    if "schedstat" not in facts:  # the probes failed to start before the facts were read
        read_facts()
    probe = measured["probe"] or {}
    if "threads" in probe:  # what a fresh process gets: what a pytest run would get
        threads, cuda = int(probe["threads"]), bool(probe.get("cuda"))
    else:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        threads, cuda = torch.get_num_threads(), None
    thread_fact, advise = thread_facts(threads, busy)
    facts = {**{k: v for k, v in facts.items() if k not in _LATE_FACTS}, "threads": thread_fact,
             **{k: v for k, v in facts.items() if k in _LATE_FACTS}}  # fmt: skip
    facts.update(gpu_facts([], plan, cuda, load=sampler.summary()))
    noise = noise_summary(measured["samples"], measured["ratios"])
    noise["error"] = measured["error"]
    name, context, batch = WORKLOAD
    report: dict[str, Any] = {
        "workload": {
            "description": f"TransformerLM {name} forward, batch {batch} x {context} tokens",
            "device": probe.get("device_name") or probe.get("device") or "unknown",
            "threads": threads,
            "window_s": plan.window_s,
        },
        "quick": bool(args.quick),
        "noise": noise,
        "facts": facts,
        "advise_threads": advise,
        **decide(noise, args.gate, args.tolerance),
    }
    report["advice"] = _advice(report)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    return report


#: Facts listed after the thread count in the report.
_LATE_FACTS = ("rss_peak_reset", "schedstat")


def _usable_set() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
