"""A pytest plugin that makes torch report another CPU's features, for evidence runs.

    PYTHONPATH=scripts LLMPERF_CPU=amd-epyc-vnni pytest -p cpu_context --llmperf tests/benchmarks

It replaces ``torch.cpu.get_capabilities`` for the run. Everything that reads the
features through it follows: torchao's int8 matmul branch (``_cpu_is_vnni_supported``,
``_cpu_is_amx_tile_supported``) and the plugin's dispatch context. ATen's own kernels do
not follow, but a work signature does not see them: it counts operators at the
dispatcher. So this reproduces what the work gate sees on the named CPU wherever that
difference comes from such Python-level branches. It proves the mechanism. It is not a
recording of that CPU, and the committed work file holds no entry made with it.
"""

from __future__ import annotations

import os

import torch

from pytest_llmperf.measure.dispatch import CPU_FEATURES

#: CPUs these machines have been, by the features of ``CPU_FEATURES`` each has (others
#: off). Zen 4 EPYC: AVX512_VNNI and AVX512_BF16, no AMX; Sapphire Rapids: all but AMX-FP16.
CPUS = {
    "amd-epyc-vnni": {"avx512_vnni", "avx512_bf16"},
    "amd-epyc-avx2": set(),
    "intel-xeon-amx": set(CPU_FEATURES) - {"amx_fp16"},
}

_real = torch.cpu.get_capabilities


def _as_named() -> dict:
    name = os.environ["LLMPERF_CPU"]
    if name not in CPUS:
        raise SystemExit(f"LLMPERF_CPU={name!r}: expected one of {', '.join(CPUS)}")
    caps = dict(_real())
    caps.update({f: f in CPUS[name] for f in CPU_FEATURES})
    return caps


def pytest_configure(config) -> None:
    if os.environ.get("LLMPERF_CPU"):
        _as_named()  # a bad name stops the run before any test
        torch.cpu.get_capabilities = _as_named


def pytest_unconfigure(config) -> None:
    torch.cpu.get_capabilities = _real
