"""Statistics of a tensor's finite values, computed in a few passes over memory (used for
activations of hundreds of millions of values as well as for weights)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class FiniteStatistics:
    """Of one tensor: ``values`` (its finite values, flat, float32 or float64: the tensor
    itself, flattened, when all are finite), ``num_nan``, ``num_inf``, ``mean``, ``std``
    (population) ``min`` and ``max`` of the finite values (NaN when there are none), and
    ``zero_fraction`` (of all values; 0 for an empty tensor)."""

    values: torch.Tensor
    num_nan: int
    num_inf: int
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float


@torch.no_grad()
def finite_statistics(x: torch.Tensor) -> FiniteStatistics:
    """``FiniteStatistics`` of ``x`` (any shape and floating dtype; computed in float32, or
    float64 for a float64 tensor)."""
    x = x.detach()
    flat = (x.float() if x.dtype != torch.float64 else x).reshape(-1)
    values, num_nan, num_inf = flat, 0, 0
    # A sum is finite exactly when every term is (a NaN or infinity makes it non-finite), unless
    # it overflows; only then are the values checked one by one.
    if flat.numel() and not bool(torch.isfinite(flat.sum())):
        finite = torch.isfinite(flat)
        num_nan = int(torch.count_nonzero(torch.isnan(flat)))
        num_inf = flat.numel() - int(torch.count_nonzero(finite)) - num_nan
        if num_nan or num_inf:
            values = flat[finite]
    if values.numel():
        low, high = (float(v) for v in torch.aminmax(values))
        mean, std = float(values.mean()), float(values.std(correction=0))
    else:
        low = high = mean = std = float("nan")
    zeros = int(torch.count_nonzero(flat == 0)) if flat.numel() else 0
    return FiniteStatistics(
        values=values,
        num_nan=num_nan,
        num_inf=num_inf,
        mean=mean,
        std=std,
        min=low,
        max=high,
        zero_fraction=zeros / flat.numel() if flat.numel() else 0.0,
    )


__all__ = ["FiniteStatistics", "finite_statistics"]
