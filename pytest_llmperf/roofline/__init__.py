"""The roofline: what a workload should cost before anything is measured.

``shapes`` holds the one table of model shapes (shared with ``pytest_llmperf/models``),
``device_specs`` the datasheet peaks of common accelerators, ``calibration`` the
peaks measured on this machine and the MFU / MBU the fixture records, and
``estimator`` charges each op ``max(FLOPs / peak FLOP/s, bytes / bandwidth)`` to
estimate runtime, memory and energy (its parts: ``workload``, ``ops``, ``phases``,
``memory``, ``hardware``, ``interconnect``); ``cli`` puts the estimator on the command line
(``python -m pytest_llmperf estimate``). Only ``calibration`` imports torch, and only
when it measures, so a datasheet estimate runs without it.
"""
