"""How well a model's anchors fit a dataset's boxes, as the RPN's matcher will see them.

Choosing ``MODEL.ANCHOR_GENERATOR`` for a new kind of data (small nuclei, long road markings)
comes down to one question: how many ground-truth boxes have an anchor the RPN will label
foreground? These functions answer it for real boxes, with the model's own anchor generator.
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..structures import Boxes, pairwise_iou


def feature_grid_sizes(
    image_size: Tuple[int, int], strides: Sequence[int], size_divisibility: int
) -> List[Tuple[int, int]]:
    """(height, width) of each feature map for an input of ``image_size`` (h, w) pixels, after
    the batch is padded to a multiple of ``size_divisibility`` (0: no padding)."""
    height, width = image_size
    if size_divisibility > 0:
        height = math.ceil(height / size_divisibility) * size_divisibility
        width = math.ceil(width / size_divisibility) * size_divisibility
    return [(math.ceil(height / stride), math.ceil(width / stride)) for stride in strides]


def match_boxes_to_anchors(
    anchor_generator: nn.Module,
    grid_sizes: Sequence[Tuple[int, int]],
    gt_boxes: torch.Tensor,
    fg_iou_threshold: float,
    chunk: int = 64,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """For ``gt_boxes`` (G, 4) XYXY in input pixels, against every anchor the generator places on
    feature maps of ``grid_sizes``: each box's best anchor IoU (G,) and its number of anchors at
    IoU >= ``fg_iou_threshold`` (G,), i.e. its RPN positives before low-quality matching."""
    features = [torch.empty(1, 0, h, w) for h, w in grid_sizes]
    anchors = Boxes.cat(anchor_generator(features))
    best, positives = [], []
    for start in range(0, len(gt_boxes), chunk):
        iou = pairwise_iou(Boxes(gt_boxes[start : start + chunk]), anchors)
        best.append(iou.max(dim=1).values)
        positives.append((iou >= fg_iou_threshold).sum(dim=1))
    if not best:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return torch.cat(best), torch.cat(positives)


def summarize_coverage(
    best_iou: torch.Tensor, num_positive: torch.Tensor, box_sizes: torch.Tensor, fg_iou_threshold: float
) -> Dict[str, float]:
    """Fractions of boxes whose best anchor reaches the foreground threshold and IoU 0.5, the
    median best IoU, mean positives per box, and box-size percentiles (sqrt of area, pixels)."""
    if len(best_iou) == 0:
        raise ValueError("no ground-truth boxes to measure anchor coverage on")
    percentiles = (5, 25, 50, 75, 95)
    sizes = np.percentile(box_sizes.numpy(), percentiles)
    return {
        "num_boxes": len(best_iou),
        "fg_iou_threshold": fg_iou_threshold,
        "fraction_with_fg_anchor": round(float((best_iou >= fg_iou_threshold).float().mean()), 4),
        "fraction_with_anchor_iou_0.5": round(float((best_iou >= 0.5).float().mean()), 4),
        "median_best_iou": round(float(best_iou.quantile(0.5)), 4),
        "mean_fg_anchors_per_box": round(float(num_positive.float().mean()), 4),
        "box_size_percentiles": {f"p{p}": round(float(s), 1) for p, s in zip(percentiles, sizes)},
    }
