"""Shared pieces of the scenario suite."""

import pytest


@pytest.fixture
def record_decode_metrics(llmperf):
    """Reference 003's derived columns from the last measured generate():
    model_size (GB, without embeddings) and mem/s = model_size x tok/s per sample."""

    def record(size_gb: float, new_tokens: int) -> None:
        times = llmperf.last.times
        llmperf.record("model_size", size_gb, unit="GB", kind="memory")
        llmperf.record(
            "mem_per_s",
            size_gb * new_tokens / llmperf.last.median,
            unit="GB/s",
            higher_is_better=True,
            kind="throughput",
            samples=[size_gb * new_tokens / t for t in times if t > 0],
        )

    return record
