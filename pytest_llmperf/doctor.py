"""``python -m pytest_llmperf doctor``: which gate can this runner support, in about a minute.

A gate is only as good as the runner it gates on. Before a team trusts a red
or green timing verdict, doctor times a small real workload (a forward of the
project's Transformer LM, under ``torch.inference_mode``) the way the gates do:

* within a process (rounds after warm-up, robust spread),
* between fresh processes (each one's median; their spread is the drift
  between runs that no number of rounds removes: the stored gate's floor),
* paired A/A (two processes kept alive, timed in alternating batches A B B A:
  the per-pair ratios the ``--llmperf-compare`` gate decides on),

turns that into each gate's minimum detectable change
(``judge.detectable``), holds it against the tolerance and recommends a gate.
It also reads the machine facts that explain noise (governor, clocks, load,
threads against cores, RSS peak reset, schedstat; on NVIDIA GPUs persistence,
other processes, clocks, throttle reasons and the energy counter's update
interval). A fact that cannot be read is "unknown (why)", never a crash.

Exit status: 0 when the runner is fit for the gate asked (``--gate``), 1 when
not, 2 for bad usage. This module is imported only by ``__main__``; it runs
itself as the probe subprocesses (``python -m pytest_llmperf.doctor --_probe``).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from .extras import hint
from .judge.decision import MIN_PAIRS

#: The gates a user can ask about, cheapest first: the order of preference.
GATES = ("stored", "compare", "work")
RECOMMENDATION = {
    "stored": "stored baseline",
    "compare": "A/B against a ref (--llmperf-compare=main)",
    "work": "work signature only (--llmperf-gate=work)",
}
#: Reference workload: TransformerLM config, context length, batch (5-10 ms on 2 CPU cores).
WORKLOAD = ("tiny-large", 128, 2)
#: CPUs kept busy by others (load or busy share), per online CPU, above which it is loaded.
LOADED_PER_CORE = 0.5
#: Where the probes' replies start (torch may print other lines to stdout).
_REPLY = "@llmperf-doctor "
_CPU_SYS = "/sys/devices/system/cpu"
_CPUINFO = "/proc/cpuinfo"


@dataclass(frozen=True)
class Plan:
    """How much doctor measures: the default run takes about a minute, ``--quick`` seconds."""

    processes: int  # fresh processes, each timed once (the first two also pair up)
    warmup_s: float  # warm-up before a process's timed window
    window_s: float  # timed window per process (the plugin's default max_time is 1 s)
    pairs: int  # A/A pairs of batches
    pair_rounds: int  # rounds per batch of a pair
    pairs_budget_s: float  # stop pairing after this long (a loaded machine is slow) ...
    min_pairs: int  # ... but not before this many pairs
    energy_changes: int  # energy counter updates to wait for
    energy_timeout_s: float
    busy_sample_s: float  # /proc/stat window before the probes start
    hard_limit_s: float  # probes still running after this long are killed


FULL = Plan(processes=8, warmup_s=0.5, window_s=1.0, pairs=150, pair_rounds=6,
            pairs_budget_s=20.0, min_pairs=8, energy_changes=6, energy_timeout_s=3.0,
            busy_sample_s=1.0, hard_limit_s=300.0)  # fmt: skip
QUICK = Plan(processes=2, warmup_s=0.1, window_s=0.3, pairs=12, pair_rounds=3,
             pairs_budget_s=1.5, min_pairs=MIN_PAIRS, energy_changes=3, energy_timeout_s=1.0,
             busy_sample_s=0.2, hard_limit_s=90.0)  # fmt: skip


# --------------------------------------------------------------------------- pure parts


def fact(value: Any, text: str) -> dict[str, Any]:
    """A known fact: its value for machines, its words for people."""
    return {"value": value, "text": text}


def unknown(why: str) -> dict[str, Any]:
    """A fact that could not be read, with the reason (a missing file is not an error)."""
    return {"value": None, "text": f"unknown ({why})"}


def gate_fit(gate: str, stored: float | None, paired: float | None, tolerance: float) -> bool:
    """Whether ``gate`` can see ``tolerance`` given the detectable changes (None: unmeasured).

    The work gate counts, it does not time: always fit.
    """
    if gate == "work":
        return True
    mdc = stored if gate == "stored" else paired
    return mdc is not None and mdc <= tolerance


def recommend(stored: float | None, paired: float | None, tolerance: float) -> str:
    """The cheapest gate that sees the tolerance: one stored run, else A/B, else work counts."""
    for gate in GATES:
        if gate_fit(gate, stored, paired, tolerance):
            return gate
    return "work"  # pragma: no cover - work is always fit


def exit_status(gate: str, stored: float | None, paired: float | None, tolerance: float) -> int:
    """0 when the runner is fit for the gate the user is about to use, else 1."""
    return 0 if gate_fit(gate, stored, paired, tolerance) else 1


def decide(noise: dict, gate: str, tolerance: float) -> dict[str, Any]:
    """The report's verdict from :func:`noise_summary`: per gate its detectable change and
    fitness, the recommendation, and the exit status for the gate asked."""
    stored, paired = noise.get("stored_detectable"), noise.get("paired_detectable")
    return {
        "tolerance": tolerance,
        "gates": {
            "stored": {
                "detectable": stored,
                "fit": gate_fit("stored", stored, paired, tolerance),
                **_why(noise.get("stored_shortfall")),
            },
            "compare": {
                "detectable": paired,
                "fit": gate_fit("compare", stored, paired, tolerance),
                **_why(noise.get("paired_shortfall")),
            },
            "work": {"detectable": 0.0, "fit": True},
        },
        "recommendation": recommend(stored, paired, tolerance),
        "gate": gate,
        "fit": gate_fit(gate, stored, paired, tolerance),
        "exit_status": exit_status(gate, stored, paired, tolerance),
    }


def _why(shortfall: str | None) -> dict[str, str]:
    """A gate's ``why`` (too few samples to judge), only where there is one."""
    return {"why": shortfall} if shortfall else {}


def between_drift(medians: Sequence[float]) -> float:
    """Run-to-run drift as the stored gate uses it for pooled runs (``baselines.run_spread``)."""
    from .baselines import run_spread

    return run_spread({"runs": [{"samples": [m]} for m in medians]})


def noise_summary(process_samples: Sequence[Sequence[float]], ratios: Sequence[float]) -> dict:
    """Each gate's minimum detectable change from the probes' samples and the A/A ratios.

    Stored gate: this run's samples against another fresh process's (its baseline),
    floored by the drift between process medians. Paired gate: the sign-test MDC of
    the ratios, floored by their offset from 1 (identical code, different process:
    a compare gate would report that offset as a change). Where too few processes,
    rounds or pairs were measured to judge anything, the detectable change is None and
    ``*_shortfall`` says so in the words the per-test notes use (``detectable.too_few``):
    a number from 3 pairs (``>= 5826.3%``) read as a measurement.
    """
    from .judge.detectable import (
        paired_detectable,
        paired_shortfall,
        relative_spread,
        stored_detectable,
        stored_shortfall,
        too_few,
    )

    runs = [list(s) for s in process_samples if len(s) > 0]
    medians = [median(s) for s in runs]
    drift = between_drift(medians) if len(medians) >= 2 else None
    stored_mdcs = [
        stored_detectable(cur, base, drift or 0.0)
        for base, cur in zip(runs, runs[1:], strict=False)
    ]
    stored_known = [m for m in stored_mdcs if m is not None]
    stored = median(stored_known) if stored_known and drift is not None else None
    stored_short = ""
    if runs and len(runs) < 2:
        stored_short = too_few(len(runs), 2, "processes")
    elif runs and not stored_known:
        stored_short = stored_shortfall(min(runs, key=len))
    good = [r for r in ratios if r > 0 and math.isfinite(r)]
    paired_short = paired_shortfall(good) if good else ""
    paired_raw = None if paired_short else paired_detectable(good)
    ratio_mid = median(good) if good else None
    offset = abs(ratio_mid - 1.0) if ratio_mid is not None else None
    paired = max(paired_raw, offset) if paired_raw is not None and offset is not None else None
    return {
        "process_medians_s": medians,
        "rounds_per_process": [len(s) for s in runs],
        "within_process_spread": median(relative_spread(s) for s in runs) if runs else None,
        "between_process_drift": drift,
        "pairs": len(good),
        "ratio_median": ratio_mid,
        "ratio_spread": relative_spread(good) if good else None,
        "stored_detectable": stored,
        "stored_shortfall": stored_short,
        "paired_detectable_ratios": paired_raw,
        "paired_offset": offset,
        "paired_detectable": paired,
        "paired_shortfall": paired_short,
    }


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """CPU model name and per-CPU ``cpu MHz`` from /proc/cpuinfo (fields absent on some arches)."""
    model = None
    mhz: list[float] = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "cpu mhz":
            with contextlib.suppress(ValueError):
                mhz.append(float(value))
    return {"model": model, "mhz": mhz}


def summarize_governors(governors: Sequence[str]) -> str:
    """``performance (all 4 CPUs)`` or ``powersave x2, performance x2``."""
    counts: dict[str, int] = {}
    for g in governors:
        counts[g.strip()] = counts.get(g.strip(), 0) + 1
    if len(counts) == 1:
        (name,) = counts
        return f"{name} (all {len(governors)} CPUs)"
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def parse_proc_stat(text: str) -> tuple[int, int, int] | None:
    """(busy, steal, total) jiffies of all CPUs from /proc/stat's ``cpu`` line."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                v = [int(x) for x in parts[1:9]] + [0] * (8 - len(parts[1:9]))
            except ValueError:
                return None
            user, nice, system, idle, iowait, irq, softirq, steal = v
            busy = user + nice + system + irq + softirq + steal
            return busy, steal, busy + idle + iowait
    return None


def busy_share(
    before: tuple[int, int, int] | None, after: tuple[int, int, int] | None
) -> tuple[float, float] | None:
    """(busy, steal) shares of all CPUs between two /proc/stat readings, or None."""
    if before is None or after is None or after[2] <= before[2]:
        return None
    total = after[2] - before[2]
    return (after[0] - before[0]) / total, (after[1] - before[1]) / total


def busy_cores(load1: float | None, share: float | None, online: int) -> float | None:
    """How many CPUs others keep busy: the larger of the 1-minute load and the busy share
    sampled just now (a load average lags a burst by a minute)."""
    known = [x for x in (load1, None if share is None else share * online) if x is not None]
    return max(known) if known else None


def is_loaded(busy: float, online: int) -> bool:
    """A machine on which others keep more than half the CPUs busy times each round with them."""
    return busy > LOADED_PER_CORE * max(1, online)


def thread_advice(threads: int, usable: int, busy: float | None, online: int) -> int | None:
    """The ``--llmperf-threads`` to advise, or None when torch's thread count is fine.

    More threads than usable cores makes intra-op threads wait on each other; on a
    loaded machine the cores others keep busy are not ours either (``busy``: CPUs
    others keep busy, from :func:`busy_cores`).
    """
    target = max(1, usable)
    if busy is not None and is_loaded(busy, online):
        ours = busy * usable / max(1, online)  # the busy CPUs' share among our cores
        target = max(1, min(usable, int(usable - ours)))
    return target if threads > target else None


#: NVML clock event (throttle) reasons, bit -> words.
CLOCK_REASONS = {
    0x1: "gpu idle",
    0x2: "application clocks setting",
    0x4: "software power cap",
    0x8: "hardware slowdown",
    0x10: "sync boost",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake",
    0x100: "display clock setting",
    0x200: "board limit",
    0x400: "reliability",
}
#: Reasons that do not slow a measurement by themselves.
BENIGN_REASONS = 0x1 | 0x2 | 0x100


def decode_clock_reasons(mask: int) -> list[str]:
    """The words for an NVML clocks-event bit mask (unknown bits by their hex value)."""
    names = [name for bit, name in CLOCK_REASONS.items() if mask & bit]
    rest = mask & ~sum(CLOCK_REASONS)
    if rest:
        names.append(f"other 0x{rest:x}")
    return names


def counter_interval(readings: Sequence[tuple[float, float]]) -> float | None:
    """Median seconds between changes of a polled counter; (time, value) pairs in order.

    The first change comes at an arbitrary phase after polling started, so only
    the intervals between changes count.
    """
    changes = [t for (t, v), (_, prev) in zip(readings[1:], readings, strict=False) if v != prev]
    gaps = [b - a for a, b in zip(changes, changes[1:], strict=False)]
    return median(gaps) if gaps else None


# --------------------------------------------------------------------------- machine facts


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cpu_dirs(cpu_sys: str, usable: set[int] | None) -> list[str]:
    """The sysfs directories of the CPUs this process may run on (all of them if none match)."""
    found = {}
    for path in glob.glob(os.path.join(cpu_sys, "cpu[0-9]*")):
        tail = os.path.basename(path)[3:]
        if tail.isdigit():
            found[int(tail)] = path
    mine = [found[i] for i in sorted(found) if usable is None or i in usable]
    return mine or [found[i] for i in sorted(found)]


def cpu_facts(
    cpu_sys: str = _CPU_SYS,
    cpuinfo: str = _CPUINFO,
    usable: set[int] | None = None,
    load: tuple[float, float, float] | None = None,
    share: tuple[float, float] | None = None,
) -> dict[str, dict]:
    """CPU model, governor, frequencies and load, each known or "unknown (why)".

    ``load``: os.getloadavg(); ``share``: (busy, steal) shares of all CPUs sampled just
    before the measurement (:func:`busy_share`).
    """
    from .measure.device import cpu_model_name

    info = parse_cpuinfo(_read(cpuinfo) or "")
    facts: dict[str, dict] = {}
    model = info["model"] or cpu_model_name()
    facts["cpu_model"] = fact(model, model) if model else unknown(f"no model name in {cpuinfo}")
    dirs = _cpu_dirs(cpu_sys, usable)
    govs = [g for g in (_read(os.path.join(d, "cpufreq", "scaling_governor")) for d in dirs) if g]
    facts["governor"] = (
        fact(sorted(set(govs)), summarize_governors(govs))
        if govs
        else unknown(f"no {cpu_sys}/cpu*/cpufreq/scaling_governor")
    )

    def khz(name: str) -> list[float]:
        out = []
        for d in dirs:
            v = _read(os.path.join(d, "cpufreq", name))
            if v and v.isdigit():
                out.append(int(v) / 1000.0)
        return out

    cur, lo, hi = khz("scaling_cur_freq"), khz("cpuinfo_min_freq"), khz("cpuinfo_max_freq")
    source = "cpufreq"
    if not cur and info["mhz"]:
        cur, source = info["mhz"], "/proc/cpuinfo"
    freq: dict[str, Any] = {
        "current_mhz": round(median(cur)) if cur else None,
        "min_mhz": round(min(lo)) if lo else None,
        "max_mhz": round(max(hi)) if hi else None,
    }
    if cur or lo or hi:
        parts = [
            f"current {freq['current_mhz']} MHz ({source}, median of {len(cur)} CPUs)"
            if cur
            else "current unknown",
            f"min {freq['min_mhz']} MHz" if lo else "min unknown",
            f"max {freq['max_mhz']} MHz" if hi else "max unknown (no cpuinfo_max_freq)",
        ]
        if cur and hi and freq["current_mhz"] < 0.8 * freq["max_mhz"]:
            parts.append("below 80% of max")
        facts["frequency"] = fact(freq, ", ".join(parts))
    else:
        facts["frequency"] = unknown(f"no cpufreq in {cpu_sys} and no 'cpu MHz' in {cpuinfo}")
    online = os.cpu_count() or 1
    if load is None:
        facts["load"] = unknown("os.getloadavg() unavailable")
    else:
        text = f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min) on {online} CPUs"
        facts["load"] = fact(list(load), text)
    if share is None:
        facts["cpu_busy"] = unknown("no cpu line in /proc/stat")
    else:
        busy = busy_cores(load[0] if load else None, share[0], online) or 0.0
        text = f"{share[0]:.0%} of all CPUs busy just before measuring"
        if share[1] >= 0.01:
            text += f" ({share[1]:.0%} stolen by the hypervisor)"
        if is_loaded(busy, online):
            text += ": loaded, timings share the cores"
        facts["cpu_busy"] = fact({"busy": share[0], "steal": share[1]}, text)
    return facts


def rss_reset_fact() -> dict[str, Any]:
    """Whether writing /proc/self/clear_refs really lowers VmHWM (CPU ``peak_memory`` relies on it)."""
    from .measure.memory import _status_kib, reset_rss_peak

    if _status_kib("VmHWM") is None:
        return unknown("no VmHWM in /proc/self/status")
    spike = 64 << 20
    blob = b"\x01" * spike  # touched pages: the high-water mark rises by ~64 MiB
    del blob
    before = _status_kib("VmHWM") or 0
    if not reset_rss_peak():
        return fact(
            False, "no (/proc/self/clear_refs not writable: CPU peak_memory is inexact, not gated)"
        )
    after = _status_kib("VmHWM") or 0
    if before - after >= (spike >> 10) // 2:
        return fact(True, "yes (/proc/self/clear_refs resets VmHWM: CPU peak_memory is per call)")
    return fact(
        False, f"no (VmHWM {before} -> {after} KiB after clear_refs: CPU peak_memory is inexact)"
    )


def schedstat_fact() -> dict[str, Any]:
    """Whether the drift correction can read this thread's run-queue wait."""
    from .measure.drift import run_queue_wait_ns

    if run_queue_wait_ns() >= 0:
        return fact(True, "yes (run-queue wait per thread: drift correction takes out waiting)")
    return fact(False, "no (drift correction falls back to wall / process CPU time)")


def nvml_facts(
    nvml: Any,
    handle: Any,
    exclude_pids: Sequence[int] = (),
    changes: int = 5,
    timeout_s: float = 3.0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, dict]:
    """Persistence, other processes, clocks, throttle reasons, application clocks and the
    energy counter's update interval of one NVML device; each fact known or unknown."""
    facts: dict[str, dict] = {}

    def ask(fn: str, *args: Any) -> Any:
        return getattr(nvml, fn)(handle, *args)

    def guard(name: str, read: Callable[[], dict]) -> None:
        try:
            facts[name] = read()
        except Exception as e:  # NVMLError_NotSupported, NoPermission, missing function
            facts[name] = unknown(f"NVML: {type(e).__name__}: {e}".rstrip(": "))

    def persistence() -> dict:
        on = bool(ask("nvmlDeviceGetPersistenceMode"))
        return fact(on, "on" if on else "off (driver state is torn down between runs)")

    def processes() -> dict:
        procs = list(ask("nvmlDeviceGetComputeRunningProcesses"))
        with contextlib.suppress(Exception):
            procs += list(ask("nvmlDeviceGetGraphicsRunningProcesses"))
        skip = {os.getpid(), *exclude_pids}
        others = sorted({int(p.pid) for p in procs} - skip)
        text = "none" if not others else f"{len(others)} (pids {', '.join(map(str, others[:8]))})"
        return fact(others, text)

    def clocks(kind: int, label: str) -> Callable[[], dict]:
        def read() -> dict:
            cur = int(ask("nvmlDeviceGetClockInfo", kind))
            out: dict[str, Any] = {"current_mhz": cur}
            words = [f"{cur} MHz"]
            for key, fn in (
                ("max_mhz", "nvmlDeviceGetMaxClockInfo"),
                ("default_app_mhz", "nvmlDeviceGetDefaultApplicationsClock"),
                ("app_mhz", "nvmlDeviceGetApplicationsClock"),
            ):
                try:
                    out[key] = int(ask(fn, kind))
                except Exception:
                    out[key] = None
            if out["max_mhz"]:
                words.append(f"max {out['max_mhz']}")
            if out["default_app_mhz"]:
                words.append(f"default {out['default_app_mhz']}")
            return fact(out, f"{label} " + ", ".join(words) + " MHz" * (len(words) > 1))

        return read

    def reasons() -> dict:
        try:
            mask = int(ask("nvmlDeviceGetCurrentClocksEventReasons"))
        except AttributeError:
            mask = int(ask("nvmlDeviceGetCurrentClocksThrottleReasons"))
        names = decode_clock_reasons(mask)
        slowing = bool(mask & ~BENIGN_REASONS)
        text = ", ".join(names) if names else "none"
        return fact({"mask": mask, "reasons": names, "slowing": slowing}, text)

    def app_clocks() -> dict:
        sm_app = int(ask("nvmlDeviceGetApplicationsClock", 1))
        sm_def = int(ask("nvmlDeviceGetDefaultApplicationsClock", 1))
        mem_app = int(ask("nvmlDeviceGetApplicationsClock", 2))
        mem_def = int(ask("nvmlDeviceGetDefaultApplicationsClock", 2))
        locked = (sm_app, mem_app) != (sm_def, mem_def)
        text = (
            f"set: SM {sm_app} MHz (default {sm_def}), memory {mem_app} MHz (default {mem_def})"
            if locked
            else f"default (SM {sm_def}, memory {mem_def} MHz): not locked"
        )
        return fact({"locked": locked, "sm_mhz": sm_app, "mem_mhz": mem_app}, text)

    def energy() -> dict:
        readings: list[tuple[float, float]] = []
        end = clock() + timeout_s
        seen = 0
        while clock() < end and seen <= changes:
            v = float(ask("nvmlDeviceGetTotalEnergyConsumption"))
            if readings and v != readings[-1][1]:
                seen += 1
            readings.append((clock(), v))
            time.sleep(0.001)
        gap = counter_interval(readings)
        if gap is None:
            return unknown(f"the counter changed {seen} times in {timeout_s:g} s")
        return fact(gap, f"updates every {gap * 1e3:.0f} ms (median of {seen - 1} intervals)")

    guard("gpu_persistence", persistence)
    guard("gpu_other_processes", processes)
    guard("gpu_sm_clock", clocks(1, "SM"))
    guard("gpu_memory_clock", clocks(2, "memory"))
    guard("gpu_clock_reasons", reasons)
    guard("gpu_application_clocks", app_clocks)
    guard("gpu_energy_interval", energy)
    return facts


def gpu_facts(exclude_pids: Sequence[int], plan: Plan, cuda: bool | None = None) -> dict[str, dict]:
    """NVIDIA GPU facts of the device torch uses, or one "no GPU" line.

    ``cuda``: what a probe found (False spares this process importing torch); None: look.
    """
    if os.environ.get("LLMPERF_DEVICE") == "cpu":
        return {"gpu": fact(False, "no GPU (LLMPERF_DEVICE=cpu)")}
    if cuda is False:
        return {"gpu": fact(False, "no GPU")}
    try:
        import torch
    except ImportError as e:  # pragma: no cover - the plugin requires torch
        return {"gpu": unknown(f"torch not importable: {e}")}
    if not torch.cuda.is_available():
        return {"gpu": fact(False, "no GPU")}
    from .measure.device import current_device, device_name
    from .measure.energy import _nvml_handle

    dev = current_device()
    dev = dev if dev.type == "cuda" else torch.device("cuda", torch.cuda.current_device())
    name = device_name(dev)
    facts = {"gpu": fact(name, f"{name} (cuda:{dev.index or 0})")}
    try:
        import pynvml
    except ImportError:
        return {**facts, "gpu_nvml": unknown(f"pynvml not importable: {hint('pynvml')}")}
    handle = _nvml_handle(dev)
    if handle is None:
        return {**facts, "gpu_nvml": unknown("NVML did not initialise or find the device")}
    return {
        **facts,
        **nvml_facts(pynvml, handle, exclude_pids, plan.energy_changes, plan.energy_timeout_s),
    }


def thread_facts(threads: int, busy: float | None) -> tuple[dict, int | None]:
    """Usable cores against torch's intra-op threads, and the thread count to advise."""
    from .measure.device import cpu_count

    usable, online = cpu_count(), os.cpu_count() or 1
    advise = thread_advice(threads, usable, busy, online)
    text = (
        f"torch {threads} thread{'s' * (threads != 1)} on {usable} usable cores ({online} online)"
    )
    if advise is not None:
        text += f": advise --llmperf-threads={advise}"
    return fact({"torch_threads": threads, "usable_cores": usable, "online": online}, text), advise


# --------------------------------------------------------------------------- measuring


class _Probe:
    """A fresh Python process that builds the workload and times it when asked."""

    def __init__(self, threads: int | None) -> None:
        root = str(Path(__file__).resolve().parents[1])
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

        from .measure.device import current_device, device_name
        from .models import transformer_lm as tl

        if threads:
            torch.set_num_threads(threads)
        device = current_device()
        name, context, batch = WORKLOAD
        cfg = tl.TransformerLMConfig.from_name(name, context)
        model = tl.build(cfg, device).eval()
        idx = tl.random_batch(cfg, batch, device)[:, :-1]
        on_cpu = device.type == "cpu"
    except Exception as e:
        say({"error": f"workload set-up failed: {type(e).__name__}: {e}"})
        return 1
    say({"pid": os.getpid(), "device": str(device), "device_name": device_name(device),
         "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()})  # fmt: skip
    clock = time.perf_counter
    with torch.inference_mode():

        def one() -> float:
            t0 = clock()
            model(idx)
            if not on_cpu:
                torch.accelerator.synchronize()
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


def measure(plan: Plan, threads: int | None, on_started: Callable[[], None]) -> dict:
    """Start the probes, let ``on_started`` read facts while they import torch, then time.

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
        # Between processes: each fresh process timed once, one after the other.
        for p in probes:
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
    except Exception as e:
        out["error"] = str(e)
    finally:
        watchdog.cancel()
        for p in probes:
            p.close()
    return out


# --------------------------------------------------------------------------- report


def _pct(x: float | None, digits: int = 1) -> str:
    return "unknown" if x is None else f"{x:.{digits}%}"


def _advice(report: dict) -> list[str]:
    facts, noise, tol = report["facts"], report["noise"], report["tolerance"]
    out: list[str] = []
    threads = facts["threads"]["value"]
    if report.get("advise_threads") is not None:
        n = report["advise_threads"]
        why = (
            "more threads than usable cores"
            if threads["torch_threads"] > threads["usable_cores"]
            else "the machine is loaded"
        )
        out.append(f"{why}: run with --llmperf-threads={n} (ini: llmperf_threads = {n})")
    gov = facts["governor"]["value"]
    if gov and any(g != "performance" for g in gov):
        out.append(
            f"CPU governor {'/'.join(gov)}: on a dedicated runner set 'performance' "
            "(cpupower frequency-set -g performance)"
        )
    if facts["rss_peak_reset"]["value"] is False:
        out.append("CPU peak_memory cannot be reset here: it is reported, not gated")
    if facts["schedstat"]["value"] is False:
        out.append(
            "no schedstat: CPU drift correction uses process CPU time (blocking workloads: drift_correction=False)"
        )
    if facts.get("gpu_persistence", {}).get("value") is False:
        out.append("GPU persistence mode is off: enable it (nvidia-smi -pm 1)")
    if facts.get("gpu_other_processes", {}).get("value"):
        out.append("other processes use the GPU: timings and energy include their work")
    reasons = facts.get("gpu_clock_reasons", {}).get("value")
    if reasons and reasons["slowing"]:
        out.append(f"GPU clocks held back now ({', '.join(reasons['reasons'])})")
    interval = facts.get("gpu_energy_interval", {}).get("value")
    if interval and interval > 0.05:
        out.append(
            f"energy counter updates every {interval * 1e3:.0f} ms: energy of windows under 0.5 s is approximate"
        )
    offset = noise.get("paired_offset")
    noise_mdc = noise.get("paired_detectable_ratios")
    if offset is not None and offset > tol / 2 and noise_mdc is not None and offset > noise_mdc:
        out.append(
            f"two processes of identical code differ by {offset:.1%}: A/B needs several processes per side"
        )
    return out


def _text(report: dict) -> str:
    from .judge.detectable import can_see

    noise, gates, tol = report["noise"], report["gates"], report["tolerance"]
    w = report["workload"]
    lines = [
        f"pytest-llmperf doctor ({report['wall_s']:.0f} s{', quick' if report['quick'] else ''})",
        "",
    ]
    med = noise["process_medians_s"]
    per_call = f": {median(med) * 1e3:.2f} ms per call" if med else ""
    threads = f"{w['threads']} thread{'s' * (w['threads'] != 1)}"
    lines.append(f"workload  {w['description']} on {w['device']}, {threads}{per_call}")
    if med:
        rounds = noise["rounds_per_process"]
        lines.append(
            f"noise     within a process {_pct(noise['within_process_spread'])} "
            f"(robust spread, ~{median(rounds):.0f} rounds in {w['window_s']:g} s)"
        )
        lines.append(
            f"          between {len(med)} processes {_pct(noise['between_process_drift'])} "
            f"(medians {min(med) * 1e3:.2f}-{max(med) * 1e3:.2f} ms)"
        )
    if noise["pairs"]:
        lines.append(
            f"          A/A pairs: ratio median {noise['ratio_median']:.3f}, "
            f"spread {_pct(noise['ratio_spread'])} over {noise['pairs']} pairs"
        )
    if noise.get("error"):
        lines.append(f"          measurement failed: {noise['error']}")
    lines += ["", f"gates (tolerance {_pct(tol, 0)}): smallest change each can see here"]
    for gate, label in (
        ("stored", "stored baseline"),
        ("compare", "A/B (--llmperf-compare)"),
        ("work", "work signature"),
    ):
        g = gates[gate]
        if gate == "work":
            seen = "exact: counts, not times"
        elif g.get("why") or g["detectable"] is None:
            # The words every place uses (judge.detectable.can_see), never a number from
            # too few samples.
            seen = can_see(None, g.get("why", ""))
        else:
            seen = f">= {_pct(g['detectable'])}"
            if gate == "stored" and noise["between_process_drift"] is not None:
                seen += f" (floor: drift between runs {_pct(noise['between_process_drift'])})"
            if gate == "compare" and noise["paired_offset"] is not None:
                seen += f" (A/A offset {_pct(noise['paired_offset'])})"
        verdict = (
            "fit"
            if g["fit"]
            else "cannot judge any change"
            if g.get("why")
            else "not fit"
            if g["detectable"] is None
            else "cannot see its tolerance"
        )
        lines.append(f"  {label:<24} {seen}: {verdict}")
    lines += ["", "machine"]
    for key, fact_ in report["facts"].items():
        lines.append(f"  {key.replace('_', ' '):<22} {fact_['text']}")
    if report["advice"]:
        lines += ["", "advice"] + [f"  - {a}" for a in report["advice"]]
    asked = report["gate"]
    verdict = "fit" if report["exit_status"] == 0 else "not fit"
    lines += [
        "",
        f"recommendation: {RECOMMENDATION[report['recommendation']]}",
        f"gate asked: {asked} -> {verdict} (exit {report['exit_status']})",
    ]
    return "\n".join(lines)


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

    measured = measure(plan, args.threads, read_facts)
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
    facts.update(gpu_facts([], plan, cuda))
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


def _parser() -> argparse.ArgumentParser:
    """The doctor's options; each number is checked by its type as ``--llmperf-threads`` and
    ``--llmperf-tolerance`` are (a usage error naming the option, exit 2): torch crashes on
    ``set_num_threads(100000)``."""
    from .config import MAX_THREADS, arg_type, parse_threads, parse_tolerance

    p = argparse.ArgumentParser(
        prog="python -m pytest_llmperf doctor",
        description="Check this runner: A/A noise of a reference workload, the smallest change "
        "each gate can see, machine facts, and which gate to use.",
    )
    p.add_argument(
        "--gate",
        choices=GATES,
        default="stored",
        help="the gate you are about to use; exit 1 when the runner is not fit for it (default: stored)",
    )
    p.add_argument(
        "--tolerance",
        type=arg_type(parse_tolerance, "tolerance"),
        default="10%",
        help="tolerance to hold the gates against (default: 10%%)",
    )
    p.add_argument(
        "--threads",
        type=arg_type(parse_threads, "thread count", measuring=False),
        default=None,
        help=f"torch threads to measure with, 1 to {MAX_THREADS} or auto (as --llmperf-threads)",
    )
    p.add_argument("--quick", action="store_true", help="fewer processes and rounds: a few seconds")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--_probe", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_llmperf doctor [...]``; returns the exit status (0 fit, 1 not, 2 usage)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args._probe:
        return _probe_main(args.threads)
    report = run(args)
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else _text(report))
    return int(report["exit_status"])


if __name__ == "__main__":
    sys.exit(main())
