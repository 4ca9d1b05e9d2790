"""Pairing two models' detections on the same image one to one, for the tests that compare this
project's model with Detectron2's on the same weights."""

from __future__ import annotations

from typing import Any, List, Tuple

import torch
from torchvision.ops import box_iou


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two (H, W) bool masks; 1 when both are empty."""
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 1.0


def match_detections(reference: Any, other: Any) -> List[Tuple[float, float, float]]:
    """Pair each detection of ``reference`` (in its order) with the not yet paired detection of
    ``other`` of the same class whose box overlaps it most. Both are ``Instances``-like (either
    side's) with ``pred_boxes`` (XYXY), ``scores``, ``pred_classes`` and (N, H, W) bool
    ``pred_masks``, and as many detections. Returns (box IoU, |score difference|, mask IoU) per
    pair."""
    assert len(other) == len(reference), f"{len(other)} detections against {len(reference)}"
    iou = box_iou(reference.pred_boxes.tensor, other.pred_boxes.tensor)
    iou = torch.where(reference.pred_classes[:, None] == other.pred_classes[None, :], iou, torch.zeros_like(iou))
    used, pairs = set(), []
    for i in range(len(reference)):
        j = next(j for j in torch.argsort(iou[i], descending=True).tolist() if j not in used)
        used.add(j)
        score = abs(reference.scores[i] - other.scores[j]).item()
        pairs.append((iou[i, j].item(), score, mask_iou(reference.pred_masks[i], other.pred_masks[j])))
    return pairs
