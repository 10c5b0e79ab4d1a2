"""The link between devices and what collectives cost over it, from first principles.

A ``Link`` is what one device can send to its neighbour: bytes/s in one direction
and a fixed latency per message step. Collective costs follow the ring
algorithms NCCL and gloo use for large messages (Patarasuk and Yuan; Thakur et
al., "Optimization of collective communication operations in MPICH"):

* all-reduce of ``n`` bytes over ``N`` devices: ``2 (N-1)`` steps, each moving
  ``n / N`` bytes: ``2 (N-1)/N x n / bandwidth + 2 (N-1) x latency``;
* point to point (a pipeline stage boundary): ``n / bandwidth + latency``.

The datasheet links are the theoretical per-direction rates (PCIe: 0.985, 1.969,
3.938 GB/s per lane for generations 3, 4, 5 after 128b/130b encoding; NVLink:
the vendor's total divided by two directions); real collectives reach 70-90 %
of them, which is why ``calibration.measure_link`` can measure one instead.
The latencies are assumptions (a few microseconds per step over NVLink, more
through the PCIe root complex), stated here so a user can override them.

No torch import: the CLI and reports price communication without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

GB_S = 1e9

#: Bytes/s per lane and direction of each PCIe generation (after line encoding).
PCIE_LANE_BYTES_PER_S = {3: 0.985 * GB_S, 4: 1.969 * GB_S, 5: 3.938 * GB_S, 6: 7.563 * GB_S}
#: Seconds per message step: through the PCIe root complex (host bridges, no
#: peer-to-peer switch assumed) and over NVLink / Infinity Fabric.
PCIE_STEP_LATENCY_S = 10e-6
NVLINK_STEP_LATENCY_S = 3e-6


@dataclass(frozen=True)
class Link:
    """One device's link to its neighbour: bytes/s per direction, seconds per step."""

    name: str
    bytes_per_s: float
    latency_s: float
    source: str = "datasheet"

    def __post_init__(self) -> None:
        if not self.bytes_per_s > 0:
            raise ValueError(f"link {self.name!r}: bandwidth must be > 0, got {self.bytes_per_s!r}")
        if not self.latency_s >= 0:
            raise ValueError(f"link {self.name!r}: latency must be >= 0, got {self.latency_s!r}")

    def describe(self) -> str:
        """``PCIe 4.0 x16, 31.5 GB/s, 10 us/step (datasheet)``: what the CLI and reports show."""
        return (
            f"{self.name}, {self.bytes_per_s / GB_S:.3g} GB/s, "
            f"{self.latency_s * 1e6:.3g} us/step ({self.source})"
        )


def pcie(generation: int, lanes: int = 16) -> Link:
    """A PCIe link (theoretical per-direction rate of ``lanes`` lanes of ``generation``)."""
    if generation not in PCIE_LANE_BYTES_PER_S:
        known = ", ".join(str(g) for g in PCIE_LANE_BYTES_PER_S)
        raise ValueError(f"unknown PCIe generation {generation!r}; known: {known}")
    if lanes not in (1, 2, 4, 8, 16):
        raise ValueError(f"PCIe lanes must be 1, 2, 4, 8 or 16, got {lanes!r}")
    return Link(
        f"PCIe {generation}.0 x{lanes}",
        PCIE_LANE_BYTES_PER_S[generation] * lanes,
        PCIE_STEP_LATENCY_S,
    )


def nvlink(name: str, total_gb_s: float) -> Link:
    """An NVLink-class link given the vendor's total (both directions) in GB/s."""
    return Link(name, total_gb_s / 2 * GB_S, NVLINK_STEP_LATENCY_S)


def with_overrides(
    link: Link, bandwidth: float | None = None, latency_s: float | None = None
) -> Link:
    """``link`` with a user's bandwidth (bytes/s) and/or latency (s) in place of its own."""
    if bandwidth is None and latency_s is None:
        return link
    return Link(
        link.name,
        link.bytes_per_s if bandwidth is None else float(bandwidth),
        link.latency_s if latency_s is None else float(latency_s),
        "override",
    )


def all_reduce_s(nbytes: float, devices: int, link: Link) -> float:
    """Seconds of a ring all-reduce of ``nbytes`` over ``devices`` (0 on one device)."""
    if devices <= 1 or nbytes <= 0:
        return 0.0
    steps = 2 * (devices - 1)
    return steps / devices * nbytes / link.bytes_per_s + steps * link.latency_s


def send_s(nbytes: float, link: Link) -> float:
    """Seconds of one point-to-point transfer (a pipeline stage handing on activations)."""
    if nbytes <= 0:
        return 0.0
    return nbytes / link.bytes_per_s + link.latency_s
