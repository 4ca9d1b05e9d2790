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
        """From an (M ground truth, N predictions) IoU matrix, return per prediction the index of
        its matched ground truth (N,) int64 and its label (N,) int8."""
        if match_quality_matrix.numel() == 0:
            n = match_quality_matrix.size(1)
            matches = match_quality_matrix.new_full((n,), 0, dtype=torch.int64)
            labels = match_quality_matrix.new_full((n,), self.labels[0], dtype=torch.int8)
            return matches, labels
        matched_vals, matches = match_quality_matrix.max(dim=0)
        match_labels = matches.new_full(matches.size(), 1, dtype=torch.int8)
        for label, low, high in zip(self.labels, self.thresholds[:-1], self.thresholds[1:]):
            in_range = (matched_vals >= low) & (matched_vals < high)
            match_labels[in_range] = label
        if self.allow_low_quality_matches:
            best_per_gt, _ = match_quality_matrix.max(dim=1)
            _, pred_idx = torch.nonzero(match_quality_matrix == best_per_gt[:, None], as_tuple=True)
            match_labels[pred_idx] = 1
        return matches, match_labels
