"""Sampling a fixed-size, class-balanced minibatch of predictions for the losses."""

from __future__ import annotations

from typing import Tuple

import torch

from ..layers import nonzero_tuple


def _random_subset(indices: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` entries of the 1-D ``indices``, drawn without replacement, in random order
    (one ``torch.randperm`` of ``len(indices)``)."""
    order = torch.randperm(indices.numel(), device=indices.device)
    return indices[order[:count]]


def subsample_labels(
    labels: torch.Tensor, num_samples: int, positive_fraction: float, bg_label: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw a minibatch of at most ``num_samples`` indices into the 1-D ``labels``.

    Foreground (neither -1 nor ``bg_label``) fills up to ``int(num_samples * positive_fraction)``
    slots; background (``bg_label``) fills the rest, as far as there are enough of each; -1 is never
    drawn. Returns (foreground indices, background indices), int64, each in random order; the
    foreground is drawn first.
    """
    is_bg = labels == bg_label
    fg_pool = nonzero_tuple((labels != -1) & ~is_bg)[0]
    bg_pool = nonzero_tuple(is_bg)[0]
    num_fg = min(fg_pool.numel(), int(num_samples * positive_fraction))
    num_bg = min(bg_pool.numel(), num_samples - num_fg)
    return _random_subset(fg_pool, num_fg), _random_subset(bg_pool, num_bg)
