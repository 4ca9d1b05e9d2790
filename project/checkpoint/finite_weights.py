"""Finding the tensors of a state dict that hold NaN or infinite values.

Once training diverges, weights become NaN or infinite; such a model scores every detection
NaN, so it predicts nothing, and training from it fails at its first step. The checkpointer uses
these helpers to refuse writing and reading such weights, naming the tensors concerned.
"""

from __future__ import annotations

from typing import Iterable, List, Mapping

import torch

_NAMED = 5  # tensors listed by name in a description; the others are counted


def non_finite_keys(state_dict: Mapping[str, object], keys: Iterable[str]) -> List[str]:
    """Those of ``keys`` whose value in ``state_dict`` is a floating-point tensor holding at
    least one NaN or infinity, in the order of ``keys``. Other values are ignored."""
    return [
        key
        for key in keys
        if isinstance(state_dict[key], torch.Tensor)
        and state_dict[key].is_floating_point()
        and not bool(torch.isfinite(state_dict[key]).all())
    ]


def _count_of(tensor: torch.Tensor) -> str:
    nan = int(torch.isnan(tensor).sum())
    infinite = int(torch.isinf(tensor).sum())
    return f"{nan} NaN and {infinite} infinite of {tensor.numel()} values"


def describe_non_finite(state_dict: Mapping[str, torch.Tensor], keys: List[str]) -> str:
    """``"a.weight (1 NaN and 0 infinite of 64 values), ..."`` for the first few ``keys``,
    then how many more there are."""
    named = ", ".join(f"{key} ({_count_of(state_dict[key])})" for key in keys[:_NAMED])
    more = len(keys) - _NAMED
    return named + (f" and {more} more" if more > 0 else "")
