"""Work entries know their dispatch context: judged against their own, informed by others.

The real runs flip torchao's int8 matmul branch (u8s8 on a CPU with AVX512_VNNI and no
AMX, s8s8 elsewhere) by setting the two CPU features it reads through
``torch.cpu.get_capabilities``, which the plugin reads too: both contexts run on any
CPU ("both paths should work regardless of ISA support", torchao's intmm.py), so the
test decides the same wherever it runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.baselines import BaselineError, load, write

try:  # imported here, before pytester's runs: a module first imported inside one is
    # unloaded after it, and importing torchao again registers its operators twice
    import torchao  # noqa: F401
except ImportError:
    torchao = None
from pytest_llmperf.measure.dispatch import context_id, differences, nearest
from pytest_llmperf.results import Metric, TestResult

AMX = {
    "device_type": "cpu",
    "torch": "2.13.0+cpu",
    "torchao": "0.18.0",
    "cpu_capability": "AVX512",
    "cpu_features": ["amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni"],
}
VNNI = {**AMX, "cpu_features": ["avx512_bf16", "avx512_vnni"]}


# --------------------------------------------------------------------------- the facts


def test_differences_name_the_facts_a_reader_can_act_on():
    assert differences(AMX, {**AMX, "torch": "2.13.1"}) == []  # a patch release: same ops
    assert differences(AMX, {**AMX, "torch": "2.14.0"}) == ["torch 2.13 -> 2.14"]
    assert differences(VNNI, AMX) == ["recorded without amx_int8, amx_tile"]
    assert differences(AMX, VNNI) == ["recorded with amx_int8, amx_tile, absent here"]
    assert differences(AMX, {**AMX, "cpu_capability": "AVX2"}) == [
        "ATen CPU capability AVX512 -> AVX2"
    ]
    # an entry of a version 1 file knows only its versions: one fact, not one per field
    legacy = {"device_type": "cpu", "torch": "2.13.0", "torchao": "0.18.0"}
    assert differences(legacy, AMX) == [
        "recorded before the CPU's capability and features were kept"
    ]
    gpu = {"device_type": "cuda", "torch": "2.13.0", "device": "A100", "compute_capability": "8.0"}
    assert differences(gpu, {**gpu, "device": "H100", "compute_capability": "9.0"}) == [
        "device A100 -> H100",
        "compute capability 8.0 -> 9.0",
    ]


def test_the_context_key_is_equal_exactly_when_nothing_differs():
    assert context_id(AMX) == context_id(
        {**AMX, "torch": "2.13.1", "cpu_features": AMX["cpu_features"][::-1]}
    )
    assert context_id(AMX) != context_id(VNNI)
    assert context_id(AMX) != context_id({**AMX, "torchao": "0.19.0"})


def test_nearest_takes_the_same_context_else_the_fewest_differences():
    old_torch = {**AMX, "torch": "2.12.0"}
    entries = [{"stack": old_torch, "n": 1}, {"stack": VNNI, "n": 2}]
    assert nearest(entries, VNNI) == (entries[1], [])
    far = {**old_torch, "cpu_features": []}
    assert nearest([{"stack": far}, entries[0]], AMX) == (entries[0], ["torch 2.12 -> 2.13"])
    assert nearest([], AMX) == (None, [])


# --------------------------------------------------------------------------- the file


def _result(ops: float) -> TestResult:
    r = TestResult("t.py::a", tier="smoke")
    r.add(Metric("work.ops", ops, "", higher_is_better=False, kind="work", tolerance=0.0))
    r.work = {"": {"ops": {"aten.mm": int(ops)}}}
    return r


def test_a_refresh_under_another_context_adds_its_entry_beside_the_others(tmp_path: Path):
    path = tmp_path / "work" / "cpu.json"
    device = {"key": "cpu", "name": "cpu"}
    write(path, device=device, fingerprint=AMX, results=[_result(3)], stack=AMX)
    before = json.loads(path.read_text())["tests"]["t.py::a"]["contexts"][context_id(AMX)]
    write(path, device=device, fingerprint=VNNI, results=[_result(5)], stack=VNNI)
    write(path, device=device, fingerprint=VNNI, results=[_result(6)], stack=VNNI)  # replaces
    contexts = json.loads(path.read_text())["tests"]["t.py::a"]["contexts"]
    assert set(contexts) == {context_id(AMX), context_id(VNNI)}
    assert contexts[context_id(AMX)] == before  # untouched by the other context's refresh
    assert contexts[context_id(VNNI)]["metrics"]["work.ops"]["value"] == 6
    loaded = load(path, "cpu")
    assert loaded is not None
    assert sorted(
        e["metrics"]["work.ops"]["value"] for e in loaded.entries("t.py::a", "smoke")
    ) == [
        3,
        6,
    ]
    assert loaded.entries("t.py::a", "standard") == []


def _work_file(path: Path, version: int, entry: dict) -> None:
    data = {"schema": "pytest-llmperf-baseline", "schema_version": version}
    path.write_text(json.dumps({**data, "device": {"key": "cpu"}, "tests": {"t.py::a": entry}}))


def test_a_version_1_entry_is_read_as_one_context_and_replaced_by_a_refresh(tmp_path: Path):
    path = tmp_path / "cpu.json"
    flat = {"status": "ok", "tier": "smoke", "metrics": {}, "stack": {"torch": "2.13.0"}}
    _work_file(path, 1, flat)
    loaded = load(path, "cpu")
    assert loaded is not None and loaded.entries("t.py::a", "smoke") == [flat]
    write(path, device={"key": "cpu"}, fingerprint=AMX, results=[_result(3)], stack=AMX)
    assert list(json.loads(path.read_text())["tests"]["t.py::a"]) == ["contexts"]


def test_a_malformed_context_names_the_file_and_the_test(tmp_path: Path):
    path = tmp_path / "cpu.json"
    _work_file(path, 2, {"contexts": {"x": {"status": "broken"}}})
    with pytest.raises(BaselineError, match=r"cpu\.json .*'t\.py::a, context x'.*status"):
        load(path, "cpu")
    _work_file(path, 2, {"contexts": {}})
    with pytest.raises(BaselineError, match="contexts is an object, expected a non-empty"):
        load(path, "cpu")


# --------------------------------------------------------------------------- real runs

CONFTEST = """
import os

import torch

_real = torch.cpu.get_capabilities


def _as_configured():
    # The two features torchao's int8 matmul branches on, as this run's CPU would have them.
    vnni = os.environ["CPU"] == "vnni"
    return {**_real(), "avx512_vnni": vnni, "amx_tile": False, "amx_int8": False}


def pytest_configure(config):
    torch.cpu.get_capabilities = _as_configured


def pytest_unconfigure(config):
    torch.cpu.get_capabilities = _real
"""

PROJECT = """
import os

import pytest
import torch
from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

INJECT = os.environ.get("INJECT", "")
torch.manual_seed(0)
int8 = torch.nn.Sequential(torch.nn.Linear(64, 64))
quantize_(int8, Int8DynamicActivationInt8WeightConfig())
dense = torch.nn.Linear(64, 64)
x = torch.randn(4, 64)


def run(model):
    with torch.inference_mode():
        y = model(x)
        if INJECT:  # the regression: a second layer call
            y = model(y)
    return y


@pytest.mark.llmperf(rounds=3, warmup=1)
def test_int8(llmperf):
    llmperf(run, int8)


@pytest.mark.llmperf(rounds=3, warmup=1)
def test_dense(llmperf):
    llmperf(run, dense)
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch) -> pytest.Pytester:
    if torchao is None:
        pytest.skip("torchao is not installed: its int8 matmul is the branch this test flips")
    monkeypatch.delenv("INJECT", raising=False)
    monkeypatch.setenv("CPU", "plain")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_int8=PROJECT)
    run = pytester.runpytest("--llmperf", "--llmperf-gate=work", "--llmperf-update-baselines")
    run.assert_outcomes(passed=2)
    return pytester


def _gate(project: pytest.Pytester, cpu: str, monkeypatch, inject: bool = False):
    monkeypatch.setenv("CPU", cpu)
    monkeypatch.setenv("INJECT", "1" if inject else "")
    return project.runpytest("--llmperf", "--llmperf-gate=work")


def test_another_cpus_branch_informs_and_its_own_entry_then_gates(project, monkeypatch):
    # A CPU with AVX512_VNNI, judged against the entries recorded without it: torchao's
    # u8s8 matmul is other work, said in a note; the dense layer's counts are the same.
    vnni = _gate(project, "vnni", monkeypatch)
    vnni.assert_outcomes(passed=2)
    vnni.stdout.fnmatch_lines(
        [
            "*work not gated: its entry was recorded under another dispatch context "
            "(recorded without avx512_vnni)*aten._to_copy 3 -> 5 (+2)*",
            "work gate: 1 of 2 tests gated: 1 against another context's entry with equal counts",
            "work gate: 1 test only informed, counts differ from an entry of another dispatch "
            "context (recorded without avx512_vnni)*",
        ]
    )
    # The context that recorded them still gates exactly: a second layer call fails.
    _gate(project, "plain", monkeypatch, inject=True).assert_outcomes(failed=2)

    # Recording on the VNNI CPU adds its entries beside the others, which stay as they were.
    path = project.path / "baselines" / "work" / "cpu.json"
    before = json.loads(path.read_text())["tests"]
    monkeypatch.setenv("INJECT", "")
    monkeypatch.setenv("CPU", "vnni")
    project.runpytest(
        "--llmperf", "--llmperf-gate=work", "--llmperf-update-baselines"
    ).assert_outcomes(passed=2)
    after = json.loads(path.read_text())["tests"]
    for nodeid, entry in before.items():
        (key,) = entry["contexts"]
        assert after[nodeid]["contexts"][key] == entry["contexts"][key]
        assert len(after[nodeid]["contexts"]) == 2
    exact = _gate(project, "vnni", monkeypatch)
    exact.assert_outcomes(passed=2)
    exact.stdout.fnmatch_lines(
        ["work gate: 2 of 2 tests gated: 2 against an entry of this dispatch context"]
    )
    failed = _gate(project, "vnni", monkeypatch, inject=True)
    failed.assert_outcomes(failed=2)
    failed.stdout.fnmatch_lines(["*REGRESSION work: aten._to_copy 5 -> 10 (+5)*"])
