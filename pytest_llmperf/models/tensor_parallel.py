"""OPT with Megatron-LM tensor parallelism over a torch.distributed process group.

Each rank of the group holds a slice of every large matrix and all ranks run the
same forward on the same tokens (Shoeybi et al., "Megatron-LM", section 3):

* :class:`ColumnParallelLinear` keeps ``out_features / world`` output rows (and
  their bias): its output is this rank's slice of the features, no communication.
* :class:`RowParallelLinear` keeps ``in_features / world`` input columns: each rank
  computes a partial sum, one ``all_reduce`` adds them up, and the (replicated) bias
  is added once, after the reduce (added before it, it would count ``world`` times).

In a decoder layer q/k/v are column-parallel (``num_heads / world`` whole heads per
rank, attention runs on them locally) and out_proj is row-parallel; fc1 is
column-parallel and fc2 row-parallel. So a layer costs exactly two all-reduces of
the ``(batch, seq, hidden)`` activations in the forward pass, which is what the
estimator prices. Embeddings, LayerNorms and the tied LM head are replicated. The
all-reduces run at world size 1 too, so a one-GPU run exercises the backend's (NCCL's)
path.

``build`` gives every rank its slice of exactly the weights :func:`opt.build` makes
for the same config, dtype and seed, so the logits equal the single-device model's
up to float rounding. It draws each full weight tensor from the same generator
sequence as ``OPT.init_weights`` and keeps the rank's slice: the cost is one full
tensor at a time (the largest, fc1 / fc2 of OPT-6.7B, is 128 MiB in fp16), never
the whole model. :meth:`TPOPT.load_full` shards any full state (an ``opt.OPT``'s
``named_parameters()``) the same way.

Every rank must call ``build`` and ``forward`` (collectives), with the same tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from . import on_device
from . import opt as opt_model
from .opt import POSITION_OFFSET, OPTConfig, default_dtype


def check_world_size(config: OPTConfig, world: int) -> None:
    """Raise a ValueError naming the config when ``world`` ranks cannot split it evenly
    (whole heads and whole ffn columns per rank)."""
    if not isinstance(world, int) or isinstance(world, bool) or world < 1:
        raise ValueError(f"{config.name}: world size must be an integer >= 1, got {world!r}")
    if config.num_heads % world:
        raise ValueError(
            f"{config.name}: {config.num_heads} heads cannot be split over {world} ranks"
        )
    if config.ffn % world:
        raise ValueError(f"{config.name}: ffn {config.ffn} cannot be split over {world} ranks")


def num_parameters_per_rank(config: OPTConfig, world: int) -> int:
    """Parameters one rank holds: the sharded matrices / ``world`` plus everything replicated."""
    check_world_size(config, world)
    d, f, v = config.hidden, config.ffn, config.vocab_size
    embed = v * d + (config.max_position_embeddings + POSITION_OFFSET) * d
    attn = 3 * (d * d + d) // world + d * d // world + d  # q, k, v column; out row (+ bias)
    mlp = (f * d + f) // world + d * f // world + d  # fc1 column; fc2 row (+ bias)
    norms = 2 * 2 * d
    return embed + config.num_layers * (attn + mlp + norms) + 2 * d


def _group_info(group: dist.ProcessGroup | None) -> tuple[int, int]:
    """(rank, world size) in ``group``, or a clear error when there is no process group."""
    if not dist.is_available():
        raise RuntimeError("tensor parallelism needs torch.distributed, which this torch lacks")
    if not dist.is_initialized():
        raise RuntimeError(
            "tensor parallelism needs a process group: call "
            "torch.distributed.init_process_group() on every rank first (torchrun sets "
            "RANK / WORLD_SIZE; one process: world_size=1)"
        )
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError("this process is not a member of the process group it was given")
    return rank, dist.get_world_size(group)


class ColumnParallelLinear(nn.Module):
    """``y[..., rank's out slice] = x @ W[slice].T + b[slice]``: no communication."""

    def __init__(self, in_features: int, out_features: int, world: int, rank: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.world, self.rank = world, rank
        local = out_features // world
        self.weight = nn.Parameter(torch.empty(local, in_features))
        self.bias = nn.Parameter(torch.empty(local))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def shard(self, name: str, full: torch.Tensor) -> torch.Tensor:
        """This rank's rows of the full weight or bias (the output features)."""
        n = full.shape[0] // self.world
        return full[self.rank * n : (self.rank + 1) * n]


class RowParallelLinear(nn.Module):
    """``y = all_reduce(x_local @ W[:, slice].T) + b``: the bias once, after the sum."""

    def __init__(
        self, in_features: int, out_features: int, world: int, rank: int, group: object
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.world, self.rank, self.group = world, rank, group
        self.weight = nn.Parameter(torch.empty(out_features, in_features // world))
        self.bias = nn.Parameter(torch.empty(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight)
        dist.all_reduce(y, group=self.group)  # also at world 1: the backend's path is run
        return y + self.bias

    def shard(self, name: str, full: torch.Tensor) -> torch.Tensor:
        """This rank's input columns of the full weight; the bias is replicated."""
        if name == "bias":
            return full
        n = full.shape[1] // self.world
        return full[:, self.rank * n : (self.rank + 1) * n]


class TPDecoderLayer(nn.Module):
    """``opt.OPTDecoderLayer`` with ``num_heads / world`` heads and ``ffn / world`` MLP
    columns per rank; parameter names match the single-device layer's."""

    def __init__(self, cfg: OPTConfig, world: int, rank: int, group: object) -> None:
        super().__init__()
        d, eps = cfg.hidden, cfg.layer_norm_eps
        self.num_heads = cfg.num_heads // world
        self.head_dim = cfg.head_dim
        self.self_attn_layer_norm = nn.LayerNorm(d, eps=eps)
        self.q_proj = ColumnParallelLinear(d, d, world, rank)
        self.k_proj = ColumnParallelLinear(d, d, world, rank)
        self.v_proj = ColumnParallelLinear(d, d, world, rank)
        self.out_proj = RowParallelLinear(d, d, world, rank, group)
        self.final_layer_norm = nn.LayerNorm(d, eps=eps)
        self.fc1 = ColumnParallelLinear(d, cfg.ffn, world, rank)
        self.fc2 = RowParallelLinear(cfg.ffn, d, world, rank, group)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, s, _ = t.shape
        return t.view(b, s, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        h = self.self_attn_layer_norm(x)
        q, k, v = (self._heads(p(h)) for p in (self.q_proj, self.k_proj, self.v_proj))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out_proj(o.transpose(1, 2).reshape(b, s, self.num_heads * self.head_dim))
        return x + self.fc2(F.relu(self.fc1(self.final_layer_norm(x))))


class TPOPT(opt_model.OPT):
    """One rank's shard of an OPT; ``forward(tokens)`` gives the full causal logits on
    every rank (two all-reduces per layer). The embeddings, final LayerNorm and tied LM
    head are ``opt.OPT``'s own, replicated; only the decoder layers are shards."""

    def __init__(self, config: OPTConfig, world: int, rank: int, group: object = None) -> None:
        check_world_size(config, world)
        super().__init__(config, lambda: TPDecoderLayer(config, world, rank, group))
        self.world, self.rank, self.group = world, rank, group

    @torch.no_grad()
    def load_full(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy this rank's slice of each full (single-device OPT) tensor, by name.

        ``named_tensors`` is e.g. ``opt.OPT.named_parameters()``; every parameter of
        this shard must be named exactly once, with the full model's shape.
        """
        params = dict(self.named_parameters())
        seen = set()
        for name, full in named_tensors:
            if name not in params:
                raise KeyError(f"{self.config.name}: no parameter {name!r} in the TP model")
            owner_name, _, leaf = name.rpartition(".")
            owner = self.get_submodule(owner_name)
            part = owner.shard(leaf, full) if hasattr(owner, "shard") else full
            if part.shape != params[name].shape:
                raise ValueError(
                    f"{self.config.name}: {name} of shape {tuple(full.shape)} does not shard to "
                    f"{tuple(params[name].shape)} over {self.world} ranks"
                )
            params[name].copy_(part)
            seen.add(name)
        if missing := sorted(set(params) - seen):
            raise KeyError(f"{self.config.name}: no full tensor for {missing}")

    def init_weights(self, seed: int) -> None:
        """The slices of ``opt.OPT.init_weights(seed)``'s tensors, drawn full one at a time."""
        self.load_full(_full_init(self.config, self.device, self.dtype, seed))


def _full_init(
    config: OPTConfig, device: torch.device, dtype: torch.dtype, seed: int
) -> Iterator[tuple[str, torch.Tensor]]:
    """``OPT.init_weights(seed)``'s tensors, full size, in its order, one at a time.

    The names and shapes come from a single-device OPT on the meta device (nothing
    allocated), so the generator is consumed in exactly the same sequence.
    """
    g = torch.Generator(device=device).manual_seed(seed)
    for name, p in opt_model.build(config, "meta").named_parameters():
        if "layer_norm" in name:
            full = torch.full(p.shape, 1.0 if name.endswith("weight") else 0.0)
        elif name.endswith("bias"):
            full = torch.zeros(p.shape)
        else:
            full = torch.empty(p.shape, device=device, dtype=dtype)
            full.normal_(0.0, config.init_std, generator=g)
        yield name, full


def build(
    config: OPTConfig,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    group: dist.ProcessGroup | None = None,
) -> TPOPT:
    """This rank's shard of ``opt.build(config, device, dtype, seed)`` over ``group``
    (None: the default process group), created directly on ``device`` without gradients.

    Every rank of the group calls it; a world size that does not divide the heads or
    the ffn is a ValueError naming the config.
    """
    rank, world = _group_info(group)
    check_world_size(config, world)
    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    with on_device(device, dtype):
        model = TPOPT(config, world, rank, group)
    model.requires_grad_(False)
    if device.type != "meta":
        model.init_weights(seed)
    return model
