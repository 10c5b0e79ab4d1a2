"""Bounds and defaults that values from a marker, a call or an option must meet.

In one place so a reader finds every limit together, and a parser and its error
message quote the same number.
"""

from __future__ import annotations

#: Upper bounds of what a marker, a call or an option may ask for. Beyond them a value
#: is a slip (``rounds=10**30`` would never end, 100000 threads crash torch), not a plan.
MAX_ROUNDS = 1_000_000  # rounds, min_rounds, max_rounds
MAX_WARMUP = 100_000
MAX_TIME_S = 86_400.0  # max_time: one day
MAX_REMEASURE = 100
#: A tolerance is a fraction: 100 is 10000%, past anything a gate could mean.
MAX_TOLERANCE = 100.0
#: ``--llmperf-threads``: a fixed cap (not the CPU count) so a setting means the same on
#: every runner; torch.set_num_threads(100000) crashes or exhausts memory.
MAX_THREADS = 1024
#: Intra-op threads on the CPU while measuring, unless ``--llmperf-threads`` says otherwise
#: (``auto``: torch's own choice). Every trust figure in the README was measured on one
#: thread; with torch's 2 threads on 2 shared cores a baseline was 5-10x too slow, its
#: samples spread 7x and the drift correction had to be refused (measure/drift.py).
DEFAULT_CPU_THREADS = 1
MAX_POOL = 1000
#: Longest project name a file or ``--llmperf-project`` may give.
MAX_PROJECT = 200
