"""pytest-llmperf: performance regression tests for LLM workloads in PyTorch.

Importing this package is cheap: torch is imported only when performance tests run.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
