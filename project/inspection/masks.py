"""The mask head on one image: per detection, the M x M mask probabilities it predicted (in the
detection's box) beside the full-size mask the model returned, and the ground-truth mask of
the object it found when the image has annotations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ..structures import Boxes, Instances, MaskCrop, mask_iou, pairwise_iou
from ..structures.rle import encode_crop
from ..visualization.masks import as_mask_crops
from .inputs import GroundTruth

# A detection is shown with the ground-truth object its box overlaps most, if more than this.
GT_MATCH_IOU = 0.0


@dataclass
class MaskView:
    """One detection: ``output_index`` among the model's results, ``box`` (4,) in the original
    frame, ``probabilities`` (M, M) float32 in [0, 1] (the mask head's output for its class,
    covering the detection's box in the input frame), ``pasted`` the model's own mask (original
    frame), and the ground-truth object whose box overlaps the detection's most (box IoU above
    ``GT_MATCH_IOU``): ``gt_index``, ``gt_box_iou``, ``gt_mask`` and ``mask_iou`` with it, or
    None."""

    output_index: int
    score: Optional[float]
    pred_class: Optional[int]
    box: np.ndarray
    probabilities: Optional[np.ndarray]
    pasted: MaskCrop
    gt_index: Optional[int] = None
    gt_box_iou: Optional[float] = None
    gt_mask: Optional[MaskCrop] = None
    mask_iou: Optional[float] = None

    def summary(self) -> Dict[str, Any]:
        probs = self.probabilities
        return {
            "detection": self.output_index,
            "score": self.score,
            "class": self.pred_class,
            "box": [float(v) for v in self.box],
            "mask_size": list(probs.shape) if probs is not None else None,
            "mean_probability": float(probs.mean()) if probs is not None and probs.size else None,
            "pasted_area": int(np.count_nonzero(self.pasted.mask)),
            "pasted_rle": encode_crop(self.pasted),
            "gt_index": self.gt_index,
            "gt_box_iou": self.gt_box_iou,
            "mask_iou_with_gt": self.mask_iou,
        }


@dataclass
class MasksStep:
    """Step 4: ``views`` for the first ``top_n`` of the model's detections (best first)."""

    views: List[MaskView]
    num_detections: int

    def summary(self) -> Dict[str, Any]:
        return {"num_detections": self.num_detections, "instances": [v.summary() for v in self.views]}


def masks_step(
    output: Instances,
    detections: Optional[Instances],
    output_index: Optional[torch.Tensor],
    ground_truth: Optional[GroundTruth],
    top_n: int,
) -> MasksStep:
    """Step 4 from the model's ``output`` (with ``pred_masks``), the ROI heads' ``detections``
    (``pred_masks`` (D, 1, M, M) probabilities) and ``output_index`` linking the two (see
    ``refinement.trace_output``; without it no probabilities are shown)."""
    count = min(top_n, len(output))
    crops = as_mask_crops(output.pred_masks[:count], output.image_size) if count else []
    boxes = output.pred_boxes.tensor[:count].detach().cpu()
    gt_iou = None
    if ground_truth is not None and len(ground_truth.boxes) and count:
        gt_iou = pairwise_iou(Boxes(boxes), Boxes(ground_truth.boxes))
    views = []
    for i in range(count):
        probabilities = None
        if output_index is not None and detections is not None and detections.has("pred_masks"):
            probabilities = detections.pred_masks[int(output_index[i]), 0].detach().cpu().float().numpy()
        view = MaskView(
            output_index=i,
            score=float(output.scores[i]) if output.has("scores") else None,
            pred_class=int(output.pred_classes[i]) if output.has("pred_classes") else None,
            box=boxes[i].numpy(),
            probabilities=probabilities,
            pasted=crops[i],
        )
        if gt_iou is not None:
            best, j = gt_iou[i].max(dim=0)
            if float(best) > GT_MATCH_IOU:
                view.gt_index, view.gt_box_iou = int(j), float(best)
                if ground_truth.masks is not None:
                    view.gt_mask = ground_truth.masks[int(j)]
                    view.mask_iou = mask_iou(view.pasted, view.gt_mask)
        views.append(view)
    return MasksStep(views=views, num_detections=len(output))


__all__ = ["GT_MATCH_IOU", "MaskView", "MasksStep", "masks_step"]
