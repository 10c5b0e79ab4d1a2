"""CPU and process facts that explain noise: model, governor, clocks, load, threads against
cores, RSS peak reset, schedstat. The parsers are pure, so tests feed them fixed text."""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Sequence
from statistics import median
from typing import Any

from ..measure.device import cpu_count, cpu_model_name
from ..measure.drift import run_queue_wait_ns
from ..measure.memory import _status_kib, reset_rss_peak
from .facts import fact, unknown

#: CPUs kept busy by others (load or busy share), per online CPU, above which it is loaded.
LOADED_PER_CORE = 0.5
_CPU_SYS = "/sys/devices/system/cpu"
_CPUINFO = "/proc/cpuinfo"


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
    if run_queue_wait_ns() >= 0:
        return fact(True, "yes (run-queue wait per thread: drift correction takes out waiting)")
    return fact(False, "no (drift correction falls back to wall / process CPU time)")


def thread_facts(threads: int, busy: float | None) -> tuple[dict, int | None]:
    """Usable cores against torch's intra-op threads, and the thread count to advise."""
    usable, online = cpu_count(), os.cpu_count() or 1
    advise = thread_advice(threads, usable, busy, online)
    text = (
        f"torch {threads} thread{'s' * (threads != 1)} on {usable} usable cores ({online} online)"
    )
    if advise is not None:
        text += f": advise --llmperf-threads={advise}"
    return fact({"torch_threads": threads, "usable_cores": usable, "online": online}, text), advise
