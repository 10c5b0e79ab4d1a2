"""The doctor's command-line options (``python -m pytest_llmperf doctor --help``)."""

from __future__ import annotations

import argparse

from ..config import MAX_THREADS, arg_type, parse_threads, parse_tolerance
from .verdict import GATES


def _parser() -> argparse.ArgumentParser:
    """The doctor's options; each number is checked by its type as ``--llmperf-threads`` and
    ``--llmperf-tolerance`` are (a usage error naming the option, exit 2): torch crashes on
    ``set_num_threads(100000)``."""
    p = argparse.ArgumentParser(
        prog="python -m pytest_llmperf doctor",
        description="Check this runner: A/A noise of a reference workload, the smallest change "
        "each gate can see, machine facts, and which gate to use.",
    )
    p.add_argument(
        "--gate",
        choices=GATES,
        default="stored",
        help="the gate you are about to use; exit 1 when the runner is not fit for it (default: stored)",
    )
    p.add_argument(
        "--tolerance",
        type=arg_type(parse_tolerance, "tolerance"),
        default="10%",
        help="tolerance to hold the gates against (default: 10%%)",
    )
    p.add_argument(
        "--threads",
        type=arg_type(parse_threads, "thread count", measuring=False),
        default=None,
        help=f"torch threads to measure with, 1 to {MAX_THREADS} or auto (as --llmperf-threads)",
    )
    p.add_argument("--quick", action="store_true", help="fewer processes and rounds: a few seconds")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--_probe", action="store_true", help=argparse.SUPPRESS)
    return p
