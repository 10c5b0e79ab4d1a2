"""A generation under torch.compile: a recompilation in the middle of it is an ITL outlier in
the report and, through the work signature, a counted recompile that fails the test.

The decode step is compiled with ``backend="eager"`` (dynamo's graphs and guards without
inductor's C++ compile, which takes 40-100 s on a 2-core CPU). The candidate's step gets
a new shape at token 12, as a cache that grows past its bucket would: dynamo recompiles
once, in the middle of the first generation.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

PROJECT = """
import os

import pytest
import torch

SHIFT_AT = int(os.environ.get("SHIFT_AT", "0"))


@torch.compile(backend="eager")
def step(x):
    return torch.tanh(x @ x.T).sum(-1)


def decode(n=24):
    x = torch.randn(8, 8)
    for i in range(n):
        if SHIFT_AT and i == SHIFT_AT:
            x = torch.randn(9, 8)  # a new shape mid-generation: dynamo recompiles
        yield step(x)


@pytest.mark.llmperf(rounds=3, warmup=0)
def test_decode(llmperf):
    torch._dynamo.reset()
    llmperf.generation(decode)
"""


@pytest.fixture(scope="module", autouse=True)
def _dynamo_loaded() -> None:
    """Load what a compile and a dynamic recompile import, before ``pytester`` snapshots
    ``sys.modules``: the modules a run imports are dropped after it, and inductor's
    caches, which register themselves once per process, cannot be imported twice."""
    import torch

    warm = torch.compile(lambda x: torch.tanh(x @ x.T).sum(-1), backend="eager")
    warm(torch.ones(8, 8))
    warm(torch.ones(9, 8))
    torch._dynamo.reset()


def test_a_recompile_mid_generation_is_an_itl_outlier_and_a_work_regression(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_compiled_decode=PROJECT)
    monkeypatch.delenv("SHIFT_AT", raising=False)
    recorded = pytester.runpytest(
        "--llmperf", "--llmperf-update-baselines", "-p", "no:cacheprovider"
    )
    recorded.assert_outcomes(passed=1)
    monkeypatch.setenv("SHIFT_AT", "12")
    run = pytester.runpytest(
        "--llmperf", "--llmperf-report=r.json", "--llmperf-gate=work", "-p", "no:cacheprovider"
    )
    run.assert_outcomes(failed=1)
    out = run.stdout.str()
    assert "REGRESSION work:" in out and "recompiles 0 -> 1 (step: tensor 'x' size" in out, out
    [result] = json.loads((pytester.path / "r.json").read_text())["results"]
    metrics = result["metrics"]
    assert metrics["work.recompiles"]["value"] == 1
    # The first generation paid for the recompile at token 12: its interval is the tail.
    itls = result["tokens"][""]["itl_s"][:23]  # the first generation's 23 intervals
    worst = max(range(len(itls)), key=itls.__getitem__)
    assert worst == 11, itls  # interval 11 ends at token 12 (intervals start at token 1)
    assert metrics["itl_max"]["value"] > 20 * metrics["itl_p50"]["value"]
