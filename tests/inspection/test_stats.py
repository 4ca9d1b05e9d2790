"""``finite_statistics``: exact statistics of the finite values, NaN and infinities counted."""

from __future__ import annotations

import math

import torch

from project.inspection.stats import finite_statistics


def test_all_finite_values():
    x = torch.tensor([[1.0, 0.0], [3.0, -4.0]])
    stats = finite_statistics(x)
    assert (stats.num_nan, stats.num_inf) == (0, 0)
    assert stats.mean == 0.0 and stats.min == -4.0 and stats.max == 3.0 and stats.zero_fraction == 0.25
    assert math.isclose(stats.std, float(x.std(unbiased=False)))


def test_nan_and_infinities_are_counted_and_left_out():
    x = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 3.0])
    stats = finite_statistics(x)
    assert (stats.num_nan, stats.num_inf) == (1, 2)
    assert stats.values.tolist() == [1.0, 3.0] and stats.mean == 2.0


def test_huge_finite_values_whose_sum_overflows_are_all_finite():
    x = torch.full((4,), 3e38)
    stats = finite_statistics(x)
    assert (stats.num_nan, stats.num_inf) == (0, 0) and stats.max == float(x[0])


def test_nothing_finite_and_nothing_at_all():
    stats = finite_statistics(torch.tensor([float("nan")]))
    assert stats.num_nan == 1 and math.isnan(stats.mean) and math.isnan(stats.max)
    empty = finite_statistics(torch.zeros(0, 3))
    assert empty.zero_fraction == 0.0 and math.isnan(empty.std)


def test_half_precision_is_measured_in_float32():
    x = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float16)
    assert finite_statistics(x).values.dtype == torch.float32
