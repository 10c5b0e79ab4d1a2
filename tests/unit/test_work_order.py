"""The work signature cannot depend on what ran before it in the process.

A first call leaves garbage that later calls do not: the first operator dispatched
to a Python mode in a process imports ``torch._dynamo``, whose import leaves the
calling frames in reference cycles, so a call's temporaries outlive their use until
the cyclic collector (paused during the work pass) runs. Counted once, OPT's
``tensor_peak`` was 1 KiB higher when its file ran alone than in the whole suite.
"""

from __future__ import annotations

import sys

import torch

from pytest_llmperf.measure.sequence import Measurement, work_metrics
from pytest_llmperf.measure.work import signature_of

CPU = torch.device("cpu")
KIB = 1024


def totals(sig) -> dict[str, float]:
    return {name: value for name, value, _ in sig.totals()}


def first_call_builder():
    """A process-wide cache built on the first call, the way an import on first use
    is: its frame refers to itself (torch.fx's ``wrap`` keeps ``inspect.currentframe()``),
    so every frame below it, and their locals, stay alive until a cyclic collection."""
    built: list[object] = []

    def build_once() -> None:
        if not built:
            me = sys._getframe()
            built.append(type(me).__name__)

    return build_once


def embed_then_project(build_once):
    """OPT's shape: ``embed`` makes a temporary (the positions) that dies on return,
    before the next allocation, unless a first-call cycle keeps its frame alive."""
    x = torch.randn(256)  # 1 KiB

    def embed():
        positions = x * 2  # 1 KiB, dies on return
        build_once()
        return positions + 1  # 1 KiB

    def call():
        h = embed()
        return h * 3  # 1 KiB: the peak is 2 KiB, 3 KiB with positions kept

    return call


def test_a_cache_built_on_the_first_call_does_not_move_the_signature():
    call = embed_then_project(first_call_builder())
    cold = signature_of(call, CPU)  # the first call in this "process": builds the cache
    warm = signature_of(call, CPU)  # a later test: the cache is there
    assert totals(cold) == totals(warm)
    assert cold.tensor_peak == 2 * KIB
    assert not cold.unsteady and not cold.uncounted


def test_a_warm_pass_is_taken_once():
    calls = [0]

    def step():
        calls[0] += 1
        return (torch.ones(8) * 2).sum()

    signature_of(step, CPU)  # whatever this process had not built yet, it has now
    calls[0] = 0
    sig = signature_of(step, CPU)
    assert calls == [1] and not sig.unsteady


def test_a_total_that_keeps_moving_after_cold_passes_is_reported_never_gated():
    calls = [0]

    def grows():  # cold every time (a cycle holds a tensor), and each call allocates more
        calls[0] += 1
        t = torch.empty(100 * calls[0]).add(1)
        cycle = [t]
        cycle.append(cycle)
        return t.sum()

    sig = signature_of(grows, CPU)
    assert calls == [3]
    assert sorted(sig.unsteady) == ["bytes", "tensor_peak"]
    assert any("tensor_peak moved between two passes" in n for n in sig.uncounted)
    gated = {m.name: m.gated for m in work_metrics(Measurement("", work=sig), "")}
    assert gated["work.ops"] and gated["work.flops"]
    assert not gated["work.tensor_peak"] and not gated["work.bytes"]
