"""``Matcher``: assigns each prediction (anchor or proposal) to its best ground-truth box."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch


class Matcher:
    """Label predictions by their best IoU with ground truth.

    With ``thresholds = [t1, ..., tk]`` and ``labels = [l0, ..., lk]``, a prediction whose best
    IoU lies in ``[t_i, t_{i+1})`` gets label ``l_i`` (-1 ignore, 0 background, 1 foreground).
    With ``allow_low_quality_matches``, each ground truth's best predictions (ties included)
    become foreground even below the top threshold, as in Faster R-CNN's RPN.
    """

    def __init__(self, thresholds: Sequence[float], labels: Sequence[int], allow_low_quality_matches: bool = False):
        thresholds = list(thresholds)
        if any(a > b for a, b in zip(thresholds[:-1], thresholds[1:])):
            raise ValueError(f"Matcher thresholds must be sorted, got {thresholds}")
        if len(labels) != len(thresholds) + 1:
            raise ValueError(f"Matcher needs len(labels) == len(thresholds) + 1, got {labels} / {thresholds}")
        if any(label not in (-1, 0, 1) for label in labels):
            raise ValueError(f"Matcher labels must be -1, 0 or 1, got {labels}")
        self.thresholds: List[float] = [-float("inf")] + thresholds + [float("inf")]
        self.labels = list(labels)
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Match an (M ground truth, N predictions) quality matrix such as IoU.

        Returns, per prediction, the index of its best ground truth, (N,) int64 (ties go to the
        lowest index), and its label, (N,) int8. Without ground truth (or predictions) every
        prediction gets index 0 and the label of the lowest band.
        """
        if match_quality_matrix.numel() == 0:
            return self._unmatched(match_quality_matrix)
        best_quality, matches = match_quality_matrix.max(dim=0)
        match_labels = self._band_labels(best_quality)
        if self.allow_low_quality_matches:
            match_labels.masked_fill_(_best_for_some_gt(match_quality_matrix), 1)
        return matches, match_labels

    def _unmatched(self, match_quality_matrix: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        num_predictions = match_quality_matrix.size(1)
        matches = match_quality_matrix.new_zeros(num_predictions, dtype=torch.int64)
        return matches, torch.full_like(matches, self.labels[0], dtype=torch.int8)

    def _band_labels(self, quality: torch.Tensor) -> torch.Tensor:
        """int8 label of each value's band ``[low, high)``; a value in no band (NaN, +inf) gets 1."""
        labels = torch.ones_like(quality, dtype=torch.int8)
        bands = zip(self.thresholds[:-1], self.thresholds[1:])
        for label, (low, high) in zip(self.labels, bands):
            labels.masked_fill_((quality >= low) & (quality < high), label)
        return labels


def _best_for_some_gt(match_quality_matrix: torch.Tensor) -> torch.Tensor:
    """(N,) bool: which predictions reach the highest quality of at least one ground-truth row (ties
    included), however low that quality is."""
    best_per_gt = match_quality_matrix.max(dim=1, keepdim=True).values
    return (match_quality_matrix == best_per_gt).any(dim=0)
