"""Sampling a fixed-size, class-balanced minibatch of predictions for the losses."""

from __future__ import annotations

from typing import Tuple

import torch

from ..layers import nonzero_tuple


def subsample_labels(
    labels: torch.Tensor, num_samples: int, positive_fraction: float, bg_label: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pick at most ``num_samples`` indices, of which at most ``positive_fraction`` are
    foreground (label not -1 and not ``bg_label``), the rest background (``bg_label``).

    Returns the sampled foreground and background indices into ``labels``, chosen at random.
    """
    positive = nonzero_tuple((labels != -1) & (labels != bg_label))[0]
    negative = nonzero_tuple(labels == bg_label)[0]
    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    num_neg = min(negative.numel(), num_samples - num_pos)
    perm1 = torch.randperm(positive.numel(), device=positive.device)[:num_pos]
    perm2 = torch.randperm(negative.numel(), device=negative.device)[:num_neg]
    return positive[perm1], negative[perm2]
