"""Issue 26: one MFU everywhere. The terminal said ``mfu not reported: ... (333%)`` while
the HTML report showed ``mfu 70.8%`` for the same test: one decision
(``roofline.calibration``) now gives the metric, the note and every table's cell."""

from __future__ import annotations

import json

import pytest

from pytest_llmperf.output.tables import efficiency_cell
from pytest_llmperf.results import Metric
from pytest_llmperf.roofline.calibration import (
    decide_efficiency,
    recorded_efficiency,
    reportable_efficiency,
)
from pytest_llmperf.roofline.device_specs import Peaks


def test_the_table_cell_and_the_measurement_share_one_bound():
    """A fraction above 1 is left out by the measuring side; a table never shows one."""
    over = decide_efficiency("mfu", 3.33e9, 1.0, 1e9, "measured", "peak of cpu fp32", "FLOP")
    assert over.fraction is None and "(333%)" in over.why and over.cell() == "-"
    under = decide_efficiency("mfu", 0.708e9, 1.0, 1e9, "measured", "peak of cpu fp32", "FLOP")
    assert under.fraction == pytest.approx(0.708) and under.cell() == "70.8%"
    assert (
        efficiency_cell(Metric("mfu", 0.708, "", higher_is_better=True, kind="efficiency"))
        == "70.8%"
    )
    assert (
        efficiency_cell(Metric("x.mbu", 70.8, "%", higher_is_better=True, kind="efficiency"))
        == "70.8%"
    )
    # recorded by hand (or an old report) above the bound: not shown as a fact
    assert efficiency_cell(Metric("mfu", 3.33, "", higher_is_better=True, kind="efficiency")) == "-"
    assert recorded_efficiency(
        Metric("mfu", 3.33, "", higher_is_better=True, kind="efficiency")
    ).why
    assert efficiency_cell(None) == "-"


def test_reportable_efficiency_is_the_same_decision():
    peaks = Peaks(1e9, 1e9, "calibrated", device_name="cpu")
    fractions, notes = reportable_efficiency(1.0, flops=3.33e9, bytes=0.5e9, peaks=peaks)
    assert fractions == {"mbu": pytest.approx(0.5)}
    (note,) = notes
    expected = decide_efficiency("mfu", 3.33e9, 1.0, 1e9, "measured", "peak of cpu fp32", "FLOP")
    assert note == expected.why


#: Measured three times (a judge that always finds it unclear): the first pass slow
#: (MFU 10%), the others 100x faster, so the second pass's pooled median still reports
#: (~20%) and the third's does not (~1000%): the last pass decides, alone.
REMEASURED = """
import time
from pytest_llmperf.judge.verdict import Judge
from pytest_llmperf.roofline.calibration import device_peaks

class AlwaysUnclear(Judge):
    def unclear(self, result, names):
        return list(names)

def test_it(llmperf):
    llmperf.judge = AlwaysUnclear(None, where="nowhere")
    flops = device_peaks(llmperf.device).flops_per_s * 0.02  # MFU 100% at 20 ms a call

    def call():
        time.sleep(0.2 if not llmperf.last.times else 0.002)

    llmperf.pedantic(call, warmup=0, rounds=3, flops=flops)
    assert len(llmperf.last.times) == 9
"""


def test_a_remeasured_mfu_is_decided_once_by_the_last_pass(pytester: pytest.Pytester) -> None:
    """The first passes recorded an MFU, the last left it out with a note: the report kept
    the stale metric beside the note (``mfu 70.8%`` in the HTML, ``333%`` in the terminal)."""
    pytester.makepyfile(test_remeasured_mfu=REMEASURED)
    result = pytester.runpytest(
        "--llmperf", "-p", "no:cacheprovider", "--llmperf-report=r.json", "--llmperf-threads=1"
    )
    result.assert_outcomes(passed=1)
    (r,) = json.loads((pytester.path / "r.json").read_text())["results"]
    notes = [n for n in r["notes"] if n.startswith("mfu not reported")]
    assert len(notes) == 1, r["notes"]
    assert "mfu" not in r["metrics"], (r["metrics"].get("mfu"), notes)
    assert result.stdout.str().count("mfu not reported") == 1
