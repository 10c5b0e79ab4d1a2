"""The numbers every gate decides by: how clear is clear, and how many samples it takes.

Their own module because both the decision (``decision``) and what a gate can
see (``detectable``) rest on them, and neither should import the other for them.
"""

from __future__ import annotations

#: One-sided significance for "clearly past the tolerance".
ALPHA = 0.01
#: Below this many samples per side the test cannot reach ALPHA: decide on values.
MIN_SAMPLES = 5
#: A paired decision needs this many pairs before its interval can reach ALPHA (2**-7 < 0.01).
MIN_PAIRS = 7
