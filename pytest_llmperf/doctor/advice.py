"""What to change on this runner, from the report's facts and noise (one line each)."""

from __future__ import annotations


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
        when = "under load" if reasons.get("under_load") else "now"
        out.append(f"GPU clocks held back {when} ({', '.join(reasons['reasons'])})")
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
