"""Models of the shipped scenario suite, random-initialised at the documented shapes.

Every model file follows one convention: a frozen ``<Name>Config`` dataclass with
``<Name>Config.from_name(name, ...)`` (the documented sizes, whose dimensions come from
``roofline/shapes.py``, and ``tiny-`` / smoke stand-ins), ``build(config, device,
dtype=None, seed=0)`` returning a randomly initialised model created directly on the
device, and ``num_parameters(config)``. ``quantization.py`` maps reference 003's
quantization modes onto torchao.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def on_device(device: Any, dtype: Any = None) -> Iterator[None]:
    """Modules created inside get their parameters on ``device`` in ``dtype`` (None: torch's
    default): a 7B model never passes through host memory or float32 first."""
    import torch

    previous = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)
