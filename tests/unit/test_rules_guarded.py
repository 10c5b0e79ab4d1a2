"""Tests for rules that ``scripts/break_rules.py`` found no other test guarding.

Each test here fails when its rule's edit in ``break_rules.BREAKS`` is applied.
"""

from pytest_llmperf.judge.outcome import Verdict
from pytest_llmperf.judge.verdict import decide_metric
from pytest_llmperf.results import Metric


def test_a_count_is_decided_on_its_value_not_widened_by_pooled_runs() -> None:
    """A work count is exact: a stored entry's run spread (a hand-pooled or legacy file)
    must not widen its tolerance the way it widens a time's."""
    stored = {"value": 100, "runs": [{"samples": [90]}, {"samples": [110]}], "kind": "work"}
    count = Metric("work.ops", 105, kind="work", tolerance=0.0)
    assert decide_metric(count, stored).outcome is Verdict.REGRESSION
    assert decide_metric(Metric("work.ops", 100, kind="work", tolerance=0.0), stored).outcome is (
        Verdict.PASS
    )
