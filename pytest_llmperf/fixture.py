"""The ``llmperf`` fixture: measure a callable, record metrics, compare A with B.

Shaped like pytest-benchmark's ``benchmark`` fixture (``llmperf(fn, *args)``,
``llmperf.pedantic(...)``) so its users feel at home; every metric it records
is gated by the plugin when the test finishes. The measuring itself is
``measure.sequence``; this object holds the test's policy and result, names the
metrics, and re-measures a metric the test's ``Judge`` finds unclear while the
objects the call uses are still alive.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from types import GeneratorType
from typing import Any

from . import torchrun
from .config import Policy, parse_float, parse_tolerance
from .fixture_inputs import arguments_from_setup, checked_count, finite
from .judge.verdict import Judge
from .measure import distributed
from .measure.device import exclusive_device
from .measure.generation import GenerationLog, GenerationSampler, Streamer, token_record
from .measure.profile import profile_call
from .measure.sequence import (
    Measurement,
    PairSampler,
    call_metrics,
    measure_call,
    measure_once,
    measure_pairs,
    pair_metrics,
    pair_once,
)
from .measure.timing import RoundTimer
from .metrics import Kind, Metric
from .results import TestResult


@dataclass
class ABResult:
    reference: Measurement
    candidate: Measurement
    #: reference time / candidate time, per interleaved pair.
    ratios: list[float]

    @property
    def speedup(self) -> float:
        return median(self.ratios)


class LLMPerf:
    """The object behind the ``llmperf`` fixture; see docs/internals.md for the contract."""

    def __init__(
        self,
        result: TestResult,
        policy: Policy,
        device: Any,
        tier: str,
        judge: Judge | None = None,
        once: bool = False,
    ) -> None:
        self.result = result
        self.policy = policy
        self.device = device
        self.tier = tier
        #: Judges this test against its baseline; None when recording (nothing to compare).
        self.judge = judge
        self.measurements: list[Measurement] = []
        self.last: Measurement | None = None
        #: Which measurement produced each metric, to re-measure an unclear one.
        self.owners: dict[str, Measurement] = {}
        #: The pytest config (set by the fixture): what ``torchrun`` launches the ranks with.
        self.config: Any = None
        #: Run each call once, unmeasured and gated by nothing (a run without --llmperf).
        self.once = once
        self._clock: Any = None

    @property
    def tick(self) -> Callable[..., None]:
        """Mark one new token of the generation ``llmperf.generation`` is running: call it
        after each decode step, or hand it to a model's ``generate(callback=...)``
        (arguments are ignored). The same callable for the whole test."""
        return self._token_clock().tick

    def streamer(self, skip_prompt: bool = True) -> Any:
        """A streamer for transformers' ``model.generate(..., streamer=...)`` that marks each
        generated token and not the prompt, which ``generate`` puts first
        (``measure.generation.Streamer``)."""
        return Streamer(self._token_clock(), skip_prompt)

    def tick_after(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` that marks a token when it returns: for a step that makes a token without
        calling the loop's callback, such as gpt-fast's ``prefill``
        (``monkeypatch.setattr(gpt_fast_generate, "prefill", llmperf.tick_after(...))``)."""
        tick = self.tick

        @functools.wraps(fn)
        def marked(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            tick()
            return out

        return marked

    def _token_clock(self) -> Any:
        if self._clock is None:
            from .measure.generation import TokenClock

            self._clock = TokenClock(self.device, self.result.nodeid)
        return self._clock

    # -- configuration -------------------------------------------------------------
    @property
    def group(self) -> str:
        return self.result.group

    @group.setter
    def group(self, value: str) -> None:
        self.result.group = str(value)

    def params(self, **columns: Any) -> None:
        """Configuration columns (model, context, mode, ...) for reports and baselines."""
        self.result.params.update(columns)

    @property
    def extra_info(self) -> dict[str, Any]:
        """pytest-benchmark's spelling of ``params``: the same dict."""
        return self.result.params

    # -- measuring -------------------------------------------------------------------
    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.pedantic(fn, args=args, kwargs=kwargs)

    def pedantic(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        setup: Callable[[], Any] | None = None,
        warmup: int | str | None = None,
        rounds: int | str | None = None,
        items: float | None = None,
        item_unit: str = "tokens",
        flops: float | None = None,
        bytes: float | None = None,  # noqa: A002 - pytest-benchmark-like keyword
        name: str | None = None,
        max_time: float | None = None,
        dtype: Any = None,
        iterations: int = 1,
        warmup_rounds: int | None = None,
    ) -> Any:
        """Measure ``fn(*args, **kwargs)`` with full control; returns its last result.

        ``flops`` / ``bytes`` per call add MFU / MBU against the peak for ``dtype``
        (a torch dtype; fp32 when omitted). pytest-benchmark's spellings mean what they
        mean there: ``warmup_rounds`` is ``warmup``; ``iterations`` calls per timed round,
        each round's time divided back to one call's; a ``setup`` that returns
        ``(args, kwargs)`` gives the call its arguments for that round.
        """
        where = self._where("llmperf.pedantic")
        if warmup_rounds is not None:
            if warmup is not None:
                raise TypeError(f"{where}: warmup and warmup_rounds are the same; pass one")
            warmup = warmup_rounds
        iterations = checked_count(iterations, f"{where}(iterations=...)", 1)
        if iterations > 1 and setup is not None:
            raise ValueError(
                f"{where}: iterations={iterations} with setup: setup runs once per round, "
                "so the rounds' later calls would run without it; drop one of them"
            )
        call, setup = arguments_from_setup(fn, args, kwargs or {}, setup, where)
        policy = self._with_call_arguments(
            "llmperf.pedantic",
            warmup=warmup,
            rounds=rounds,
            items=items,
            flops=flops,
            bytes=bytes,
            max_time=max_time,
        )
        prefix = self._fresh_prefix(name, "llmperf.pedantic", "time")
        m = Measurement(name or "", call=call, iterations=iterations)
        out: list[Any] = [None]

        def run() -> None:
            out[0] = self._measure(m, policy, setup)
            if isinstance(out[0], GeneratorType):
                raise TypeError(
                    f"{self._where('llmperf.pedantic')}: the call returned a generator, so only "
                    "its creation was timed; measure a generation that yields its tokens "
                    "with llmperf.generation(fn)"
                )
            metrics, notes = call_metrics(
                m, policy, self.device, prefix=prefix, item_unit=item_unit, dtype=dtype
            )
            self._record(metrics, policy, owner=m, notes=notes)

        self._start(m, run, policy)
        return out[0]

    def generation(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        prompt_tokens: int | None = None,
        batch: int = 1,
        setup: Callable[[], Any] | None = None,
        warmup: int | str | None = None,
        rounds: int | str | None = None,
        name: str | None = None,
        max_time: float | None = None,
    ) -> Any:
        """Measure ``fn(*args, **kwargs)`` as a generation: each round is one generation
        whose tokens are marked by yielding them (``fn`` returns a generator) or by
        ``llmperf.tick()`` after each; records TTFT, TPOT, ITL p50/p90/p99/max, prefill
        and decode throughput, end-to-end latency and tokens/s. ``batch``: tokens per
        mark (one per sequence); ``prompt_tokens``: per sequence, for prefill
        throughput. Warm-up and rounds count generations. Returns the last generation's
        result (a generator's: the list of what it yielded)."""
        where = self._where("llmperf.generation")
        policy = self._with_call_arguments(
            "llmperf.generation", warmup=warmup, rounds=rounds, max_time=max_time
        )
        prefix = self._fresh_prefix(name, "llmperf.generation", "ttft")
        kwargs = kwargs or {}
        m = self._generation_measurement(
            name or "", lambda: fn(*args, **kwargs), where, batch, prompt_tokens, setup
        )
        log = m.generation.log
        out: list[Any] = [None]

        def run() -> None:
            out[0] = self._measure(m, policy, setup)
            metrics, notes = call_metrics(m, policy, self.device, prefix=prefix)
            self._record(metrics, policy, owner=m, notes=notes)
            self.result.tokens[m.name] = token_record(log)

        self._start(m, run, policy)
        return out[0]

    def _generation_measurement(
        self,
        name: str,
        call: Callable[[], Any],
        where: str,
        batch: Any,
        prompt_tokens: Any,
        setup: Callable[[], Any] | None = None,
    ) -> Measurement:
        """A measurement whose rounds are generations of ``call``, its marks logged."""
        log = GenerationLog(
            batch=checked_count(batch, f"{where}(batch=...)", 1),
            prompt_tokens=(
                None
                if prompt_tokens is None
                else checked_count(prompt_tokens, f"{where}(prompt_tokens=...)", 0)
            ),
        )
        sampler = GenerationSampler(RoundTimer(self.device), self._token_clock(), call, log, setup)
        return Measurement(name, call=sampler.call, generation=sampler)

    def _fresh_prefix(self, name: str | None, call: str, first: str) -> str:
        """The metric prefix of a further measurement (``name.``), checked before measuring:
        a clash found afterwards would waste the rounds."""
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{self._where(call)}(name=...): expected a str, got {name!r}")
        prefix = f"{name}." if name else ""
        if f"{prefix}{first}" in self.result.metrics:
            owner = self.owners.get(f"{prefix}{first}")
            raise ValueError(
                f"{self._where(call)}: metric {prefix}{first} "
                + (
                    f"already measured; pass name=... to {call} for each further measurement"
                    if owner is not None
                    else "already recorded by llmperf.record; give one of them another name"
                )
            )
        return prefix

    def _where(self, call: str) -> str:
        """A call of this test, for an error: the test, then the call."""
        return f"{self.result.nodeid}: {call}"

    def _with_call_arguments(self, where: str, **arguments: Any) -> Policy:
        """The test's policy with the arguments of one call (those given) applied."""
        given = {k: v for k, v in arguments.items() if v is not None}
        return self.policy.with_keywords(given, self._where(where))

    def _measure(
        self, m: Measurement, policy: Policy, setup: Callable[[], Any] | None = None
    ) -> Any:
        """The measurement sequence, or in a run without ``--llmperf`` one call."""
        if self.once:
            return measure_once(m, self.device, self.result, setup)
        return measure_call(m, policy, self.device, self.result, setup)

    def _start(self, m: Measurement, run: Callable[[], None], policy: Policy) -> None:
        """Measure for the first time, then re-measure (pooling rounds) while this
        measurement's metrics are past the tolerance but unclear: done here, while the
        objects the call uses are alive."""
        self.measurements.append(m)
        self.last = m
        run()
        # Under torch.distributed a re-measurement is a collective: ranks that decided
        # differently would wait on each other, so none re-measures.
        if self.judge is None or distributed.active():
            return
        for _ in range(policy.remeasure):
            names = [n for n, owner in self.owners.items() if owner is m]
            if not self.judge.unclear(self.result, names):
                return
            run()

    def _record(
        self,
        metrics: list[Metric],
        policy: Policy,
        owner: Measurement | None = None,
        notes: Iterable[str] = (),
    ) -> None:
        """Add metrics, gated and with tolerances as the policy says; ``owner`` is the
        measurement that re-measures them (none for a recorded number).

        A name this test already has is an error, not a silent replacement: only the
        measurement that produced a metric may produce it again (a re-measurement).
        """
        for metric in metrics:
            if metric.name in self.result.metrics and (
                owner is None or self.owners.get(metric.name) is not owner
            ):
                how = (
                    "produced by an earlier measurement"
                    if metric.name in self.owners
                    else "recorded by llmperf.record"
                )
                raise ValueError(
                    f"{self.result.nodeid}: metric {metric.name!r} is already {how}; "
                    "each metric of a test needs its own name (name=... for a further "
                    "measurement, another name for llmperf.record)"
                )
        for metric in metrics:
            metric.gated = metric.gated and policy.gates(metric.name, metric.kind)
            if metric.tolerance is None:
                metric.tolerance = policy.tolerance_for(metric.name, metric.kind)
            if owner is not None:
                self.owners[metric.name] = owner
            self.result.add(metric)
        for note in notes:
            self.result.note(note)

    # -- custom metrics ------------------------------------------------------------
    def record(
        self,
        name: str,
        value: float,
        unit: str = "",
        *,
        higher_is_better: bool | None = None,
        kind: str = "other",
        tolerance: float | str | None = None,
        samples: list[float] | None = None,
        gated: bool = True,
    ) -> None:
        """Add a metric that is gated like the measured ones.

        Its direction comes from its kind (``metrics.Kind``: a time is lower-is-better, a
        throughput higher); a kind whose direction depends on the metric (``other``,
        ``ratio``, ``tail``) takes ``higher_is_better``, lower is better unless it says.

        Bad input is an error naming the test and the metric, raised here so the user's
        line is in the traceback: a name that is not a non-empty str or that the test
        already has, a value or sample that is not a finite number (a bool is not one),
        an unknown kind, a direction its kind contradicts.
        """
        if not isinstance(name, str) or not name.strip():
            raise TypeError(
                f"{self._where('llmperf.record')}: the name must be a non-empty str, got {name!r}"
            )
        where = self._where(f"llmperf.record({name!r})")
        value = finite(value, f"{where}: value")
        if kind not in set(Kind):
            raise ValueError(f"{where}: unknown kind {kind!r}; one of {', '.join(Kind)}")
        if higher_is_better is None and Kind(kind).higher_is_better is None:
            higher_is_better = False
        if not isinstance(unit, str):
            raise TypeError(f"{where}: unit must be a str, got {unit!r}")
        if samples is not None and (
            isinstance(samples, (str, bytes)) or not isinstance(samples, Iterable)
        ):
            raise TypeError(f"{where}: samples must be a list of numbers, got {samples!r}")
        values = [finite(s, f"{where}: samples[{i}]") for i, s in enumerate(samples or ())]
        tol = None if tolerance is None else parse_tolerance(tolerance, where)
        try:
            metric = Metric(
                name,
                value,
                unit,
                higher_is_better=None if higher_is_better is None else bool(higher_is_better),
                kind=Kind(kind),
                samples=values,
                tolerance=tol,
                gated=bool(gated),
            )
        except ValueError as exc:  # a direction its kind contradicts
            raise ValueError(f"{where}: {exc}") from None
        self._record([metric], self.policy)

    # -- A/B ---------------------------------------------------------------------------
    def ab(
        self,
        reference: Callable[..., Any],
        candidate: Callable[..., Any],
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        warmup: int | str | None = None,
        rounds: int | str | None = None,
        items: float | None = None,
        item_unit: str = "tokens",
        name: str = "ab",
        tolerance: float | str | None = None,
        generation: bool = False,
        prompt_tokens: int | None = None,
        batch: int = 1,
    ) -> ABResult:
        """Measure reference and candidate interleaved (A B A B ...); gate on their ratio.

        Machine drift moves both sides of a pair alike, so the ratio holds still
        where absolute times on a shared runner do not. ``generation=True``: each side
        is a generation marking its tokens (see ``llmperf.generation``), and the pairs
        also gate TTFT, per-token ITL and ITL p99 ratios; tokens are counted from the
        marks (``batch`` per mark), so ``items`` is not used.
        """
        policy = self._with_call_arguments("llmperf.ab", warmup=warmup, rounds=rounds)
        where = self._where("llmperf.ab")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}(name=...): expected a non-empty str, got {name!r}")
        if f"{name}.speedup" in self.result.metrics:  # before measuring, not after
            raise ValueError(
                f"{where}: metric {name}.speedup already exists; pass name=... to "
                "llmperf.ab for each further comparison"
            )
        if items is not None:
            items = parse_float(items, f"{where}(items=...)")
        ratio_tolerance = None
        if tolerance is not None:
            ratio_tolerance = parse_tolerance(tolerance, f"{where}(tolerance=...)")
        kwargs = kwargs or {}
        ref = Measurement(f"{name}.reference", call=lambda: reference(*args, **kwargs))
        cand = Measurement(f"{name}.candidate", call=lambda: candidate(*args, **kwargs))
        if generation:
            ref, cand = (
                self._generation_measurement(m.name, m.call, where, batch, prompt_tokens)
                for m in (ref, cand)
            )
        sampler = PairSampler(RoundTimer(self.device), ref, cand)
        holder = Measurement(f"{name}.speedup")
        self.measurements += [ref, cand]  # released with the others after the verdict

        def run() -> None:
            if self.once:
                pair_once(sampler, self.device, self.result)
            else:
                measure_pairs(sampler, policy, self.device, self.result, holder.name)
            self._record(
                pair_metrics(sampler, items, item_unit, holder.name, ratio_tolerance),
                policy,
                owner=holder,
            )
            if generation:
                from .measure.generation import token_record

                for m in (ref, cand):
                    self.result.tokens[m.name] = token_record(m.generation.log)

        self._start(holder, run, policy)
        self.last = cand
        return ABResult(ref, cand, sampler.ratios)

    # -- several ranks ---------------------------------------------------------------
    def torchrun(self, nproc: int, *, timeout: float | None = None) -> bool:
        """Run this test under ``torchrun`` with ``nproc`` ranks and take rank 0's result.

        In the session that collected the test: launches the ranks, waits (``timeout``
        seconds, default ``torchrun.DEFAULT_TIMEOUT_S``), adopts rank 0's metrics, work
        signature and notes as this test's, and returns True: the test then returns.
        Inside a rank (or under a torchrun the user started) returns False: the test
        goes on to build its process group and measure. A rank that fails, dies or hangs
        fails this test with a message naming it; nothing reaches the baseline.
        """
        where = self._where("llmperf.torchrun")
        limit = torchrun.DEFAULT_TIMEOUT_S
        if timeout is not None:
            limit = parse_float(timeout, f"{where}(timeout=...)")
            if not 0 < limit <= 86400:
                raise ValueError(f"{where}(timeout=...): expected 0 < timeout <= 86400 s")
        # nproc checked (an error, or a skip for missing devices) before anything launches.
        if torchrun.checked_in_ranks(self, nproc, where):
            return False
        import pytest

        if self.once:
            pytest.skip(
                f"llmperf.torchrun({nproc}) launches {nproc} ranks: it runs with --llmperf, "
                "not once in a plain run"
            )
        try:
            # Under pytest-xdist the ranks' devices are this worker's while they run.
            with exclusive_device(*torchrun.rank_devices(self.device, nproc)):
                data = torchrun.launch(self.config, self.result.nodeid, nproc, self.tier, limit)
        except torchrun.RankFailure as exc:
            failure = str(exc)
        else:
            self._adopt(TestResult.from_dict(data), nproc)
            return True
        pytest.fail(failure, pytrace=False)

    def _adopt(self, ranks: TestResult, nproc: int) -> None:
        """Rank 0's result as this test's: metrics (this session's policy decides what
        gates), the work signature, token records, params, group, notes and an OOM status."""
        self._record(list(ranks.metrics.values()), self.policy)
        self.result.work.update(ranks.work)
        self.result.tokens.update(ranks.tokens)
        self.result.params.update(ranks.params)
        self.result.params.setdefault("ranks", nproc)
        if ranks.group and not self.result.group:
            self.result.group = ranks.group
        for note in ranks.notes:
            self.result.note(note)
        self.result.status = ranks.status

    def release(self) -> None:
        """Forget the measured callables once the verdict is given."""
        for m in self.measurements:
            m.call = None
        self.owners.clear()

    # -- diagnosis ---------------------------------------------------------------------
    def profile(self, directory: Path, memory: bool) -> Path | None:
        """Re-run the last measured call once under the profiler; returns the saved file."""
        calls = [m.call for m in reversed(self.measurements) if m.call is not None]
        if not calls:
            return None
        return profile_call(calls[0], self.device, directory, self.result.nodeid, memory=memory)
