"""Optional dependencies are extras, and a feature whose extra is missing names it.

The real absence (a fresh venv with the wheel and no extra) is checked by
``scripts/check_quickstart.py`` in CI; here a package is hidden the way Python itself
treats a module it cannot import (``sys.modules[name] = None``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from pytest_llmperf import extras

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_core_dependencies_are_core_and_every_extra_is_declared() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    core = {d.split(">")[0].split("=")[0].strip() for d in project["dependencies"]}
    assert core == {"pytest", "torch", "scipy"}
    optional = project["optional-dependencies"]
    for extra, dist in extras.EXTRAS.values():
        assert any(d.startswith(dist) for d in optional[extra]), (extra, dist)
    assert "pytest-llmperf[quant,gpu,export,plots,history]" in optional["all"]
    assert "pytest-llmperf[all]" in optional["dev"]


@pytest.mark.parametrize("module", sorted(extras.EXTRAS))
def test_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    why = extras.missing(module, "this feature")
    extra, dist = extras.EXTRAS[module]
    assert why == (
        f"this feature needs {dist}, which is not installed: "
        f"pip install 'pytest-llmperf[{extra}]' ({dist})"
    )


def test_quantization_without_torchao_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_llmperf.models import quantization

    assert quantization.unavailable_reason("int8wo", "cpu") is None  # installed here
    monkeypatch.setitem(sys.modules, "torchao", None)
    assert "pytest-llmperf[quant]" in quantization.unavailable_reason("int8wo", "cpu")
    with pytest.raises(ImportError, match=r"pytest-llmperf\[quant\]"):
        quantization.make_config("int8wo")
    assert quantization.unavailable_reason("bf16", "cpu") is None  # no torchao needed


def test_benchmark_json_without_pytest_benchmark_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest("import sys\nsys.modules['pytest_benchmark'] = None\n")
    pytester.makepyfile(test_x="def test_x(llmperf):\n    llmperf.record('n', 1.0)\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:benchmark", "--llmperf", "--llmperf-benchmark-json=b.json"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "--llmperf-benchmark-json needs pytest-benchmark, which is not installed: "
        "pip install 'pytest-llmperf[export]'" in result.stderr.str()
    )


def test_energy_on_cuda_without_nvml_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_llmperf.measure import energy

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert energy.why_no_energy(cpu) is None  # no energy expected: nothing to say
    monkeypatch.setitem(sys.modules, "pynvml", None)
    # uncached: a handle found earlier in this process would be kept
    monkeypatch.setattr(energy, "_nvml_handle", energy._nvml_handle.__wrapped__)
    assert energy.why_no_energy(cpu) is None
    why = energy.why_no_energy(cuda)
    assert why is not None and why.startswith("energy not measured: energy per call needs")
    assert "pytest-llmperf[gpu]" in why
