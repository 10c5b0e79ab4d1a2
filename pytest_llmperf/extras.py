"""Optional dependencies: which extra of ``pytest-llmperf`` brings each, and the words a
message uses when a feature needs one that is missing.

The core install is pytest, torch and scipy; everything else is an extra so that a user
who gates a CPU model does not pull NVML, torchao or pytest-benchmark. A feature that
needs a missing extra says which one, never fails with a bare ImportError.
"""

from __future__ import annotations

import importlib.util

#: module -> (extra, distribution): what ``pip install 'pytest-llmperf[extra]'`` brings.
EXTRAS: dict[str, tuple[str, str]] = {
    "torchao": ("quant", "torchao"),
    "pynvml": ("gpu", "nvidia-ml-py"),
    "pytest_benchmark": ("export", "pytest-benchmark"),
    "matplotlib": ("plots", "matplotlib"),
    "ruptures": ("history", "ruptures"),
}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (cheap, torch-free)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def hint(module: str) -> str:
    """``pip install 'pytest-llmperf[gpu]'`` (nvidia-ml-py), for a message."""
    extra, dist = EXTRAS[module]
    return f"pip install 'pytest-llmperf[{extra}]' ({dist})"


def missing(module: str, feature: str) -> str | None:
    """Why ``feature`` cannot run: ``module`` is not installed and which extra brings it
    (None when it is installed)."""
    if installed(module):
        return None
    return f"{feature} needs {EXTRAS[module][1]}, which is not installed: {hint(module)}"
