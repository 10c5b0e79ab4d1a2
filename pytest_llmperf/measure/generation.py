"""A generation measured as a stream of token marks: TTFT, TPOT, inter-token latency.

The user's code marks each new token, by yielding it from a generator or by
calling ``llmperf.tick`` (gpt-fast's ``callback=``). A mark costs one
``perf_counter_ns`` and a list append on the CPU (well under a microsecond:
scripts/evidence/generation_trials.py); on an accelerator it records an event on the
measured device's current stream, so the marks are device-synchronised without a synchronize per
token: the events are read once, after the round loop's own synchronize.

Each round of the measurement is one whole generation. Per generation: time to
first token (TTFT: from the call to the first mark, prefill and first decode
step), time per output token (TPOT: mean interval after the first token), the
inter-token latencies (ITL), end-to-end latency. Generations pool: an ITL
percentile's value is taken over every interval of every generation (what
vLLM's serving benchmark reports), and its samples, which the gate's
statistical test compares, are the per-generation percentiles. A stall every 32
tokens moves the mean 3%, within any tolerance, and p99 / p50 from about 1.3 to
2 (scripts/evidence/generation_trials.py): the tail is where
it shows, so the tail has a tolerance of its own (kind ``tail``). On a shared
CPU the seconds of every token drift together by more than that tolerance, so
``itl_tail`` (p99 / p50 within each generation: the tail's shape) gates the tail
there; drift does not move it.

A generation must end: past ``MAX_TOKENS`` marks it is taken to be endless and the
test fails, its marks and tokens dropped (an endless generator under
``max_time=1`` once grew to 5 GB before it was killed).
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import islice
from statistics import median
from typing import Any

from ..metrics import ITL_PERCENTILES, Kind, Metric, percentile
from .counters import Trace, stream_key
from .oom import OutOfMemoryResult, is_oom, oom_message
from .timing import RoundTimer, device_event
from .work import operators_so_far, trace_operators

#: The throughput that is each latency's inverse: prefill = batch x prompt / TTFT, decode =
#: batch / TPOT (a paired ratio of one is the other's, inverted).
RATES = {"ttft": "prefill_throughput", "tpot": "decode_throughput"}
#: Intervals kept per measurement for the report's histogram (evenly thinned past it).
HISTOGRAM_CAP = 4096
#: Token marks one generation may take; past them it is endless and the test fails. A
#: cap on tokens, not on time: ``max_time`` bounds the round loop, not one generation,
#: and a real one may rightly take many times it (200 tokens of an 8B model on a CPU can
#: take minutes under the default ``max_time=1``), while no model's output comes near a
#: million tokens in one generation. A fast endless generator reaches the cap in well
#: under a second (plain ints; 3 s for ``torch.zeros(1)`` per token), holding at most
#: ~40 MB of marks (on the CPU) and the tokens it yielded, dropped when it fails.
MAX_TOKENS = 1_000_000

_IDLE, _TICK, _YIELD = 0, 1, 2
#: What ``next`` gives for a generator that has ended.
_END = object()


class GenerationError(ValueError):
    """A generation that cannot be measured as given (no token, marks out of order, ...)."""


class TokenClock:
    """Takes the marks of the generation in progress; ``tick`` is ``llmperf.tick``.

    One per test: ``llmperf.tick`` is a stable callable a user may hand to a model's
    ``generate(callback=...)`` before the measurement starts.
    """

    def __init__(self, device: Any, where: str) -> None:
        self.where = where
        self.accelerated = device.type != "cpu"
        self.marks: list[Any] = []
        #: Generations started so far (a streamer knows a new one by it).
        self.generations = 0
        self._state = _IDLE
        #: ``perf_counter`` at the start of the generation in progress (for a message).
        self._started = 0.0
        self._now: Callable[[], Any] = time.perf_counter_ns
        if self.accelerated:
            self._now = functools.partial(device_event, device)

    def tick(self, *_: Any) -> None:
        """Mark one new token (a decode step: one token per sequence of the batch).
        Arguments are ignored, so it fits a ``callback(token)`` hook as it is."""
        if self._state is not _TICK:
            raise GenerationError(self._misplaced())
        marks = self.marks
        if len(marks) > MAX_TOKENS:  # the start and MAX_TOKENS tokens: no room
            raise GenerationError(self._endless())
        marks.append(self._now())

    def _misplaced(self) -> str:
        if self._state == _YIELD:
            return (
                f"{self.where}: llmperf.tick() called inside a generator that yields its "
                "tokens: mark each token one way, by yield or by llmperf.tick(), not both"
            )
        return (
            f"{self.where}: llmperf.tick() called outside a generation (before "
            "llmperf.generation started one, or after it ended or raised): a mark belongs "
            "to the generation that llmperf.generation is running"
        )

    def _endless(self) -> str:
        seconds = time.perf_counter() - self._started
        return (
            f"{self.where}: the generation did not end: over {MAX_TOKENS:,} tokens in "
            f"{seconds:.1f} s (one generation may mark {MAX_TOKENS:,}; max_time bounds the "
            "rounds, not one generation). A generator that never returns, or a decode loop "
            "with no stop? Each round is one whole generation: stop it after the tokens "
            "you mean to measure"
        )

    @property
    def ticking(self) -> bool:
        """Whether a generation is running that marks its tokens with ``tick``."""
        return self._state is _TICK

    def run(
        self, fn: Callable[[], Any], now: Callable[[], Any] | None = None
    ) -> tuple[Any, list[Any]]:
        """One generation: the call's result (the yielded tokens for a generator) and its
        marks, the first being the start. An exception, an out-of-memory error included,
        leaves with a note of how many tokens were marked. Past ``MAX_TOKENS`` tokens the
        generation is endless: a ``GenerationError``, its marks and tokens dropped.
        ``now``: what a mark reads instead of the clock (the work pass's operator count)."""
        saved, self._now = self._now, now or self._now
        try:
            return self._run(fn)
        finally:
            self._now = saved

    def _run(self, fn: Callable[[], Any]) -> tuple[Any, list[Any]]:
        self.generations += 1
        self._started = time.perf_counter()
        self.marks = marks = [self._now()]
        self._state = _TICK
        failure = None
        try:
            out = fn()
            if isinstance(out, Iterator):
                if len(marks) > 1:
                    raise GenerationError(
                        f"{self.where}: the generation called llmperf.tick() and then returned "
                        "an iterator of tokens: mark each token one way, by yield or by "
                        "llmperf.tick(), not both"
                    )
                self._state = _YIELD
                tokens = []
                now, append = self._now, marks.append
                for token in islice(out, MAX_TOKENS):  # islice: no cost per token
                    append(now())
                    tokens.append(token)
                if len(tokens) == MAX_TOKENS and next(out, _END) is not _END:
                    # Endless: free what it yielded now, not when the failure is dropped.
                    tokens.clear()
                    marks.clear()
                    _close(out)
                    raise GenerationError(self._endless())
                out = tokens
        except GenerationError:
            raise
        except BaseException as exc:
            if not is_oom(exc):
                if isinstance(exc, Exception):
                    exc.add_note(
                        f"llmperf: the generation raised after {len(marks) - 1} token mark(s)"
                    )
                raise
            # Status oom with how far the generation got; the error's frames hold what
            # did not fit, so they are cleared and the error dropped here.
            failure = f"{oom_message(exc)} (after {len(marks) - 1} token(s) of a generation)"
            traceback.clear_frames(exc.__traceback__)
        finally:
            self._state = _IDLE
            self.marks = []
        if failure is not None:
            raise OutOfMemoryResult(failure)
        if len(marks) < 2:
            raise GenerationError(
                f"{self.where}: the generation marked no token: yield each new token from "
                "a generator, or call llmperf.tick() after each one (a model's "
                "generate(..., callback=llmperf.tick))"
            )
        return out, marks

    def seconds(self, marks: list[Any]) -> list[float]:
        """Marks as seconds since the generation's start; call once the device is synchronised."""
        if self.accelerated:
            start = marks[0]
            t = [0.0] + [start.elapsed_time(e) * 1e-3 for e in marks[1:]]
        else:
            t = [(m - marks[0]) * 1e-9 for m in marks]
        for k in range(1, len(t)):
            if t[k] < t[k - 1]:
                raise GenerationError(
                    f"{self.where}: token marks out of order: mark {k} is "
                    f"{(t[k - 1] - t[k]) * 1e6:.3g} us before mark {k - 1} (marks recorded on "
                    "different streams? record each mark on the stream the decode runs on, "
                    "or let that stream wait for the others first)"
                )
        return t


class Streamer:
    """transformers' ``generate(..., streamer=...)`` with each generated token marked.

    ``generate`` hands its streamer the prompt first (``put(input_ids)``, before any
    work) and then each new token; a streamer whose ``put`` is ``llmperf.tick`` marks
    a "token" at 0 ms and gives TTFT as zero. This one skips the first ``put`` of each
    generation (``skip_prompt=False``: a loop that puts generated tokens only).
    ``end`` marks nothing. transformers itself is not imported: ``generate`` only
    calls ``put`` and ``end``."""

    def __init__(self, clock: TokenClock, skip_prompt: bool = True) -> None:
        self.clock, self.skip_prompt = clock, skip_prompt
        self._prompted = -1

    def put(self, value: Any) -> None:
        clock = self.clock
        if self.skip_prompt and clock.ticking and self._prompted != clock.generations:
            self._prompted = clock.generations  # this generation's first put: its prompt
            return
        clock.tick()  # outside a generation: its error says so

    def end(self) -> None:
        """The generation ended: its last token was already marked by ``put``."""


def _close(tokens: Iterator[Any]) -> None:
    """Close an abandoned generator now (its ``finally`` runs here, not at some later
    collection); one that will not close is left to the collector."""
    close = getattr(tokens, "close", None)
    if close is not None:
        with suppress(Exception):  # the endless generation is the failure to report
            close()


@dataclass
class GenerationLog:
    """Every measured generation of a measurement, as seconds from its start to each
    token mark; pooled over re-measurements like the round times."""

    batch: int = 1
    prompt_tokens: int | None = None
    marks: list[list[float]] = field(default_factory=list)


class GenerationSampler:
    """Rounds of whole generations, timed end to end by a :class:`RoundTimer`; the marks of
    each go to the log. The round loop, drift correction and A/B pairs see the
    end-to-end times; the token statistics come from the log."""

    def __init__(
        self,
        timer: RoundTimer,
        clock: TokenClock,
        fn: Callable[[], Any],
        log: GenerationLog,
        setup: Callable[[], Any] | None = None,
    ) -> None:
        self.timer, self.clock, self.fn, self.log, self.setup = timer, clock, fn, log, setup
        self.result: Any = None
        #: The per-round statistics of the last ``sample`` (``--llmperf-compare`` pairs them).
        self.series: dict[str, list[float]] = {}
        #: A generation run under the work counters: each mark as the number of operators
        #: counted before it since the start, and those operators as (name, shape)
        #: (``first_mark_note``); empty until the work pass.
        self.work_marks: list[int] = []
        self.work_trace: Trace = []
        #: On an accelerator, each operator's stream and each mark's (``stream_note``).
        self.work_streams: tuple[list[Any], list[Any]] = ([], [])

    def call(self) -> Any:
        """One generation, marks dropped: warm-up, the memory pass, the work signature. Under
        the work counters each mark reads the operators counted so far (``work_marks``)."""
        if operators_so_far() is None:
            return self.clock.run(self.fn)[0]
        device, mark_streams = self.timer.device, []

        def mark() -> int | None:
            if op_streams is not None:
                mark_streams.append(stream_key(device))
            return operators_so_far()

        with trace_operators() as (trace, op_streams):
            out, marks = self.clock.run(self.fn, now=mark)
        self.work_marks, self.work_trace = [m - marks[0] for m in marks], trace
        self.work_streams = (op_streams or [], mark_streams)
        return out

    def sample(self, n: int) -> list[float]:
        pending: list[list[Any]] = []

        def one() -> Any:
            out, marks = self.clock.run(self.fn)
            pending.append(marks)
            return out

        times, self.result = self.timer.run(one, n, self.setup)
        new = [self.clock.seconds(m) for m in pending]  # after the timer's synchronize
        self.log.marks += new
        self.series = per_round_series(new)
        return times

    def forget(self, n: int) -> None:
        """Drop the last ``n`` generations from the log (rounds the caller does not keep)."""
        del self.log.marks[len(self.log.marks) - n :]


def intervals(marks: list[float]) -> list[float]:
    """Inter-token latencies: the gaps between consecutive token marks (not the start)."""
    return [b - a for a, b in zip(marks[1:-1], marks[2:], strict=True)]


def per_round_series(generations: list[list[float]]) -> dict[str, list[float]]:
    """Per generation: TTFT, TPOT and the ITL percentiles, in seconds (lower is better).
    A generation of one token has no interval: those series are left short."""
    out: dict[str, list[float]] = {"ttft": [g[1] for g in generations]}
    for g in generations:
        gaps = sorted(intervals(g))
        if not gaps:
            continue
        out.setdefault("tpot", []).append((g[-1] - g[1]) / len(gaps))
        for label, q, _ in ITL_PERCENTILES:
            out.setdefault(f"itl_{label}", []).append(percentile(gaps, q))
        out.setdefault("itl_max", []).append(gaps[-1])
    return out


def generation_metrics(
    log: GenerationLog,
    times: list[float],
    normalized: list[float],
    prefix: str,
    drift_refused: str,
    gated: bool = True,
) -> tuple[list[Metric], list[str]]:
    """The token metrics of a measurement: TTFT, TPOT, ITL p50/p90/p99/max, prefill and
    decode throughput, end-to-end latency and tokens/s, with the notes that say why one
    is missing. ``times`` are the end-to-end round times, ``normalized`` their
    drift-corrected twins (empty where none): each generation's own statistics are
    corrected by its round's factor."""
    factors = [n / t if t > 0 else 1.0 for n, t in zip(normalized, times, strict=False)]
    if len(factors) != len(log.marks):
        factors = []
    series = per_round_series(log.marks)
    out = _TokenMetrics(prefix, drift_refused, gated, factors)
    _first_token(out, log, series["ttft"])
    notes: list[str] = []
    if "tpot" in series:
        _inter_token(out, log, series)
    else:
        notes.append(
            f"{prefix}one token per generation: no inter-token latency (TPOT, ITL) to report"
        )
    _end_to_end(out, log, times)
    return out.metrics, notes


class _TokenMetrics:
    """The token metrics of one measurement as they are added, each per-round series
    drift-corrected by its round's factor (``factors``: none where not corrected)."""

    def __init__(self, prefix: str, drift_refused: str, gated: bool, factors: list[float]):
        self.prefix, self.drift_refused, self.gated = prefix, drift_refused, gated
        self.factors = factors
        self.metrics: list[Metric] = []

    def add(
        self,
        name: str,
        value: float,
        samples: list[float],
        *,
        unit: str = "s",
        kind: Kind = Kind.TIME,
        gated: bool = True,
        per_round: bool = True,
    ) -> None:
        factors = self.factors
        corrected: list[float] = []
        if factors and per_round and len(samples) == len(factors):
            # seconds scale with the factor, rates inversely
            # (a tail here is a latency's: lower is better, like seconds)
            hib = bool(kind.higher_is_better)
            corrected = [s / f if hib else s * f for s, f in zip(samples, factors, strict=True)]
        self.metrics.append(
            Metric(
                f"{self.prefix}{name}",
                value,
                unit,
                higher_is_better=False if kind is Kind.TAIL else None,
                kind=kind,
                samples=list(samples),
                normalized_samples=corrected,
                drift_refused=self.drift_refused,
                gated=gated and self.gated,
            )
        )


#: The unit of every token rate.
_RATE = "tokens/s"


def _first_token(out: _TokenMetrics, log: GenerationLog, ttft: list[float]) -> None:
    """TTFT and, with the prompt's length known, the prefill throughput."""
    add = out.add
    add("ttft", median(ttft), ttft)
    if log.prompt_tokens:
        prefill = [log.batch * log.prompt_tokens / t for t in ttft if t > 0]
        if len(prefill) == len(ttft):
            add(RATES["ttft"], median(prefill), prefill, unit=_RATE, kind=Kind.THROUGHPUT)


def _inter_token(out: _TokenMetrics, log: GenerationLog, series: dict[str, list[float]]) -> None:
    """TPOT, decode throughput, the ITL percentiles pooled over every generation, the
    tail's shape and the largest interval."""
    add = out.add
    tpot = series["tpot"]
    add("tpot", median(tpot), tpot)
    decode = [log.batch / t for t in tpot if t > 0]
    if len(decode) == len(tpot):
        add(RATES["tpot"], median(decode), decode, unit=_RATE, kind=Kind.THROUGHPUT)
    pooled = sorted(gap for g in log.marks for gap in intervals(g))
    for label, q, kind in ITL_PERCENTILES:
        add(f"itl_{label}", percentile(pooled, q), series[f"itl_{label}"], kind=kind)
    # The tail's shape: p99 over p50 within each generation. A periodic stall doubles
    # it; machine drift, which slows every token of a generation alike, does not move
    # it, so it gates where seconds on a shared CPU drift past any tail tolerance.
    tails = [hi / lo for hi, lo in zip(series["itl_p99"], series["itl_p50"], strict=True) if lo > 0]
    p50 = percentile(pooled, 50.0)
    if tails and p50 > 0:
        add(
            "itl_tail",
            percentile(pooled, 99.0) / p50,
            tails,
            unit="x",
            kind=Kind.TAIL,
            per_round=False,
        )
    # One preempted token sets the maximum: reported, never gated.
    add("itl_max", pooled[-1], series["itl_max"], kind=Kind.TAIL, gated=False)


def _end_to_end(out: _TokenMetrics, log: GenerationLog, times: list[float]) -> None:
    """End-to-end latency, tokens per second and the tokens each generation gave."""
    add = out.add
    add("e2e_latency", median(times), times, gated=False, per_round=False)
    counts = [log.batch * (len(g) - 1) for g in log.marks]
    rates = [c / t for c, t in zip(counts, times, strict=False) if t > 0]
    if len(rates) == len(counts):
        add("throughput", median(rates), rates, unit=_RATE, kind=Kind.THROUGHPUT)
    out.metrics.append(
        Metric(
            f"{out.prefix}output_tokens",
            float(median(counts)),
            "tokens",
            higher_is_better=True,
            kind=Kind.OTHER,
            gated=False,
        )
    )


def histogram_intervals(log: GenerationLog) -> list[float]:
    """The pooled inter-token latencies for the report's histogram, thinned evenly to at
    most ``HISTOGRAM_CAP`` (a report holds every scenario's)."""
    pooled = [gap for g in log.marks for gap in intervals(g)]
    if len(pooled) <= HISTOGRAM_CAP:
        return pooled
    step = len(pooled) / HISTOGRAM_CAP
    return [pooled[int(i * step)] for i in range(HISTOGRAM_CAP)]


def paired_token_metrics(
    reference: GenerationLog, candidate: GenerationLog, name: str, tolerance: float | None
) -> list[Metric]:
    """An A/B of generations, pair by pair (the two generations timed back to back): TTFT
    ratio, the per-token ITL ratio (the median over token positions of reference ITL /
    candidate ITL) and the ITL p99 ratio, each reference / candidate (> 1: the
    candidate is faster), gated like the A/B's speedup."""
    ttft, itl, p99 = [], [], []
    for ref, cand in zip(reference.marks, candidate.marks, strict=False):
        if ref[1] > 0 and cand[1] > 0:
            ttft.append(ref[1] / cand[1])
        gaps_ref, gaps_cand = intervals(ref), intervals(cand)
        per_token = [a / b for a, b in zip(gaps_ref, gaps_cand, strict=False) if b > 0]
        if per_token:
            itl.append(median(per_token))
        if gaps_ref and gaps_cand:
            tail_ref = percentile(gaps_ref, 99.0)
            tail_cand = percentile(gaps_cand, 99.0)
            if tail_cand > 0:
                p99.append(tail_ref / tail_cand)
    out = []
    for key, values, kind, tol in (
        ("ttft_speedup", ttft, Kind.RATIO, tolerance),
        ("itl_speedup", itl, Kind.RATIO, tolerance),
        ("itl_p99_speedup", p99, Kind.TAIL, None),
    ):
        if values:
            out.append(
                Metric(
                    f"{name}.{key}",
                    median(values),
                    "x",
                    higher_is_better=True,  # a speedup, of a tail too
                    kind=kind,
                    samples=values,
                    tolerance=tol,
                )
            )
    return out


def token_record(log: GenerationLog) -> dict[str, Any]:
    """What a report keeps of a generation: the pooled ITLs (for the histogram, thinned),
    each generation's TTFT and token count, the batch and prompt."""
    return {
        "generations": len(log.marks),
        "batch": log.batch,
        "prompt_tokens": log.prompt_tokens,
        "tokens": [len(g) - 1 for g in log.marks],
        "ttft_s": [g[1] for g in log.marks],
        # four significant digits: a histogram's precision, a quarter of the report's size
        "itl_s": [float(f"{x:.4g}") for x in histogram_intervals(log)],
    }
