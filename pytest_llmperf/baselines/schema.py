"""The baseline file's format: its schema constants, and a loaded file's entries by tier.

Here rather than beside the reader or the writer: both, and the sessions that look
entries up, share these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "pytest-llmperf-baseline"
SCHEMA_VERSION = 2
#: Significant digits kept for samples: enough for any gate, small diffs on refresh.
DIGITS = 6
#: Samples kept per run: a quantile sketch of the run's distribution.
SKETCH_SIZE = 64
#: A run's ``summary`` (n, mean, std, quartiles) is stored only above this many samples:
#: no verdict reads it, and a handful of sorted samples already show it to a reader.
SUMMARY_ABOVE = 8
#: Deepest nesting of free-form values (params, fingerprint, stack): deeper is no baseline,
#: and would overflow the recursive JSON encoder on the next write.
MAX_DEPTH = 32


class BaselineError(Exception):
    """A baseline file that cannot be used; the message names the file."""


@dataclass
class BaselineFile:
    path: Path
    device: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The project that wrote the file; None: written before files recorded one.
    project: str | None = None

    def entry(self, nodeid: str, tier: str) -> dict[str, Any] | None:
        """The stored entry for this test at this tier; another tier's numbers don't count."""
        return _at_tier(self.tests.get(nodeid), tier)

    def entries(self, nodeid: str, tier: str) -> list[dict[str, Any]]:
        """A work file's entries for this test at this tier, one per dispatch context (a
        version 1 entry is one of an unknown context)."""
        e = self.tests.get(nodeid)
        if e is None:
            return []
        found = (
            [_at_tier(x, tier) for x in e["contexts"].values()]
            if "contexts" in e
            else [_at_tier(e, tier)]
        )
        return [x for x in found if x is not None]


def _at_tier(e: dict[str, Any] | None, tier: str) -> dict[str, Any] | None:
    if e is None or (tier and e.get("tier", tier) != tier):
        return None
    return e
