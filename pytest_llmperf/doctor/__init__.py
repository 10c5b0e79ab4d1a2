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
not, 2 for bad usage. This package is imported only by ``__main__``; it runs
itself as the probe subprocesses (``python -m pytest_llmperf.doctor --_probe``,
through ``doctor/__main__.py``).

Where things live: ``plan`` (workload, how long), ``probe`` (the probe processes and
their schedule), ``noise`` (samples to detectable changes), ``verdict`` (which gate is
fit), ``cpu`` and ``gpu`` (machine facts, shaped by ``facts``), ``advice``, ``report``
(one run), ``render`` (the text), ``cli`` (the options). ``main`` stays here so that
it calls ``run`` and ``_parser`` through this package, where tests replace them.
"""

from __future__ import annotations

import json

from .advice import _advice as _advice
from .cli import _parser
from .cpu import (
    LOADED_PER_CORE,
    busy_cores,
    busy_share,
    cpu_facts,
    is_loaded,
    parse_cpuinfo,
    parse_proc_stat,
    rss_reset_fact,
    schedstat_fact,
    summarize_governors,
    thread_advice,
    thread_facts,
)
from .facts import fact, unknown
from .gpu import (
    BENIGN_REASONS,
    CLOCK_REASONS,
    counter_interval,
    decode_clock_reasons,
    gpu_facts,
    nvml_facts,
)
from .noise import between_drift, noise_summary
from .plan import FULL, QUICK, WORKLOAD, Plan
from .probe import _probe_main, measure
from .render import _text
from .report import run
from .verdict import GATES, RECOMMENDATION, decide, exit_status, gate_fit, recommend

__all__ = [
    "BENIGN_REASONS",
    "CLOCK_REASONS",
    "FULL",
    "GATES",
    "LOADED_PER_CORE",
    "QUICK",
    "RECOMMENDATION",
    "WORKLOAD",
    "Plan",
    "between_drift",
    "busy_cores",
    "busy_share",
    "counter_interval",
    "cpu_facts",
    "decide",
    "decode_clock_reasons",
    "exit_status",
    "fact",
    "gate_fit",
    "gpu_facts",
    "is_loaded",
    "main",
    "measure",
    "noise_summary",
    "nvml_facts",
    "parse_cpuinfo",
    "parse_proc_stat",
    "recommend",
    "rss_reset_fact",
    "run",
    "schedstat_fact",
    "summarize_governors",
    "thread_advice",
    "thread_facts",
    "unknown",
]


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_llmperf doctor [...]``; returns the exit status (0 fit, 1 not, 2 usage)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args._probe:
        return _probe_main(args.threads)
    report = run(args)
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else _text(report))
    return int(report["exit_status"])
