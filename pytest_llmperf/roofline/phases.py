"""The priced ops of each phase of a workload (forward, backward, optimizer, prefill,
decode), on one device or N.

One device, tensor parallel and data parallel price the share of one device, its
collectives included (``phase_costs``); a pipeline prices the GPipe schedule of its
slowest stage, the idle slots as the op ``pipeline.bubble`` (``pipeline_phases``).
"""

from __future__ import annotations

from typing import Any

from .interconnect import all_reduce_s, send_s
from .ops import (
    Op,
    OpCost,
    backward_ops,
    collective,
    forward_ops,
    price,
    sum_steps,
    tp_all_reduces,
)
from .workload import Part, Plan, Workload, micro_batch_sizes, part_parameters


def decode_step_ops(w: Workload, cached: int, part: Part | None = None) -> list[Op]:
    """One new token per sequence attending ``cached`` tokens plus itself."""
    return forward_ops(w.shape, w.batch, 1, cached + 1, w.e, cache=True, part=part)


def cross_entropy(w: Workload, batch: int) -> Op:
    """The training loss over ``batch`` sequences' logits (fp32 log-softmax)."""
    T, V = batch * w.seq_len, w.shape.vocab_size
    return Op("cross_entropy", "elementwise", 5.0 * T * V, T * V * (w.e + 3 * 4))


def adamw(w: Workload, part: Part) -> Op:
    """AdamW: read p, g, m, v; write p, m, v (states in the param dtype)."""
    P = part_parameters(w.shape, part)
    return Op("adamw", "optimizer", 15.0 * P, 7 * P * w.e)


def phase_costs(w: Workload, peaks: Any, overhead: tuple[float, bool],
                plan: Plan) -> dict[str, list[OpCost]]:  # fmt: skip
    """The priced ops of each phase of the workload, phases in execution order."""

    def priced(ops: list[Op]) -> list[OpCost]:
        return price(ops, peaks, overhead)

    if plan.parallel == "pp":
        return pipeline_phases(w, priced, plan)
    part, link = plan.parts[0], plan.link

    def comm(tokens: int) -> list[Op]:
        return tp_all_reduces(tokens, w.shape, w.e, part, link)  # type: ignore[arg-type]

    if w.mode == "decode":
        return {"decode": priced(decode_step_ops(w, w.kv_len, part) + comm(w.batch))}
    fwd = forward_ops(w.shape, w.batch, w.seq_len, w.seq_len, w.e,
                      cache=w.mode in ("prefill", "generate"), logits_all=w.logits_all,
                      part=part) + comm(w.batch * w.seq_len)  # fmt: skip
    if w.mode == "generate":  # the prefill yields the first new token
        steps = [
            priced(decode_step_ops(w, w.seq_len + i, part) + comm(w.batch))
            for i in range(w.gen_len - 1)
        ]
        return {"prefill": priced(fwd), "decode": sum_steps(steps)}
    if w.mode != "train":
        return {"forward": priced(fwd)}
    fwd.append(cross_entropy(w, w.batch))
    backward = backward_ops(fwd, w.e)
    if plan.parallel == "dp":  # DDP: every gradient all-reduced once, after the backward
        nbytes = part_parameters(w.shape, part) * w.e
        t = all_reduce_s(nbytes, plan.devices, link)  # type: ignore[arg-type]
        backward.append(collective("all_reduce.gradients", nbytes, t))
    phases = {"forward": priced(fwd), "backward": priced(backward)}
    if w.optimizer:
        phases["optimizer"] = priced([adamw(w, part)])
    return phases


def pipeline_phases(w: Workload, priced: Any, plan: Plan) -> dict[str, list[OpCost]]:
    """GPipe: a pass of m micro-batches over N stages takes (m + N - 1) slots, each the
    slowest stage's time for the largest micro-batch plus one send of its activations.

    A phase's ops are the slowest stage's work on all micro-batches, its sends, and
    ``pipeline.bubble``: the rest of the slots, in which that stage waits. A decode
    step is one micro-batch through every stage in turn: the whole model's ops plus
    N - 1 sends.
    """
    N, link, e, d = plan.devices, plan.link, w.e, w.shape.d_model
    sizes = micro_batch_sizes(w.batch, plan.micro_batches)
    cache = w.mode in ("prefill", "generate")

    def forward(part: Part, b: int) -> list[Op]:
        ops = forward_ops(w.shape, b, w.seq_len, w.seq_len, e, cache=cache,
                          logits_all=w.logits_all, part=part)  # fmt: skip
        if w.mode == "train" and part.last:
            ops.append(cross_entropy(w, b))
        return ops

    def backward(part: Part, b: int) -> list[Op]:
        return backward_ops(forward(part, b), e)  # gradients go back as activations came

    def send(b: int, tokens_per_seq: int, count: int = 1) -> Op:
        nbytes = b * tokens_per_seq * d * e
        return collective("send.stage", nbytes, send_s(nbytes, link), count)  # type: ignore[arg-type]

    def schedule(make: Any) -> list[OpCost]:
        times = [sum(c.seconds for c in priced(make(p, sizes[0]))) for p in plan.parts]
        slowest = plan.parts[times.index(max(times))]
        slot = max(times) + priced([send(sizes[0], w.seq_len)])[0].seconds
        work = sum_steps([priced(make(slowest, b) + [send(b, w.seq_len)]) for b in sizes])
        idle = (len(sizes) + N - 1) * slot - sum(c.seconds for c in work)
        return [*work, OpCost("pipeline.bubble", "bubble", N - 1, 0.0, 0.0, idle, "idle")]

    def step(cached: int) -> list[OpCost]:
        return priced(decode_step_ops(w, cached) + [send(w.batch, 1, N - 1)])

    if w.mode == "decode":
        return {"decode": step(w.kv_len)}
    if w.mode == "generate":
        decode = sum_steps([step(w.seq_len + i) for i in range(w.gen_len - 1)])
        return {"prefill": schedule(forward), "decode": decode}
    if w.mode != "train":
        return {"forward": schedule(forward)}
    phases = {"forward": schedule(forward), "backward": schedule(backward)}
    if w.optimizer:  # every stage steps its own parameters at once: the largest decides
        busiest = max(plan.parts, key=lambda p: part_parameters(w.shape, p))
        phases["optimizer"] = priced([adamw(w, busiest)])
    return phases
