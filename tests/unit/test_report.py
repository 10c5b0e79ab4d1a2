"""output/: every report format's shape, from hand-built TestResults (no torch, fast).

The scenario suite's reference tables (001/003/004/000) come from
``tests/benchmarks/conftest.py`` through the report hooks, as in a session of the suite.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import random
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pytest_llmperf import hookspec, units
from pytest_llmperf.judge.outcome import Verdict
from pytest_llmperf.output import REPORT_SUFFIXES, write_report
from pytest_llmperf.output.markdown import render_markdown
from pytest_llmperf.results import Metric, Status, TestResult

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

SESSION = {
    "device": {"key": "cpu-test", "name": "Test CPU"},
    "fingerprint": {"torch": "2.13.0", "python": "3.11.7"},
    "tier": "smoke",
    "baseline_file": "baselines/cpu-test.json",
    "started": "2025-01-01T00:00:00+00:00",
    "duration_s": 12.5,
}


def _time(samples_ms: list[float]) -> Metric:
    xs = [x / 1000 for x in samples_ms]
    return Metric(
        "time", sorted(xs)[len(xs) // 2], "s", higher_is_better=False, kind="time", samples=xs
    )


def transformer_results() -> list[TestResult]:
    rng = random.Random(0)
    out = []
    sizes = [("small", 768, 12, 12), ("medium", 1024, 24, 16)]
    for size, d, layers, heads in sizes:
        for ctx in (128, 256):
            for warm in (0, 1):
                for fwd in (False, True):
                    base = (40 if fwd else 110) * (d / 768) * (1 + ctx / 1024)
                    samples = [base + rng.gauss(0, 2) for _ in range(10)]
                    if warm == 0:
                        samples[0] += 600
                    r = TestResult(
                        nodeid=f"tests/benchmarks/test_transformer_lm.py::test_sweep[{size}-{ctx}-w{warm}-{'fwd' if fwd else 'fwdbwd'}]",
                        group="transformer_lm",
                        tier="smoke",
                        params=dict(
                            model_size=size,
                            d_model=d,
                            d_ff=4 * d,
                            num_layers=layers,
                            num_heads=heads,
                            context_length=ctx,
                            batch_size=4,
                            num_warmups=warm,
                            num_trials=10,
                            forward_only=fwd,
                        ),
                        verdict=Verdict.PASS,
                    )
                    r.add(_time(samples))
                    r.add(
                        Metric(
                            "throughput",
                            4 * ctx / (base / 1000),
                            "tokens/s",
                            higher_is_better=True,
                            kind="throughput",
                        )
                    )
                    r.add(
                        Metric(
                            "peak_memory",
                            1.5e9 * d / 768,
                            "B",
                            higher_is_better=False,
                            kind="memory",
                        )
                    )
                    r.add(
                        Metric(
                            "mfu", 0.31, "", higher_is_better=True, kind="efficiency", gated=False
                        )
                    )
                    r.baseline_values = {
                        "time": base / 1000 * 1.01,
                        "throughput": 4 * ctx / (base / 1000) * 0.99,
                    }
                    out.append(r)
    oom = TestResult(
        nodeid="tests/benchmarks/test_transformer_lm.py::test_sweep[large-1024-w1-fwdbwd]",
        group="transformer_lm",
        status=Status.OOM,
        params=dict(
            model_size="large",
            d_model=1280,
            num_layers=36,
            num_heads=20,
            context_length=1024,
            batch_size=4,
            num_warmups=1,
            num_trials=10,
            forward_only=False,
        ),
        verdict=Verdict.PASS,
        verdict_lines=["status: oom, as in the baseline"],
    )
    out.append(oom)
    return out


def decode_results() -> list[TestResult]:
    out = []
    for model, size_gb in (("Llama-2-7b-chat-hf", 13.21), ("Meta-Llama-3-8B", 15.01)):
        for mode, factor in (("bf16", 1.0), ("int8wo", 0.5), ("int8dq", 0.5)):
            r = TestResult(
                nodeid=f"tests/benchmarks/test_llama_decode.py::test_decode[{model}-{mode}-compile]",
                group="llama_decode",
                params=dict(model=model, mode=mode, compile=True, dtype="bfloat16"),
                verdict=Verdict.PASS,
            )
            tps = 107.38 / factor if mode != "int8dq" else 9.61
            r.add(
                Metric(
                    "throughput",
                    tps,
                    "tok/s",
                    higher_is_better=True,
                    kind="throughput",
                    samples=[tps * 0.99, tps, tps * 1.01],
                )
            )
            r.add(
                Metric(
                    "model_size",
                    size_gb * factor,
                    "GB",
                    higher_is_better=False,
                    kind="other",
                    gated=False,
                )
            )
            r.add(
                Metric(
                    "mem_per_s",
                    size_gb * factor * tps,
                    "GB/s",
                    higher_is_better=True,
                    kind="other",
                    gated=False,
                )
            )
            r.add(
                Metric(
                    "peak_memory_reserved",
                    13.88e9 * factor,
                    "B",
                    higher_is_better=False,
                    kind="memory",
                )
            )
            r.add(Metric("ttft", 0.0125 * factor, "s", higher_is_better=False, kind="time"))
            r.add(Metric("itl_p99", 9.5e-3 * factor, "s", higher_is_better=False, kind="tail"))
            r.baseline_values = {"throughput": tps}
            out.append(r)
    for cache in (8192, 131072):
        for kvq, mask, peak in (
            ("none", False, 59.27),
            ("int8", False, 52.62),
            ("int8", True, 34.18),
        ):
            r = TestResult(
                nodeid=f"tests/benchmarks/test_kv_cache.py::test_kv[{cache}-{kvq}-{mask}]",
                group="kv_cache",
                params=dict(
                    model="Meta-Llama-3.1-8B",
                    cache_size=cache,
                    kv_quant=kvq,
                    linear_causal_mask=mask,
                ),
                verdict=Verdict.NO_BASELINE,
            )
            r.add(
                Metric(
                    "throughput",
                    19.71 * 8192 / cache,
                    "tok/s",
                    higher_is_better=True,
                    kind="throughput",
                )
            )
            r.add(
                Metric("model_size", 15.01, "GB", gated=False, kind="other", higher_is_better=False)
            )
            r.add(
                Metric(
                    "mem_per_s",
                    15.01 * 19.71 * 8192 / cache,
                    "GB/s",
                    higher_is_better=True,
                    gated=False,
                    kind="other",
                )
            )
            r.add(
                Metric(
                    "peak_memory_reserved",
                    peak * 1e9 * cache / 131072,
                    "B",
                    higher_is_better=False,
                    kind="memory",
                )
            )
            out.append(r)
    return out


def batched_results() -> list[TestResult]:
    out = []
    for n in (4, 8):
        for p in (128, 512, 1024):
            oom = n == 8 and p == 1024
            r = TestResult(
                nodeid=f"tests/benchmarks/test_batched_generation.py::test_ab[N{n}-P{p}]",
                group="batched_generation",
                status=Status.OOM if oom else Status.OK,
                params=dict(num_batches=n, prompt_len=p, gpu_batch_size=8, gen_len=32),
                verdict=Verdict.PASS,
            )
            if not oom:
                lat_o, lat_d = 0.66 * n * (1 + p / 1024), 0.5 * n * (1 + p / 2048)
                thr_o, thr_d = 8 * n * 32 / lat_o, 8 * n * 32 / lat_d
                mem_o, mem_d = 2 + n * p / 300, 2 + n * p / 320
                for name, value, unit, hib in (
                    ("origin.latency", lat_o, "s", False),
                    ("diagonal.latency", lat_d, "s", False),
                    ("origin.throughput", thr_o, "tok/s", True),
                    ("diagonal.throughput", thr_d, "tok/s", True),
                    ("origin.peak_memory", mem_o, "GiB", False),
                    ("diagonal.peak_memory", mem_d, "GiB", False),
                ):
                    r.add(
                        Metric(name, value, unit, kind="other", higher_is_better=hib, gated=False)
                    )
                r.add(
                    Metric(
                        "scale.throughput", thr_d / thr_o, "x", higher_is_better=True, kind="ratio"
                    )
                )
                r.add(
                    Metric(
                        "scale.peak_memory",
                        mem_d / mem_o,
                        "x",
                        higher_is_better=False,
                        kind="ratio",
                    )
                )
                for side, ttft in (("reference", 0.2 * n), ("candidate", 0.1 * n)):
                    r.add(
                        Metric(
                            f"schedule.{side}.ttft",
                            ttft,
                            "s",
                            gated=False,
                            kind="other",
                            higher_is_better=False,
                        )
                    )
                r.add(
                    Metric("schedule.ttft_speedup", 2.0, "x", higher_is_better=True, kind="ratio")
                )
                r.baseline_values = {"scale.throughput": thr_d / thr_o * 1.02}
            out.append(r)
    return out


def estimator_results() -> list[TestResult]:
    out = []
    for model, est, meas, mem in (
        ("facebook/opt-1.3b", 693.77, 740.79, 5.53),
        ("AICrossSim/clm-60m", 121.46, 112.05, 6.16),
    ):
        r = TestResult(
            nodeid=f"tests/benchmarks/test_estimator.py::test_estimate[{model}]",
            group="estimator",
            params=dict(model=model, device="NVIDIA RTX A5000"),
            verdict=Verdict.PASS,
        )
        err = (meas - est) / meas * 100
        r.add(
            Metric(
                "runtime_ms.estimated", est, "ms", gated=False, kind="other", higher_is_better=False
            )
        )
        r.add(
            Metric(
                "runtime_ms.measured", meas, "ms", gated=False, kind="other", higher_is_better=False
            )
        )
        r.add(Metric("runtime_ms.error_pct", err, "%", kind="other", higher_is_better=False))
        r.add(
            Metric(
                "energy_j.estimated",
                est / 1000 * 230,
                "J",
                gated=False,
                kind="other",
                higher_is_better=False,
            )
        )
        r.add(
            Metric(
                "memory_gb.estimated", mem, "GB", gated=False, kind="other", higher_is_better=False
            )
        )
        r.add(
            Metric(
                "memory_gb.measured",
                mem * 0.998,
                "GB",
                gated=False,
                kind="other",
                higher_is_better=False,
            )
        )
        r.add(Metric("memory_gb.error_pct", -0.2, "%", kind="other", higher_is_better=False))
        out.append(r)
    return out


def other_results() -> list[TestResult]:
    a = TestResult(
        nodeid="tests/test_mine.py::test_matmul[1024]",
        group="",
        params=dict(n=1024),
        verdict=Verdict.REGRESSION,
        verdict_lines=["time: 1.20 ms vs baseline 1.00 ms (+20.0%, tolerance 5%, p=0.001)"],
        fingerprint_diff={"torch": ["2.12.0", "2.13.0"]},
        baseline_values={"time": 1.0e-3, "throughput": 2.1e12},
    )
    a.add(
        Metric(
            "time",
            1.2e-3,
            "s",
            higher_is_better=False,
            kind="time",
            samples=[1.19e-3, 1.2e-3, 1.21e-3, 1.22e-3],
        )
    )
    a.add(Metric("throughput", 1.79e12, "FLOP/s", higher_is_better=True, kind="throughput"))
    a.add(Metric("mbu", 0.42, "", higher_is_better=True, kind="efficiency", gated=False))
    b = TestResult(
        nodeid="tests/test_mine.py::test_matmul[2048]",
        params=dict(n=2048),
        verdict=Verdict.IMPROVED,
        baseline_values={"time": 9.0e-3},
        notes=["much faster than baseline: refresh with --llmperf-update-baselines"],
    )
    b.add(
        Metric(
            "time",
            7.0e-3,
            "s",
            higher_is_better=False,
            kind="time",
            samples=[7.0e-3, 7.1e-3, 6.9e-3],
        )
    )
    c = TestResult(
        nodeid="tests/test_mine.py::test_noisy",
        verdict=Verdict.INCONCLUSIVE,
        verdict_lines=["time: noise too large to decide"],
    )
    c.add(
        Metric("time", 2e-3, "s", higher_is_better=False, kind="time", samples=[1e-3, 3e-3, 2e-3])
    )
    return [a, b, c]


def all_results() -> list[TestResult]:
    return (
        transformer_results()
        + decode_results()
        + batched_results()
        + estimator_results()
        + other_results()
    )


def _shown(cell: str) -> str:
    """A cell as GitHub shows it: Markdown's backslash escapes undone."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", cell.strip())


def _table_after(text: str, heading: str) -> list[list[str]]:
    """Rows (header first) of the first markdown table after ``heading``, as shown."""
    start = text.index(heading)
    lines = text[start:].splitlines()
    rows, seen = [], False
    for line in lines[1:]:
        if line.startswith("|"):
            seen = True
            if re.fullmatch(r"\|[-:|]+\|", line.replace(" ", "")):
                continue
            rows.append([_shown(c) for c in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif seen:
            break
    return rows


def _load_suite_conftest() -> ModuleType:
    """tests/benchmarks/conftest.py, imported as pytest does: its folder first on sys.path."""
    spec = importlib.util.spec_from_file_location(
        "llmperf_suite_conftest", BENCHMARKS / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def suite_hook():
    """The hook relay of a session of the shipped suite: the plugin's specs + the suite's conftest."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCHMARKS))
        pm = pytest.PytestPluginManager()
        pm.add_hookspecs(hookspec)
        pm.register(_load_suite_conftest())
        yield pm.hook


def _headings(text: str, level: str = "## ") -> list[str]:
    return [line[len(level) :] for line in text.splitlines() if line.startswith(level)]


# --------------------------------------------------------------------------- tests


def test_unknown_suffix_is_an_error_naming_path_and_suffixes(tmp_path):
    path = tmp_path / "report.txt"
    with pytest.raises(ValueError) as info:
        write_report(path, all_results(), SESSION)
    msg = str(info.value)
    assert str(path) in msg and "'.txt'" in msg
    assert REPORT_SUFFIXES == (".md", ".json", ".html")
    for suffix in REPORT_SUFFIXES:
        assert suffix in msg
    assert not path.exists()


def test_markdown_summary_table(tmp_path, suite_hook):
    path = tmp_path / "sub" / "r.md"
    write_report(path, all_results(), SESSION, hook=suite_hook)
    text = path.read_text()
    assert text.startswith("# pytest-llmperf report")
    assert "Test CPU" in text and "smoke" in text and "baselines/cpu-test.json" in text
    rows = _table_after(text, "## Verdicts")
    assert rows[0] == [
        "test",
        "verdict",
        "fingerprint change",
        "headline metric",
        "baseline",
        "current",
        "change",
    ]
    by_test = {r[0]: r for r in rows[1:]}
    assert len(by_test) == len(all_results())
    # the most alarming first: regression, inconclusive, improved, no-baseline, pass
    order = [r[1] for r in rows[1:]]
    assert order == sorted(order, key=lambda v: Verdict(v).severity)
    assert order[:3] == ["regression", "inconclusive", "improved"] and order[-1] == "pass"
    reg = by_test["tests/test_mine.py::test_matmul[1024]"]
    assert reg[1] == "regression"
    assert reg[2] == "torch: 2.12.0 → 2.13.0"  # fingerprint difference beside the verdict
    # the metric that regressed most: time +20% (throughput only -14.8%), in units.quantity's form
    assert reg[3] == "time ↓" and reg[4] == "1 ms" and reg[5] == "1.2 ms" and reg[6] == "+20.0%"
    imp = by_test["tests/test_mine.py::test_matmul[2048]"]
    assert imp[1] == "improved" and imp[6] == "-22.2%"
    assert by_test["tests/test_mine.py::test_noisy"][1] == "inconclusive"
    oom = by_test["tests/benchmarks/test_transformer_lm.py::test_sweep[large-1024-w1-fwdbwd]"]
    assert oom[3:] == ["-"] * 4  # nothing measured
    counts = "1 regression, 1 inconclusive, 1 improved, 6 no-baseline, 31 pass"
    assert f"- **Verdicts:** {counts}" in text
    # details carry verdict lines and notes
    assert "tolerance 5%" in text and "refresh with --llmperf-update-baselines" in text


def test_sections_follow_the_suite_order_then_other_groups_then_the_unnamed(suite_hook):
    extra = TestResult("tests/test_z.py::test_z", group="zeta", verdict=Verdict.PASS)
    extra.add(Metric("time", 1e-3, "s", kind="other", higher_is_better=False))
    attn = TestResult("tests/test_a.py::test_a", group="attention", verdict=Verdict.PASS)
    attn.add(Metric("time", 2e-3, "s", kind="other", higher_is_better=False))
    results = other_results() + [extra] + estimator_results() + [attn] + all_results()[:3]
    text = render_markdown(results, SESSION, suite_hook)
    assert _headings(text) == [
        "Verdicts",
        "Transformer LM forward / forward+backward sweep (reference 001/002)",
        "Estimator vs measurement (reference 000)",
        "Group: attention",
        "Group: zeta",
        "tests/test_mine.py",  # the tests in no group, titled by their file
        "Details",
        "Fingerprint",
    ]


def test_suite_groups_without_the_hook_get_the_generic_table():
    text = render_markdown(decode_results(), SESSION)
    assert _headings(text)[1:3] == ["Group: kv_cache", "Group: llama_decode"]  # by name
    assert "### Decode throughput" not in text
    rows = _table_after(text, "## Group: llama_decode")
    assert rows[0][:5] == ["test", "model", "mode", "compile", "dtype"]
    # units.quantity: bytes in binary units
    assert rows[1][rows[0].index("peak_memory_reserved")] == "12.93 GiB"


def test_markdown_transformer_table_has_reference_001_shape(suite_hook):
    text = render_markdown(transformer_results(), SESSION, suite_hook)
    assert _headings(text)[1] == (
        "Transformer LM forward / forward+backward sweep (reference 001/002)"
    )
    rows = _table_after(text, "### Complete results")
    header = rows[0]
    assert header[:11] == [
        "model_size",
        "d_model",
        "context_length",
        "num_layers",
        "num_heads",
        "batch_size",
        "num_warmups",
        "num_trials",
        "forward_only",
        "mean_time_ms",
        "std_time_ms",
    ]
    assert header[11:] == ["status", "mfu", "verdict"]
    body = rows[1:]
    assert len(body) == 17
    # ordered like 001: size, context, warm-up, forward_only False then True
    assert [r[0] for r in body[:8]] == ["small"] * 8
    assert [r[8] for r in body[:2]] == ["False", "True"]
    first = transformer_results()[0]
    xs = [x * 1000 for x in first.metrics["time"].samples]
    mean = sum(xs) / len(xs)
    std = (sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5  # ddof=1
    assert body[0][9] == f"{mean:.2f}" and body[0][10] == f"{std:.2f}"
    assert body[0][11] == "OK" and body[0][12] == "31.0%"
    oom = body[-1]
    assert oom[0] == "large" and oom[9] == "-" and oom[10] == "-" and oom[11] == "OOM"
    warm = _table_after(text, "### Mean time (ms) by warm-up count")
    assert warm[0] == ["model_size", "0", "1"]
    assert [r[0] for r in warm[1:]] == ["small", "medium"]  # large only OOM: no mean


def test_markdown_decode_and_kv_rows_have_reference_003_columns(suite_hook):
    text = render_markdown(decode_results(), SESSION, suite_hook)
    rows = _table_after(text, "### Decode throughput")
    assert rows[0] == [
        "model",
        "mode",
        "compile",
        "dtype",
        "tok/s",
        "mem/s (GB/s)",
        "peak_mem (GB)",
        "model_size (GB)",
        "TTFT (ms)",
        "TPOT (ms)",
        "ITL p50 (ms)",
        "ITL p99 (ms)",
        "status",
        "verdict",
    ]
    first = rows[1]
    assert first[:4] == ["Llama-2-7b-chat-hf", "bf16", "True", "bfloat16"]
    # named-unit columns convert to that (decimal) unit; a generation's latencies in ms
    assert first[4:8] == ["107.38", "1418.49", "13.88", "13.21"]
    assert first[8:12] == ["12.500", "-", "-", "9.500"]
    kv = _table_after(text, "### KV cache size and quantization")
    assert kv[0][:4] == ["model", "cache_size", "kv_quant", "linear_causal_mask"]
    last3 = kv[-3:]
    assert [r[1] for r in last3] == ["131072"] * 3
    assert [r[6] for r in last3] == ["59.27", "52.62", "34.18"]


def test_markdown_batched_generation_has_reference_004_tables(suite_hook):
    text = render_markdown(batched_results(), SESSION, suite_hook)
    assert "gpu_batch_size=8, gen_len=32" in text
    batches = _table_after(text, "### Different batches (prompt 512)")
    assert batches[0][0] == "num batch" and "throughput scale" in batches[0]
    assert [r[0] for r in batches[1:]] == ["4", "8"]
    prompts = _table_after(text, "### Different prompt length")
    assert prompts[0][:2] == ["Num batches", "Prompt"]
    oom_row = [r for r in prompts[1:] if r[:2] == ["8", "1024"]][0]
    assert oom_row[2:8] == ["-"] * 6
    first = prompts[1]  # N=4, P=128: origin latency, throughput, peak mem, then diagonal's
    assert first[2:5] == ["2.970", "344.781", "3.707"] and first[5] == "2.125"
    pivot = _table_after(text, "### Compare scale: throughput")
    assert pivot[0] == ["Num batches \\ Prompt", "128", "512", "1024"]
    assert pivot[2][3] == "-"  # N=8, P=1024 OOM
    tokens = _table_after(text, "### Token latency")
    assert tokens[0][:4] == ["Num batches", "Prompt", "Origin TTFT (ms)", "Diag TTFT (ms)"]
    assert [r[:4] for r in tokens[1:3]] == [["4", p, "800.000", "400.000"] for p in ("128", "512")]
    assert len(tokens) == 1 + 5  # the OOM cell recorded no generation
    assert tokens[1][-3] == "2.000"
    values = {(r[0], p): r[i + 1] for r in pivot[1:] for i, p in enumerate(pivot[0][1:])}
    assert sum(v.startswith("**") for v in values.values()) == 1  # the best cell in bold
    mem = _table_after(text, "### Compare scale: peak mem")
    assert len(mem) == 3 and all(
        float(c.strip("*")) < 1 for r in mem[1:] for c in r[1:] if c != "-"
    )


def test_markdown_estimator_has_reference_000_shape(suite_hook):
    text = render_markdown(estimator_results(), SESSION, suite_hook)
    rows = _table_after(text, "### Estimated vs measured")
    assert rows[0][:2] == ["Model", "Device"]
    for label in ("Runtime (ms)", "Energy (J)", "Memory (GB)"):
        assert [f"{label} Estimated", f"{label} Measured", f"{label} Error"] == [
            c for c in rows[0] if c.startswith(label)
        ]
    opt = rows[1]
    assert opt[:5] == ["facebook/opt-1.3b", "NVIDIA RTX A5000", "693.77", "740.79", "6.35%"]
    assert opt[6] == "-"  # no NVML: energy measured absent, never 0
    assert rows[2][4] == "-8.40%"


def test_markdown_estimator_has_the_several_device_rows_and_reference_x8(suite_hook):
    """A ranked result goes to the second table (the reference's x8 shape); the
    reference's own x8 rows sit beside this estimator's figures for them."""
    ranked = TestResult(
        nodeid="tests/benchmarks/test_tensor_parallel.py::test_tensor_parallel[opt-1.3b-2]",
        group="estimator",
        params=dict(model="facebook/opt-1.3b", device="cpu x 2 (gloo)", ranks=2),
        verdict=Verdict.PASS,
    )
    ranked.add(
        Metric("runtime_ms.estimated", 6.0, "ms", gated=False, kind="other", higher_is_better=False)
    )
    ranked.add(
        Metric("runtime_ms.measured", 12.0, "ms", gated=False, kind="other", higher_is_better=False)
    )
    text = render_markdown([*estimator_results(), ranked], SESSION, suite_hook)
    single = _table_after(text, "### Estimated vs measured\n")
    assert [r[1] for r in single[1:]] == ["NVIDIA RTX A5000", "NVIDIA RTX A5000"]
    several = _table_after(text, "### Estimated vs measured, several devices")
    assert several[1][:5] == ["facebook/opt-1.3b", "cpu x 2 (gloo)", "6.00", "12.00", "50.00%"]

    from pytest_llmperf.roofline.estimator import estimate

    x8 = _table_after(text, "### Reference 000's x8 rows beside this estimator")
    assert [r[0] for r in x8[1:]] == ["opt-1.3b", "opt-6.7b"]
    est = estimate("opt-1.3b", mode="generate", batch=1, seq_len=128, gen_len=200,
                   dtype="fp16", device="RTX A5000", devices=8, parallel="tp")  # fmt: skip
    assert x8[1][2:6] == [
        units.number(est.runtime_ms), "1311.08", "1415.36",
        f"{(1415.36 - est.runtime_ms) / 1415.36 * 100:.2f}%",
    ]  # fmt: skip
    # One board's energy, as the reference counts it, and memory summed over 8 devices.
    assert x8[1][6] == units.number(est.runtime_s * 230)
    assert x8[1][9] == units.number(est.memory_gb * 8)


def test_generic_group_table_lists_params_metrics_and_mbu(suite_hook):
    text = render_markdown(other_results(), SESSION, suite_hook)
    rows = _table_after(text, "## tests/test_mine.py")
    # Each metric that has a baseline gets its baseline beside it.
    assert rows[0] == [
        "test",
        "n",
        "time baseline",
        "time",
        "throughput baseline",
        "throughput",
        "mbu",
        "status",
        "verdict",
    ]
    assert rows[1] == [
        "test_matmul[1024]",
        "1024",
        "1 ms",
        "1.2 ms",
        "2.1e+12 FLOP/s",
        "1.79e+12 FLOP/s",
        "42.0%",
        "OK",
        "regression",
    ]
    assert rows[3][2:6] == ["-", "2 ms", "-", "-"]  # no baseline: nothing beside it


def test_tests_in_no_group_from_several_files_are_performance_tests():
    elsewhere = TestResult("tests/test_other.py::test_matmul[1024]", verdict=Verdict.PASS)
    elsewhere.add(Metric("time", 1e-3, "s", kind="other", higher_is_better=False))
    text = render_markdown([*other_results(), elsewhere], SESSION)
    assert "## Performance tests" in text and "Other performance tests" not in text
    rows = _table_after(text, "## Performance tests")
    # Two files: the node id tells the two test_matmul[1024] apart.
    assert [r[0] for r in rows[1:]] == [r.nodeid for r in other_results()] + [elsewhere.nodeid]


def test_empty_session_still_renders(tmp_path):
    for suffix in REPORT_SUFFIXES:
        path = tmp_path / f"empty{suffix}"
        write_report(path, [], {})
        assert path.read_text().strip()
    assert "no performance tests ran" in (tmp_path / "empty.md").read_text()


def test_json_report_round_trips_results(tmp_path):
    path = tmp_path / "r.json"
    results = all_results()
    write_report(path, results, SESSION)
    text = path.read_text()
    data = json.loads(text)
    assert data["format"] == "pytest-llmperf-report" and data["version"] == 1
    assert data["session"] == SESSION
    assert data["summary"] == {
        "regression": 1,
        "inconclusive": 1,
        "improved": 1,
        "no-baseline": 6,
        "pass": 31,
    }
    assert [r["nodeid"] for r in data["results"]] == [r.nodeid for r in results]
    back = TestResult.from_dict(data["results"][-3])
    assert back.verdict is Verdict.REGRESSION
    assert back.fingerprint_diff == {"torch": ["2.12.0", "2.13.0"]}
    assert back.metrics["time"].samples == results[-3].metrics["time"].samples
    # sorted keys: a stable, diffable file
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def test_html_is_self_contained_and_has_tables(tmp_path, suite_hook):
    pytest.importorskip("matplotlib")
    path = tmp_path / "r.html"
    write_report(path, all_results(), SESSION, hook=suite_hook)
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text
    assert not re.search(r"""(src|href)=["'](http|//)""", text)  # nothing external
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    # baseline-vs-current + one per reference group + the generic sweep
    assert len(pngs) == 7
    assert all(base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", text)
    assert [c.split(":")[0] for c in captions[1:]] == [
        "transformer_lm",
        "llama_decode",
        "kv_cache",
        "batched_generation",
        "estimator",
        "other",  # the generic plot of the unnamed group: time against n
    ]
    for heading in (
        "Complete results",
        "Decode throughput",
        "Compare scale: throughput",
        "Estimated vs measured",
        "Verdicts",
        "Fingerprint",
    ):
        assert heading in text
    assert 'class="v v-regression"' in text
    assert '<span class="bg-no-baseline">6 no-baseline</span>' in text
    assert "torch: 2.12.0 → 2.13.0" in text


def test_html_without_matplotlib_says_so(tmp_path, monkeypatch, suite_hook):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    path = tmp_path / "r.html"
    write_report(path, all_results(), SESSION, hook=suite_hook)
    text = path.read_text()
    assert "data:image/png" not in text
    assert "matplotlib is not installed" in text
    assert "Complete results" in text


def test_report_modules_do_not_import_torch():
    modules = [
        "pytest_llmperf.hookspec",
        "pytest_llmperf.output",
        *(
            f"pytest_llmperf.output.{name}"
            for name in (
                "report",
                "tables",
                "sections",
                "markdown",
                "html",
                "json_report",
                "plots",
                "exporters",
            )
        ),
        "reference_report",  # the suite's tables and plots run where the report is written
        "reference_plots",
    ]
    code = (
        f"import sys; sys.path.insert(0, {str(BENCHMARKS)!r}); "
        + "; ".join(f"import {m}" for m in modules)
        + "; bad = {'torch', 'numpy', 'scipy', 'matplotlib'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
