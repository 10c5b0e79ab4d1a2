"""--junitxml: every llmperf metric of a perf test is a <property> of its test case: a
plain number, its unit in the property's name (``llmperf.time_s``).

Real pytest runs of the plugin (pytester, in-process: torch is already imported).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import torch  # noqa: F401 - imported before pytester snapshots sys.modules

MODULE = """
import time
import pytest

# 300%: a 10 ms sleep overran by up to 12 ms at load 6 on 2 cores (+120%, or -55% for a
# baseline recorded under load): the verdict stays "pass", neither regression nor improved.
@pytest.mark.llmperf(warmup=1, rounds=5, drift_correction=False, tolerance="300%")
def test_perf(llmperf):
    llmperf(time.sleep, 0.01)

def test_plain():
    assert True
"""


def _properties(xml_path, name: str) -> dict[str, str]:
    root = ET.parse(xml_path).getroot()
    cases = [c for c in root.iter("testcase") if c.get("name") == name]
    assert len(cases) == 1, f"expected one testcase {name!r} in {xml_path}"
    return {p.get("name"): p.get("value") for p in cases[0].iter("property")}


def test_junit_properties_of_a_perf_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_junit_mod=MODULE)
    rec = pytester.runpytest("--llmperf", "--llmperf-update-baselines", "-p", "no:cacheprovider")
    rec.assert_outcomes(passed=2)

    rec = pytester.runpytest("--llmperf", "--junitxml=out.xml", "-p", "no:cacheprovider")
    rec.assert_outcomes(passed=2)
    xml_path = pytester.path / "out.xml"
    props = _properties(xml_path, "test_perf")

    assert props.get("llmperf.verdict") == "pass", props
    assert props.get("llmperf.status") == "ok", props
    # A plain number in the unit the property's name ends in: seconds per call, about the
    # 10 ms sleep (loose: a loaded machine is slow); bytes; a count has no unit part.
    assert 0.009 < float(props["llmperf.time_s"]) < 0.5
    assert 0.009 < float(props["llmperf.time_s.baseline"]) < 0.5
    assert int(props["llmperf.peak_memory_B"]) >= 0
    assert int(props["llmperf.work.ops"]) == int(props["llmperf.work.ops.baseline"])
    # Every property of a metric is a number; only the named facts are words.
    words = {"llmperf.verdict", "llmperf.status"}
    for name, value in props.items():
        if name not in words:
            float(value)  # raises on "0.01 s"
            assert value.strip() == value and " " not in value, (name, value)
    assert not [
        k for k in props if k.startswith("llmperf.time") and not k.startswith("llmperf.time_s")
    ]

    # A plain test gets no llmperf properties.
    assert not [k for k in _properties(xml_path, "test_plain") if k.startswith("llmperf.")]


def test_junit_properties_without_a_baseline(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_junit_mod=MODULE)
    rec = pytester.runpytest("--llmperf", "--junitxml=out.xml", "-p", "no:cacheprovider")
    rec.assert_outcomes(passed=2)
    props = _properties(pytester.path / "out.xml", "test_perf")
    assert props.get("llmperf.verdict") == "no-baseline", props
    assert float(props["llmperf.time_s"]) > 0
    assert "llmperf.time_s.baseline" not in props
