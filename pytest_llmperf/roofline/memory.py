"""Bytes resident on a device at the peak of a workload: weights, activations, and
the KV cache or the training state (gradients, AdamW moments).

On several devices the memory is the busiest device's: its tensor-parallel shard,
its pipeline stage, or its share of a data-parallel batch.
"""

from __future__ import annotations

from .workload import Part, Plan, Workload, micro_batch_sizes, part_parameters


def device_memory(
    w: Workload, part: Part | None = None, act_batch: int | None = None
) -> dict[str, float]:
    """Bytes resident at the peak on the device holding ``part`` (default: the whole
    model): weights, activations of ``act_batch`` sequences (default: all of its
    batch), and KV cache or training state."""
    shape, e = w.shape, w.e
    part = part or Part(shape.n_layers)
    n, L = part.tp, part.layers
    d, f, kv = shape.d_model, shape.d_ff, shape.kv_dim
    b = w.batch if act_batch is None else act_batch
    T, P = b * w.seq_len, part_parameters(shape, part)
    opt = shape.family == "opt"
    memory: dict[str, float] = {"weights": P * e}
    if w.mode == "train":
        # norms' inputs and outputs are replicated; the rest of a layer's saved
        # tensors (q, k, v, attention output, MLP hidden) are split tensor-parallel
        saved_per_layer = 4 * d + (3 * d + 3 * kv + (f if opt else 4 * f)) // n
        logits_b = (
            T * shape.vocab_size * (e + 2 * 4) if part.last else 0
        )  # logits, fp32, log-softmax
        memory["activations"] = T * e * L * saved_per_layer + logits_b
        memory["gradients"] = P * e
        if w.optimizer:
            memory["optimizer"] = 2 * P * e
        return memory
    t_act = b if w.mode == "decode" else T
    if w.mode == "generate":  # a decode step's batch of tokens can exceed a micro-batch's
        t_act = max(t_act, w.batch)
    mlp_live = d + (2 * f if opt else 3 * f) // n
    attn_live = (3 * d + 3 * kv) // n
    n_logits = (t_act if (w.logits_all or w.mode == "decode") else b) if part.last else 0
    memory["activations"] = t_act * d * e + max(
        t_act * mlp_live * e, t_act * attn_live * e, n_logits * shape.vocab_size * e
    )
    if w.mode in ("prefill", "decode", "generate"):
        kv_token = 2 * L * (kv // n) * e  # K and V bytes per cached token
        memory["kv_cache"] = kv_token * w.batch * (w.kv_len + (1 if w.mode == "decode" else 0))
    return memory


def plan_memory(w: Workload, plan: Plan) -> dict[str, float]:
    """Memory of the busiest device: a pipeline stage holds one micro-batch's live
    activations in inference, all of them in training (GPipe saves every one)."""
    if plan.parallel != "pp":
        return device_memory(w, plan.parts[0])
    live = w.batch
    if w.mode not in ("train", "decode"):
        live = micro_batch_sizes(w.batch, plan.micro_batches)[0]
    return max((device_memory(w, p, live) for p in plan.parts), key=lambda mem: sum(mem.values()))
