"""units: the one formatter, so a message and a report print a number the same way."""

from __future__ import annotations

import math

from pytest_llmperf import units


def test_quantity_scales_seconds_and_binary_bytes():
    assert units.quantity(1.5e-3, "s") == "1.5 ms"
    assert units.quantity(2.5e-6, "s") == "2.5 us"
    assert units.quantity(3e-9, "s") == "3 ns"
    assert units.quantity(12.5, "ms") == "12.5 ms"
    assert units.quantity(3 * 2**30, "B") == "3 GiB"
    assert units.quantity(5 * 2**20, "B") == "5 MiB"
    assert units.quantity(512, "B") == "512 B"
    assert units.quantity(12.0, "tok/s") == "12 tok/s"
    assert units.quantity(0.123456, "") == "0.1235"
    assert units.quantity(None, "s") == "-"


def test_change_and_percent():
    assert units.change(0.123) == "+12.3%"
    assert units.change(-0.5) == "-50.0%"
    assert units.change(math.inf) == "from zero"
    assert units.change(None) == "-"
    assert units.percent(0.05) == "5%"
    assert units.relative_change(110.0, 100.0) == 0.1
    assert units.relative_change(1.0, 0.0) is None


def test_convert_between_units_of_a_kind_only():
    assert units.convert(1.0, "s", "ms") == 1000.0
    assert units.convert(2**30, "B", "GiB") == 1.0
    assert units.convert(1e9, "B", "GB") == 1.0
    assert units.convert(5.0, "tokens/s", "ms") == 5.0  # another kind: unchanged


def test_number_for_table_cells():
    assert units.number(3) == "3"
    assert units.number(3.14159) == "3.14"
    assert units.number(0.0001) == "0.0001"
    assert units.number(None) == "-"
    assert units.number(True) == "True"
