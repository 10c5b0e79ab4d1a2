"""``--llmperf-compare`` pairs batches and stops as it says (``CompareController._drive``).

Each pair times one batch on each worker, back to back, and records candidate /
reference of *that* pair's batch medians: machine drift moves both alike and
cancels. It stops once ``paired_settled`` says so, or once the budget (4 x
``max_time``) or ``MAX_PAIRS`` is spent, never before ``MIN_PAIRS``.

Fake workers answer the controller's protocol (``Remote.measure``) on a fake machine
that gets 2x slower every pair while the candidate stays a fixed factor of the
reference within a pair, so a ratio taken across two pairs is off by 2x, never by
noise. The factors are exact in binary, so the ratios are exact; a ratio on the
tolerance's boundary never settles, so the budget or the cap decides. No real time
is measured: the budget is spent either by a fake clock or by a budget of 4 ns.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from pytest_llmperf.compare import controller
from pytest_llmperf.compare.controller import MAX_PAIRS, MIN_PAIRS, CompareController

#: A round's time on the fake machine in the first pair (a power of two: exact ratios).
BASE = 2.0**-10


class Machine:
    """What both workers run on: 2x slower every pair, and a clock that each batch
    advances by ``seconds_per_batch`` (used where ``controller.time`` is patched)."""

    def __init__(self, seconds_per_batch: float = 1.0) -> None:
        self.now = 0.0
        self.seconds_per_batch = seconds_per_batch
        #: (pair, worker) of each kept batch, in the order they ran.
        self.batches: list[tuple[int, str]] = []

    def batch(self, worker: str, factor: float, n: int) -> list[float]:
        pair = len(self.batches) // 2  # one batch a side per pair
        # Past the cap, fail here rather than pair forever (no decision ever settles).
        assert pair < 2 * MAX_PAIRS, "still pairing at twice MAX_PAIRS: the cap is not kept"
        self.batches.append((pair, worker))
        self.now += self.seconds_per_batch
        return [factor * BASE * 2.0**pair] * n

    def perf_counter(self) -> float:
        return self.now


class FakeWorker:
    """Answers warmup and rounds as ``Remote.measure`` does; ``factor`` scales its
    rounds against the machine's (the candidate's change)."""

    def __init__(self, name: str, machine: Machine, factor: float) -> None:
        self.name, self.machine, self.factor = name, machine, factor
        self.commands: list[dict[str, Any]] = []
        self.reply: dict[str, Any] | None = None

    def send(self, **cmd: Any) -> None:
        self.commands.append(cmd)
        seconds = self.machine.seconds_per_batch
        if cmd["cmd"] == "warmup":
            self.reply = {"event": "ok", "seconds": seconds}
        elif cmd["cmd"] == "rounds" and not cmd.get("keep", True):  # the probe: not a pair's
            values = [self.factor * BASE] * int(cmd["n"])
            self.reply = {"event": "ok", "values": values, "seconds": seconds, "series": {}}
        elif cmd["cmd"] == "rounds":
            values = self.machine.batch(self.name, self.factor, int(cmd["n"]))
            self.reply = {"event": "ok", "values": values, "seconds": seconds, "series": {}}
        else:
            raise AssertionError(f"unexpected command {cmd}")

    def recv(self) -> dict[str, Any]:
        reply, self.reply = self.reply, None
        assert reply is not None, "recv without a command"
        return reply


class Policy:
    """The two things ``_drive`` asks of the test's policy."""

    def __init__(self, max_time: float, tolerance: float) -> None:
        self.max_time, self.tolerance = max_time, tolerance
        self.asked: list[tuple[str, str]] = []

    def tolerance_for(self, name: str, kind: str) -> float:
        self.asked.append((name, kind))
        return self.tolerance


def drive(
    factor: float,
    tolerance: float,
    max_time: float,
    machine: Machine | None = None,
    higher_is_better: bool = False,
) -> tuple[list[float], FakeWorker, FakeWorker, Machine, Policy]:
    """One measurement driven to its end: the ratios, both workers, the machine, the policy."""
    machine = machine or Machine()
    ref = FakeWorker("ref", machine, 1.0)
    cand = FakeWorker("cand", machine, factor)
    ctl = CompareController.__new__(CompareController)  # no pytest config: _drive needs none
    ctl.rng = random.Random(0)
    policy = Policy(max_time, tolerance)
    names = ["throughput", "time"]
    event = {"event": "measure", "names": names, "higher_is_better": higher_is_better}
    ratios, failed, series = ctl._drive(ref, cand, event, policy)  # type: ignore[arg-type]
    assert failed == set() and series == {}
    return ratios, ref, cand, machine, policy


def kept(worker: FakeWorker) -> list[dict[str, Any]]:
    return [c for c in worker.commands if c["cmd"] == "rounds" and c.get("keep", True)]


@pytest.mark.parametrize(
    ("factor", "tolerance", "higher_is_better", "kind"),
    [
        (1.25, 0.25, False, "time"),  # 25% slower at a 25% tolerance: on the boundary
        (0.5, 1.0, True, "ratio"),  # a speedup halved at 100%: worse ratio 2 = 1 + 1
    ],
)
def test_each_ratio_is_its_own_pairs_candidate_over_reference(
    factor: float, tolerance: float, higher_is_better: bool, kind: str
) -> None:
    """The machine doubles its times every pair; each ratio is still exactly the factor.
    A candidate paired with another pair's reference would read 2x or 0.5x it. On the
    boundary nothing settles and the budget (4e6 s) is never spent: the cap stops it."""
    ratios, ref, cand, machine, policy = drive(
        factor, tolerance, max_time=1e6, higher_is_better=higher_is_better
    )
    assert ratios == [factor] * MAX_PAIRS
    assert policy.asked == [("time", kind)]
    # every pair is one batch a side, both orders drawn (the order is random per pair)
    assert sorted(machine.batches) == sorted(
        [(k, "ref") for k in range(MAX_PAIRS)] + [(k, "cand") for k in range(MAX_PAIRS)]
    )
    firsts = {machine.batches[2 * k][1] for k in range(MAX_PAIRS)}
    assert firsts == {"ref", "cand"}
    for w in (ref, cand):
        assert w.commands[0] == {"cmd": "warmup"}
        assert w.commands[1] == {"cmd": "rounds", "n": 1, "keep": False}
        assert len(kept(w)) == MAX_PAIRS and len(w.commands) == 2 + MAX_PAIRS


def test_a_spent_budget_still_takes_min_pairs() -> None:
    """A budget of 4 ns is spent by the first pair on any machine, however fast (real
    clock); on the boundary the decision never settles, so exactly MIN_PAIRS pairs run,
    each ratio its own pair's."""
    ratios, ref, cand, machine, _ = drive(1.25, 0.25, max_time=1e-9)
    assert ratios == [1.25] * MIN_PAIRS
    assert len(kept(ref)) == len(kept(cand)) == MIN_PAIRS
    assert len(machine.batches) == 2 * MIN_PAIRS


def test_past_min_pairs_the_budget_stops_at_the_first_pair_past_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a fake clock, a batch takes 1 s: a budget of 4 x 5.5 = 22 s is passed by the
    12th pair (24 s), which is the last; 2.4 s (9.6 s) is passed by the 5th, before
    MIN_PAIRS, so MIN_PAIRS it is."""
    for max_time, pairs in ((5.5, 12), (2.4, MIN_PAIRS)):
        machine = Machine(seconds_per_batch=1.0)
        monkeypatch.setattr(controller, "time", machine)
        ratios, *_ = drive(1.25, 0.25, max_time=max_time, machine=machine)
        assert ratios == [1.25] * pairs, max_time


@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_a_clear_decision_stops_as_soon_as_it_may(factor: float) -> None:
    """2x slower or 2x faster at a 10% tolerance: settled at MIN_PAIRS, the budget
    (4e6 s) far from spent."""
    ratios, *_ = drive(factor, 0.10, max_time=1e6)
    assert ratios == [factor] * MIN_PAIRS
