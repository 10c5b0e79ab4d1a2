"""Deciding: one metric against its baseline (``decision``), a whole test (``verdict``).

``outcome`` holds the ``Verdict`` enum every other module uses; it imports nothing.
"""
