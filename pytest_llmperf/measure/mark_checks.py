"""Where a generation's token marks fell, checked in the work pass (notes, never verdicts).

A mark is only as good as where it is taken. Under the work counters each mark reads
the operators counted so far, so a generation's first mark can be placed in its work
(``first_mark_note``: before the prefill's work, or after a decode step that followed
it), and on an accelerator each operator's stream and each mark's are read too
(``stream_note``): a mark recorded on a stream that does not wait for the stream the
decode ran on is early.
"""

from __future__ import annotations

from collections import Counter
from statistics import median
from typing import Any

from .counters import Trace

#: A first token whose mark falls after fewer than this share of a later token's operators
#: was marked before the prefill's work. A prefill runs the model once, as a decode step
#: does: on real models its mark fell at 1.0-1.3 of a step's operators, and at 2.0 where
#: the prefill's own token went unmarked (docs/writing-tests.md, "Where the first mark
#: falls"); past ``_UNMARKED_PREFILL`` the first mark's last operators are compared with a
#: decode step's.
_EARLY_MARK = 0.5
_UNMARKED_PREFILL = 1.7


def first_mark_note(marks: list[int], trace: Trace, prefix: str = "") -> str:
    """Where a generation's first token mark fell in its work, "" where it fits a prefill
    marked as its first token. ``marks``: the operators counted before each mark since
    the start; ``trace``: those operators as (name, first output's shape)."""
    segments = [trace[a:b] for a, b in zip(marks, marks[1:], strict=False)]
    if len(segments) < 3:
        return ""
    first, later = len(segments[0]), median(len(s) for s in segments[1:])
    if later <= 0:
        return ""
    said = (
        f"{prefix}the first token mark came after {first:,} PyTorch operators, against "
        f"{later:,.0f} per later token: "
    )
    if first < _EARLY_MARK * later:
        return said + (
            "it was taken before the prefill's work, so TTFT reads near zero and the "
            "prefill lands in the first inter-token interval (a transformers streamer "
            "whose put() is llmperf.tick marks the prompt: use llmperf.streamer())"
        )
    if first > _UNMARKED_PREFILL * later and _ends_in_a_step(*segments[:3]):
        return said + (
            "its last operators are a decode step's, so the prefill's own token was not "
            "marked: TTFT includes a decode step and prefill throughput reads low "
            "(gpt-fast's generate calls its callback for decode tokens only: wrap its "
            "prefill with llmperf.tick_after, docs/writing-tests.md)"
        )
    return ""


def _ends_in_a_step(first: Trace, step: Trace, next_step: Trace) -> bool:
    """Whether ``first`` ends in a decode step: its last operators are ``step``'s, by name
    in order, on shapes at least as alike as the next step's are. A chunked prefill (a
    long prompt in parts, one mark after them all) ends in a forward over a chunk of the
    prompt: the same operators, on other shapes."""
    tail = first[-len(step) :]
    if len(first) <= len(step) or [n for n, _ in tail] != [n for n, _ in step]:
        return False

    def alike(a: Trace) -> int:
        return sum(x == y for x, y in zip(a, step, strict=False))

    return alike(tail) >= alike(next_step)


def stream_note(marks: list[int], op_streams: list[Any], mark_streams: list[Any]) -> str:
    """Whether token marks were taken on a stream other than the one their token's
    operators ran on; "" where each mark shares a stream with the work before it.

    ``marks``: operators counted before each mark since the start (the start first);
    ``op_streams``: each operator's stream; ``mark_streams``: each mark's (the start's
    first). An event on a stream that does not wait for the decode's stream completes
    when that stream's earlier work does: the mark comes early, TTFT and TPOT read short.
    """
    off: Counter[tuple[Any, Any]] = Counter()
    for i in range(1, min(len(marks), len(mark_streams))):
        ran = Counter(op_streams[marks[i - 1] : marks[i]])
        if ran and mark_streams[i] not in ran:
            off[(mark_streams[i], ran.most_common(1)[0][0])] += 1
    if not off:
        return ""
    (mark, work), _ = off.most_common(1)[0]
    return (
        f"{sum(off.values())} of {len(mark_streams) - 1} token marks were recorded on stream "
        f"{mark} while their token's operators ran on stream {work}: unless the marking "
        "stream waits for the decode's, each mark completes early and TTFT/TPOT read short; "
        "call llmperf.tick inside the decode stream's context (with torch.cuda.stream(s)), "
        "or wait for it first (torch.cuda.current_stream().wait_stream(s))"
    )
