"""Weights of every convolution and fully connected layer: statistics, a histogram, and flags
for layers that look dead (constant, all zeros included) or overflowing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .stats import finite_statistics

# Layers whose weights are inspected (the project's Conv2d wrapper is an nn.Conv2d).
WEIGHT_LAYER_TYPES = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
# A layer with a weight of at least this magnitude is flagged "overflowing".
OVERFLOW_MAGNITUDE = 1e3

FLAG_NON_FINITE = "non-finite"
FLAG_CONSTANT = "constant"
FLAG_OVERFLOWING = "overflowing"


@dataclass
class WeightRecord:
    """One layer's ``weight``. ``name`` is the module's path in the model, ``layer_type`` its
    class name; statistics are over the finite values (NaN when there are none).
    ``histogram`` holds ``bins`` counts of the finite values between ``edges[0] = min`` and
    ``edges[-1] = max`` (all in one bin for a constant weight). ``flags``: some of
    "non-finite", "constant" (dead: every value equal, e.g. zeroed), "overflowing"."""

    name: str
    layer_type: str
    shape: Tuple[int, ...]
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float
    num_nan: int
    num_inf: int
    histogram: np.ndarray
    edges: np.ndarray
    flags: List[str] = field(default_factory=list)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def summary(self) -> Dict[str, Any]:
        """The statistics as JSON-ready values (None for NaN); the histogram is left out."""

        def number(value: float) -> Optional[float]:
            return float(value) if math.isfinite(value) else None

        return {
            "name": self.name,
            "type": self.layer_type,
            "shape": list(self.shape),
            "min": number(self.min),
            "max": number(self.max),
            "mean": number(self.mean),
            "std": number(self.std),
            "zero_fraction": round(self.zero_fraction, 6),
            "num_nan": self.num_nan,
            "num_inf": self.num_inf,
            "flags": list(self.flags),
        }


def weight_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """(path, module) of each convolution and linear layer of ``model`` with a weight, in
    registration order."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, WEIGHT_LAYER_TYPES) and isinstance(getattr(module, "weight", None), torch.Tensor)
    ]


# Histograms of larger layers are taken on an evenly strided sample of this many values.
HISTOGRAM_SAMPLE = 1 << 18


@torch.no_grad()
def weight_record(name: str, module: nn.Module, bins: int = 40, overflow: float = OVERFLOW_MAGNITUDE) -> WeightRecord:
    """Statistics, histogram and flags of ``module.weight`` (see ``WeightRecord``; the
    histogram of a layer of more than ``HISTOGRAM_SAMPLE`` values counts an evenly strided
    sample of them)."""
    stats = finite_statistics(module.weight)
    values, low, high = stats.values, stats.min, stats.max
    if values.numel() > HISTOGRAM_SAMPLE:
        values = values[:: -(-values.numel() // HISTOGRAM_SAMPLE)]
    if values.numel() and high > low:
        counts = torch.histc(values, bins=bins, min=low, max=high)
        edges = np.linspace(low, high, bins + 1)
    elif values.numel():
        counts = torch.zeros(bins)
        counts[0] = values.numel()
        edges = np.linspace(low, high, bins + 1)
    else:
        counts, edges = torch.zeros(bins), np.full(bins + 1, np.nan)
    record = WeightRecord(
        name=name,
        layer_type=type(module).__name__,
        shape=tuple(int(s) for s in module.weight.shape),
        mean=stats.mean,
        std=stats.std,
        min=low,
        max=high,
        zero_fraction=stats.zero_fraction,
        num_nan=stats.num_nan,
        num_inf=stats.num_inf,
        histogram=counts.cpu().numpy().astype(np.int64),
        edges=edges,
    )
    record.flags = flag_weight(record, overflow)
    return record


def flag_weight(record: WeightRecord, overflow: float = OVERFLOW_MAGNITUDE) -> List[str]:
    """ "non-finite" with any NaN or infinity; "constant" when the finite values are all equal
    (a layer that was zeroed, or never trained, among them) and there is more than one;
    "overflowing" when a finite value reaches ``overflow`` in magnitude."""
    flags = []
    if record.num_nan or record.num_inf:
        flags.append(FLAG_NON_FINITE)
    if math.isfinite(record.min) and record.min == record.max and record.numel > 1:
        flags.append(FLAG_CONSTANT)
    if math.isfinite(record.min) and max(abs(record.min), abs(record.max)) >= overflow:
        flags.append(FLAG_OVERFLOWING)
    return flags


def inspect_weights(model: nn.Module, bins: int = 40, overflow: float = OVERFLOW_MAGNITUDE) -> List[WeightRecord]:
    """A ``WeightRecord`` for each layer of ``weight_layers(model)``."""
    return [weight_record(name, module, bins, overflow) for name, module in weight_layers(model)]


__all__ = [
    "HISTOGRAM_SAMPLE",
    "OVERFLOW_MAGNITUDE",
    "WEIGHT_LAYER_TYPES",
    "WeightRecord",
    "flag_weight",
    "inspect_weights",
    "weight_layers",
    "weight_record",
]
