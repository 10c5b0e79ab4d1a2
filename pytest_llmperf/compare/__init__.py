"""``--llmperf-compare=REF``: is this working tree slower than REF, measured side by side?

A stored baseline cannot answer that for time on a shared runner (its speed
moves more between runs than the tolerance); running both versions on the same
machine in alternation can (Laaber et al. 2019; asv's ``--interleave-rounds``).
``worktree`` checks REF out, ``worker`` runs one tree's tests in a pytest
process of its own, kept alive for the session, ``controller`` drives the two
workers pair by pair and turns the paired ratios into each test's verdict.
``channel`` is the line of JSON messages between them.
"""

#: True in a worker process: its session neither judges nor writes (the controller does).
in_worker = False
