"""``python -m pytest_llmperf doctor``: the pure rules with fixed inputs, one real quick run.

The rules (which gate is fit, the recommendation, the exit status, parsing of
machine files) are tested with numbers far from every threshold; the end-to-end
run checks the facts are there and that its exit status agrees with its own
numbers, whatever this machine's noise is.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pytest_llmperf import doctor

ROOT = Path(__file__).resolve().parents[2]
TOL = 0.10


# ----------------------------------------------------------------- recommendation, exit status


@pytest.mark.parametrize(
    ("stored", "paired", "expected"),
    [
        (0.02, 0.01, "stored"),  # both see 10%: the cheaper stored gate
        (0.40, 0.01, "compare"),  # drift hides 10% from the stored gate, pairs still see it
        (0.40, 0.50, "work"),  # neither timing gate sees 10%
        (None, None, "work"),  # nothing measured: only counting is safe
        (None, 0.02, "compare"),
    ],
)
def test_recommend_picks_the_cheapest_gate_that_sees_the_tolerance(stored, paired, expected):
    assert doctor.recommend(stored, paired, TOL) == expected


@pytest.mark.parametrize(
    ("gate", "stored", "paired", "status"),
    [
        ("stored", 0.02, 0.50, 0),
        ("stored", 0.40, 0.01, 1),  # stored asked, cannot see 10%: not fit
        ("stored", None, 0.01, 1),
        ("compare", 0.40, 0.01, 0),
        ("compare", 0.01, 0.40, 1),
        ("work", 0.40, 0.50, 0),  # the work gate counts, never unfit
        ("work", None, None, 0),
    ],
)
def test_exit_status_says_whether_the_gate_asked_is_fit(gate, stored, paired, status):
    assert doctor.exit_status(gate, stored, paired, TOL) == status


@pytest.mark.parametrize(("gate", "status"), [("stored", 1), ("compare", 0), ("work", 0)])
def test_decide_exit_status_follows_the_gate_asked_not_the_recommendation(gate, status):
    noisy_shared_runner = {"stored_detectable": 0.35, "paired_detectable": 0.03}
    verdict = doctor.decide(noisy_shared_runner, gate, TOL)
    assert verdict["recommendation"] == "compare"
    assert verdict["exit_status"] == status and verdict["fit"] is (status == 0)
    assert verdict["gates"]["stored"] == {"detectable": 0.35, "fit": False}
    assert verdict["gates"]["compare"] == {"detectable": 0.03, "fit": True}
    assert verdict["gates"]["work"]["fit"] is True


def _samples(center: float, n: int = 40, jitter: float = 0.01) -> list[float]:
    """Deterministic samples around ``center`` with a ~1% relative spread."""
    return [center * (1 + jitter * ((i * 7) % 5 - 2)) for i in range(n)]


def test_noise_summary_quiet_runner_sees_small_changes_on_both_gates():
    noise = doctor.noise_summary(
        [_samples(1e-3)] * 4, [1 + 0.002 * ((i % 3) - 1) for i in range(60)]
    )
    assert noise["between_process_drift"] == pytest.approx(0.0, abs=1e-12)
    assert noise["stored_detectable"] < 0.02
    assert noise["paired_detectable"] < 0.01
    assert noise["pairs"] == 60 and noise["rounds_per_process"] == [40] * 4


def test_noise_summary_drift_between_processes_floors_the_stored_gate():
    runs = [_samples(m) for m in (1.0e-3, 1.5e-3, 1.0e-3, 0.7e-3)]
    noise = doctor.noise_summary(runs, [1.0] * 10)
    assert noise["between_process_drift"] == pytest.approx(0.5)  # plugin's run_spread
    assert noise["stored_detectable"] >= 0.5
    assert (
        doctor.recommend(noise["stored_detectable"], noise["paired_detectable"], TOL) == "compare"
    )


def test_noise_summary_an_aa_offset_floors_the_paired_gate():
    noise = doctor.noise_summary([_samples(1e-3)] * 2, [1.3] * 20)  # identical code, 30% apart
    assert noise["paired_offset"] == pytest.approx(0.3)
    assert noise["paired_detectable"] == pytest.approx(0.3)


def test_noise_summary_without_measurements_is_unknown_not_zero():
    noise = doctor.noise_summary([], [])
    assert noise["stored_detectable"] is None and noise["paired_detectable"] is None


# ----------------------------------------------------------------- too few pairs: words, not a number

#: Three A/A pairs as doctor --quick once took them: far apart, so a "detectable change"
#: computed from them is a huge number (``>= 5826.3%`` was printed).
THREE_PAIRS = [0.2, 1.0, 5.0]


def _report(noise: dict) -> dict:
    """A whole doctor report around ``noise``, as ``run`` builds it, for ``_text``."""
    workload = {"description": "w", "device": "cpu", "threads": 1, "window_s": 0.3}
    return {
        "noise": {**noise, "error": None},
        **doctor.decide(noise, "compare", TOL),
        "workload": workload,
        "wall_s": 3.0,
        "quick": True,
        "facts": {},
        "advice": [],
    }


def test_a_detectable_change_from_too_few_pairs_is_said_not_computed():
    """Issue 26: from 3 pairs doctor printed ``A/B (--llmperf-compare) >= 5826.3%``; the sign
    test cannot decide anything below MIN_PAIRS, so every place says so in the same words."""
    from pytest_llmperf.judge.decision import MIN_PAIRS
    from pytest_llmperf.judge.detectable import paired_detectable

    assert doctor.QUICK.min_pairs >= MIN_PAIRS  # --quick takes enough pairs to say a number
    words = f"fewer than {MIN_PAIRS} pairs (only 3)"
    assert paired_detectable(THREE_PAIRS) == math.inf
    noise = doctor.noise_summary([_samples(1e-3)] * 2, THREE_PAIRS)
    assert noise["paired_detectable"] is None and noise["paired_shortfall"] == words
    report = _report(noise)
    assert report["gates"]["compare"]["why"] == words and report["fit"] is False
    json.dumps(report, allow_nan=False)  # strict JSON: no Infinity
    (line,) = [ln for ln in doctor._text(report).splitlines() if "A/B" in ln]
    assert words in line and "%" not in line, line
    # Enough pairs: a number again, and no words.
    enough = doctor.noise_summary([_samples(1e-3)] * 2, [1.0, 1.01, 0.99] * MIN_PAIRS)
    assert enough["paired_shortfall"] == "" and enough["paired_detectable"] < 0.05
    (line,) = [ln for ln in doctor._text(_report(enough)).splitlines() if "A/B" in ln]
    assert ">= " in line and "fewer than" not in line, line


def test_too_few_rounds_per_process_is_said_for_the_stored_gate():
    from pytest_llmperf.judge.decision import MIN_SAMPLES

    noise = doctor.noise_summary([_samples(1e-3, n=3)] * 2, [])
    assert noise["stored_detectable"] is None
    assert noise["stored_shortfall"] == f"fewer than {MIN_SAMPLES} rounds (only 3)"
    (line,) = [ln for ln in doctor._text(_report(noise)).splitlines() if "stored" in ln]
    assert noise["stored_shortfall"] in line, line


def test_the_per_test_blind_note_uses_the_same_words_for_too_few_pairs():
    """A compare gate judged on 3 pairs is blind: its note says why, as doctor does."""
    from pytest_llmperf.judge.decision import MIN_PAIRS, decide_paired
    from pytest_llmperf.judge.outcome import Verdict
    from pytest_llmperf.judge.verdict import Judge, strict_blind
    from pytest_llmperf.results import Metric, TestResult

    xs = [1e-3] * 9
    r = TestResult("t.py::test_ab", tier="smoke")
    r.add(Metric("time", 1e-3, "s", higher_is_better=False, kind="time", samples=xs, tolerance=0.1))
    stored = {"value": 1e-3, "unit": "s", "kind": "time", "runs": [{"samples": xs}]}
    e = {"status": "ok", "tier": "smoke", "metrics": {"time": stored}}
    paired = decide_paired(
        "time", ratios=THREE_PAIRS, reference=1e-3, current=1e-3, tolerance=0.1,
        higher_is_better=False,
    )  # fmt: skip
    Judge(e, where="the reference", paired={"time": paired}).judge(r)
    strict_blind(r, strict=False)
    assert r.verdict is Verdict.PASS
    assert r.notes == [
        f"time: cannot judge any change: fewer than {MIN_PAIRS} pairs (only 3); "
        "tolerance 10%: this gate cannot see its tolerance"
    ]


# ----------------------------------------------------------------- machine facts from files


def test_parse_cpuinfo_reads_model_and_mhz():
    text = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\ncpu MHz\t\t: 2450.000\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\ncpu MHz\t\t: 3000.5\n"
    assert doctor.parse_cpuinfo(text) == {"model": "AMD EPYC 7B13", "mhz": [2450.0, 3000.5]}
    assert doctor.parse_cpuinfo("garbage") == {"model": None, "mhz": []}


def test_summarize_governors():
    assert doctor.summarize_governors(["performance"] * 4) == "performance (all 4 CPUs)"
    assert doctor.summarize_governors(["powersave", "performance", "powersave"]) == (
        "powersave x2, performance x1"
    )


def _fake_cpu(root: Path, cpu: int, governor: str, cur: int, lo: int, hi: int) -> None:
    d = root / f"cpu{cpu}" / "cpufreq"
    d.mkdir(parents=True)
    for name, value in (("scaling_governor", governor), ("scaling_cur_freq", cur),
                        ("cpuinfo_min_freq", lo), ("cpuinfo_max_freq", hi)):  # fmt: skip
        (d / name).write_text(f"{value}\n")


def test_cpu_facts_from_sysfs(tmp_path):
    _fake_cpu(tmp_path, 0, "powersave", 1_200_000, 800_000, 3_500_000)
    _fake_cpu(tmp_path, 1, "powersave", 1_400_000, 800_000, 3_500_000)
    _fake_cpu(tmp_path, 2, "performance", 3_400_000, 800_000, 3_500_000)  # not ours
    (tmp_path / "cpufreq").mkdir()  # not a CPU
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name : Test CPU\n")
    facts = doctor.cpu_facts(
        str(tmp_path), str(cpuinfo), usable={0, 1}, load=(3.0, 2.0, 1.0), share=(0.9, 0.05)
    )
    assert facts["cpu_model"]["value"] == "Test CPU"
    assert facts["governor"]["value"] == ["powersave"]
    assert facts["frequency"]["value"] == {"current_mhz": 1300, "min_mhz": 800, "max_mhz": 3500}
    assert "below 80% of max" in facts["frequency"]["text"]
    assert facts["load"]["value"] == [3.0, 2.0, 1.0]
    assert facts["cpu_busy"]["value"] == {"busy": 0.9, "steal": 0.05}
    assert "stolen" in facts["cpu_busy"]["text"]


def test_cpu_facts_missing_files_are_unknown_with_a_reason(tmp_path):
    facts = doctor.cpu_facts(str(tmp_path / "nothing"), str(tmp_path / "no-cpuinfo"))
    for key in ("governor", "frequency", "load", "cpu_busy"):
        assert facts[key]["value"] is None
        assert facts[key]["text"].startswith("unknown (")
    assert facts["cpu_model"]["value"]  # falls back to the platform's name


def test_proc_stat_busy_and_steal_share():
    before = doctor.parse_proc_stat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n")
    after = doctor.parse_proc_stat("cpu  400 0 100 900 50 0 0 50 0 0\n")
    assert before == (150, 0, 1000) and after == (550, 50, 1500)
    assert doctor.busy_share(before, after) == pytest.approx((0.8, 0.1))
    assert doctor.busy_share(before, None) is None
    assert doctor.parse_proc_stat("intr 1 2 3") is None


@pytest.mark.parametrize(
    ("threads", "usable", "busy", "online", "advice"),
    [
        (8, 2, 0.1, 2, 2),  # more threads than cores
        (2, 2, 0.1, 2, None),  # quiet, threads = cores: fine
        (2, 2, 2.0, 2, 1),  # others keep both cores busy
        (16, 16, 4.0, 16, None),  # a quarter busy: not loaded
        (16, 16, 12.0, 16, 4),  # three quarters busy: use what is left
        (1, 2, 5.0, 2, None),  # already one thread
        (4, 4, None, 4, None),  # load unknown, threads = cores
    ],
)
def test_thread_advice(threads, usable, busy, online, advice):
    assert doctor.thread_advice(threads, usable, busy, online) == advice


def test_busy_cores_takes_the_larger_of_load_and_busy_share():
    assert doctor.busy_cores(0.5, 0.9, 2) == pytest.approx(1.8)
    assert doctor.busy_cores(3.0, 0.1, 2) == pytest.approx(3.0)
    assert doctor.busy_cores(None, None, 2) is None


# ----------------------------------------------------------------- NVML, with a fake library


def test_decode_clock_reasons():
    assert doctor.decode_clock_reasons(0) == []
    assert doctor.decode_clock_reasons(0x1 | 0x4 | 0x40) == [
        "gpu idle",
        "software power cap",
        "hardware thermal slowdown",
    ]
    assert doctor.decode_clock_reasons(0x10000) == ["other 0x10000"]


def test_counter_interval_from_polled_readings():
    # polled every 5 ms, the counter moves every 20 ms (starting at an arbitrary phase)
    readings = [(i * 0.005, float((i + 3) // 4)) for i in range(40)]
    assert doctor.counter_interval(readings) == pytest.approx(0.020)
    assert doctor.counter_interval([(i * 0.005, 7.0) for i in range(40)]) is None
    assert doctor.counter_interval([]) is None


class _FakeNVML:
    """Enough of pynvml for ``nvml_facts``: time from a fake clock, energy ticking every 20 ms."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock

    def nvmlDeviceGetPersistenceMode(self, h):
        return 0

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [
            SimpleNamespace(pid=os.getpid()),
            SimpleNamespace(pid=4242),
            SimpleNamespace(pid=99),
        ]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        raise RuntimeError("Not Supported")

    def nvmlDeviceGetClockInfo(self, h, kind):
        return {1: 1410, 2: 2619}[kind]

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return {1: 1980, 2: 2619}[kind]

    def nvmlDeviceGetDefaultApplicationsClock(self, h, kind):
        return {1: 1755, 2: 2619}[kind]

    def nvmlDeviceGetApplicationsClock(self, h, kind):
        return {1: 1755, 2: 2619}[kind]

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return 0x4  # software power cap

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return int(self.clock[0] / 0.020) * 1000


def test_nvml_facts_with_a_fake_library():
    now = [0.0]

    def clock() -> float:
        now[0] += 0.005
        return now[0]

    facts = doctor.nvml_facts(
        _FakeNVML(now), object(), exclude_pids=[99], changes=4, timeout_s=5.0, clock=clock
    )
    assert facts["gpu_persistence"]["value"] is False
    assert facts["gpu_other_processes"]["value"] == [4242]  # ourselves and the probe left out
    assert facts["gpu_sm_clock"]["value"]["current_mhz"] == 1410
    assert facts["gpu_sm_clock"]["value"]["max_mhz"] == 1980
    assert facts["gpu_clock_reasons"]["value"]["slowing"] is True
    assert facts["gpu_application_clocks"]["value"]["locked"] is False
    assert facts["gpu_energy_interval"]["value"] == pytest.approx(0.020, abs=0.006)


def test_nvml_facts_never_crash_on_a_library_that_refuses_everything():
    class Refuses:
        def __getattr__(self, name):
            def fail(*args):
                raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")

            return fail

    facts = doctor.nvml_facts(Refuses(), object(), changes=2, timeout_s=0.05)
    assert len(facts) == 7
    assert all(f["value"] is None and f["text"].startswith("unknown (NVML") for f in facts.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
def test_gpu_facts_on_a_real_gpu():
    facts = doctor.gpu_facts([], doctor.QUICK)
    assert facts["gpu"]["value"]
    assert "gpu_nvml" in facts or "gpu_energy_interval" in facts
    for key in ("gpu_persistence", "gpu_sm_clock", "gpu_clock_reasons"):
        if key in facts:
            assert "AttributeError" not in facts[key]["text"], facts[key]


# ----------------------------------------------------------------- command line


@pytest.mark.parametrize(
    "argv", [["--gate", "bogus"], ["--tolerance", "ten"], ["--threads", "0"], ["--nope"]]
)
def test_bad_usage_exits_2(argv, capsys):
    from pytest_llmperf.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["doctor", *argv])
    assert exc.value.code == 2
    assert "python -m pytest_llmperf doctor" in capsys.readouterr().err


def test_main_dispatches_doctor_with_the_rest_of_the_arguments(monkeypatch):
    from pytest_llmperf.__main__ import main

    seen = []
    monkeypatch.setattr(doctor, "main", lambda argv: seen.append(argv) or 7)
    assert main(["doctor", "--quick", "--gate", "work"]) == 7
    assert seen == [["--quick", "--gate", "work"]]


def test_main_still_dispatches_the_roofline_cli(capsys):
    from pytest_llmperf.__main__ import main

    assert main(["list"]) == 0
    assert "opt-1.3b" in capsys.readouterr().out


def test_quick_run_end_to_end_reports_facts_and_an_exit_status_that_matches():
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run(
        [sys.executable, "-m", "pytest_llmperf", "doctor", "--quick", "--json", "--threads", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert r.returncode in (0, 1) and r.stdout.startswith("{"), r.stderr[-3000:]
    report = json.loads(r.stdout)
    facts = report["facts"]
    for key in ("cpu_model", "governor", "frequency", "load", "cpu_busy", "threads",
                "rss_peak_reset", "schedstat", "gpu"):  # fmt: skip
        assert set(facts[key]) == {"value", "text"}, key
    assert facts["threads"]["value"]["torch_threads"] == 1
    if not torch.cuda.is_available():
        assert facts["gpu"]["text"] == "no GPU"
    noise = report["noise"]
    assert noise["error"] is None
    assert len(noise["process_medians_s"]) == 2 and noise["pairs"] >= 3
    assert all(0 < m < 10 for m in noise["process_medians_s"])
    stored, paired = (
        report["gates"]["stored"]["detectable"],
        report["gates"]["compare"]["detectable"],
    )
    assert stored is not None and paired is not None
    # the verdict follows from its own numbers: stored asked (the default)
    assert report["gate"] == "stored" and report["tolerance"] == pytest.approx(0.10)
    assert report["recommendation"] == doctor.recommend(stored, paired, 0.10)
    assert r.returncode == (0 if stored <= 0.10 else 1)
    assert (r.returncode == 0) == (report["recommendation"] == "stored")
