"""--junitxml: every llmperf metric of a perf test is a <property> of its test case.

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
    # "value unit": seconds per call, about the 10 ms sleep (loose: a loaded machine is slow).
    value, unit = props["llmperf.time"].split()
    assert unit == "s"
    assert 0.009 < float(value) < 0.5
    base_value, base_unit = props["llmperf.time.baseline"].split()
    assert base_unit == "s" and 0.009 < float(base_value) < 0.5
    assert props["llmperf.peak_memory"].endswith(" B")

    # A plain test gets no llmperf properties.
    assert not [k for k in _properties(xml_path, "test_plain") if k.startswith("llmperf.")]


def test_junit_properties_without_a_baseline(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_junit_mod=MODULE)
    rec = pytester.runpytest("--llmperf", "--junitxml=out.xml", "-p", "no:cacheprovider")
    rec.assert_outcomes(passed=2)
    props = _properties(pytester.path / "out.xml", "test_perf")
    assert props.get("llmperf.verdict") == "no-baseline", props
    assert "llmperf.time" in props
    assert "llmperf.time.baseline" not in props
