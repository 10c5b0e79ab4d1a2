"""A gate that asks for what this device does not gate says so: a note per test for a
marker's names, a line per run for ``--llmperf-gate``'s; never a silent pass."""

from __future__ import annotations

import json

from pytest_llmperf.config import ungated_names
from pytest_llmperf.metrics import Kind, Metric


def _metric(name, kind, gated=True):
    return Metric(name, 1.0, "B", kind=kind, gated=gated)


def test_a_name_that_gates_nothing_here_is_said_and_one_that_gates_is_not():
    metrics = [
        _metric("peak_memory", Kind.MEMORY, gated=False),
        _metric("work.tensor_peak", Kind.WORK),
        _metric("time", Kind.TIME),
    ]
    notes = ungated_names("gate=", ["memory", "time", "work", "energy"], metrics, "cpu")
    assert len(notes) == 2, notes
    memory, energy = notes
    assert memory.startswith("gate= names 'memory', but nothing it names in this test is gated")
    assert "peak_memory reported only" in memory and "work.tensor_peak and work.retained" in memory
    assert energy == (
        "gate= names 'energy', which this test measured no metric of on this device (cpu): "
        "it gated nothing"
    )
    # Not the CPU: no CPU reason is given.
    (gpu,) = ungated_names("gate=", ["memory"], metrics[:1], "cuda")
    assert "RSS" not in gpu


def test_a_metric_the_other_level_leaves_out_is_not_this_names_to_gate():
    """--llmperf-gate=memory with a marker's gate=["time"]: the memory metrics are left out
    by the marker, not by the device: nothing to say about 'memory'."""
    metrics = [_metric("peak_memory", Kind.MEMORY, gated=False), _metric("time", Kind.TIME)]
    marker_time = lambda name, kind: kind == Kind.TIME  # noqa: E731
    assert ungated_names("--llmperf-gate", ["memory"], metrics, "cpu", marker_time) == []


MEMORY = """
import pytest
import torch

X = torch.randn(256, 256)


@pytest.mark.llmperf(gate=["memory"], warmup=1, rounds=3)
def test_memory(llmperf):
    llmperf(lambda: (X @ X).sum())


@pytest.mark.llmperf(gate=["time", "energy"], warmup=1, rounds=3)
def test_time(llmperf):
    llmperf(lambda: (X @ X).sum())
"""


def test_a_memory_gate_on_the_cpu_is_said_per_test_and_per_run(pytester):
    """The issue's case: gate=["memory"] on the CPU gated nothing, without a word."""
    pytester.makepyfile(test_memory=MEMORY)
    result = pytester.runpytest(
        "--llmperf", "--llmperf-gate=memory,time", f"--llmperf-report={pytester.path}/r.json"
    )
    result.assert_outcomes(passed=2)
    report = json.loads((pytester.path / "r.json").read_text())
    notes = {r["nodeid"].split("::")[-1]: r["notes"] for r in report["results"]}
    (memory,) = [n for n in notes["test_memory"] if "names 'memory'" in n]
    assert memory.startswith("@pytest.mark.llmperf(gate=...) names 'memory', but nothing")
    (energy,) = [n for n in notes["test_time"] if "names" in n]
    assert "names 'energy', which this test measured no metric of on this device" in energy
    out = result.stdout.str()
    assert "--llmperf-gate names 'memory', but nothing it names in this run is gated" in out
    assert "--llmperf-gate names 'time'" not in out  # time gates here
