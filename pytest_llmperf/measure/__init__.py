"""Measuring: the sequence (``sequence``) and one module per instrument.

``timing`` (device-synchronized rounds, warm-up, the round loop), ``memory``
(allocator or RSS peaks), ``energy`` (NVML), ``drift`` (CPU machine-drift
correction), ``distributed`` (ranks around the region), ``oom`` (out of memory as
a status), ``device`` (which device, its key and fingerprint), ``profile``
(diagnosis of a failure). torch is imported inside functions only.
"""
