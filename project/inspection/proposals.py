"""The RPN's proposals on one image, before and after non-maximum suppression, and how many
ground-truth boxes they find.

"Before NMS" are the candidates NMS is given, rebuilt from the captured anchors and head
outputs the way ``find_top_rpn_proposals`` documents it: each level's ``pre_nms_topk`` highest
logits, decoded, clipped to the image, non-finite ones and those with a side not longer than
``min_box_size`` dropped. "After NMS" are the proposal generator's actual output. Boxes are
XYXY in input-frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from ..structures import Boxes, Instances, pairwise_iou

RECALL_THRESHOLDS = (0.5, 0.7)


@dataclass
class ProposalSet:
    """Boxes (P, 4) and their objectness logits (P,), best first; ``levels`` (P,) when known."""

    boxes: torch.Tensor
    logits: torch.Tensor
    levels: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.boxes)


def recall(gt_boxes: Boxes, boxes: torch.Tensor, thresholds: Sequence[float] = RECALL_THRESHOLDS) -> Dict[str, float]:
    """Per IoU threshold t (key ``"iou_<t>"``), the fraction of ``gt_boxes`` that some box of
    ``boxes`` (P, 4) overlaps with IoU >= t; 0 when there are no boxes, NaN without ground truth."""
    if len(gt_boxes) == 0:
        return {f"iou_{t}": float("nan") for t in thresholds}
    if len(boxes) == 0:
        return {f"iou_{t}": 0.0 for t in thresholds}
    best = pairwise_iou(gt_boxes.to(boxes.device), Boxes(boxes)).max(dim=1).values
    return {f"iou_{t}": float((best >= t).float().mean()) for t in thresholds}


def candidates_before_nms(
    anchors: Sequence[Boxes],
    logits: Sequence[torch.Tensor],
    deltas: Sequence[torch.Tensor],
    box2box_transform: Any,
    image_size: Tuple[int, int],
    pre_nms_topk: int,
    min_box_size: float = 0.0,
) -> ProposalSet:
    """The candidates NMS receives (see the module's docstring), from per-level anchors, flat
    logits (R_l,) and deltas (R_l, 4), sorted by logit over all levels."""
    boxes, scores, levels = [], [], []
    for level, (level_anchors, level_logits, level_deltas) in enumerate(zip(anchors, logits, deltas)):
        top_logits, index = level_logits.topk(min(pre_nms_topk, len(level_logits)))
        decoded = Boxes(box2box_transform.apply_deltas(level_deltas[index], level_anchors.tensor[index]))
        finite = torch.isfinite(decoded.tensor).all(dim=1) & torch.isfinite(top_logits)
        decoded.clip(image_size)
        usable = finite & decoded.nonempty(threshold=min_box_size)
        boxes.append(decoded.tensor[usable])
        scores.append(top_logits[usable])
        levels.append(torch.full((int(usable.sum()),), level, dtype=torch.int64))
    if not boxes:
        return ProposalSet(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    all_boxes, all_scores, all_levels = torch.cat(boxes), torch.cat(scores), torch.cat(levels)
    order = torch.argsort(-all_scores, stable=True)
    return ProposalSet(all_boxes[order].cpu(), all_scores[order].cpu(), all_levels[order.cpu()])


@dataclass
class ProposalsStep:
    """Step 2: the candidates before NMS and the proposals after it, their recall of the
    ground truth (None without ground truth), and the settings that chose them."""

    before_nms: ProposalSet
    after_nms: ProposalSet
    recall_before: Optional[Dict[str, float]]
    recall_after: Optional[Dict[str, float]]
    settings: Dict[str, Any]

    def summary(self, top_n: int) -> Dict[str, Any]:
        def rows(proposals: ProposalSet) -> List[Dict[str, Any]]:
            return [
                {"box": [float(v) for v in proposals.boxes[i]], "objectness_logit": float(proposals.logits[i])}
                for i in range(min(top_n, len(proposals)))
            ]

        return {
            "settings": self.settings,
            "before_nms": {"count": len(self.before_nms), "recall": self.recall_before, "top": rows(self.before_nms)},
            "after_nms": {"count": len(self.after_nms), "recall": self.recall_after, "top": rows(self.after_nms)},
        }


def _inference_value(value: Any) -> Any:
    """The inference entry of a (training, inference) setting kept as a dict keyed by
    ``training`` (the RPN's way), or the value itself."""
    if isinstance(value, dict):
        return value.get(False)
    return value


def proposals_step(
    rpn: Any,
    anchors: Sequence[Boxes],
    logits: Sequence[torch.Tensor],
    deltas: Sequence[torch.Tensor],
    proposals: Instances,
    gt_boxes: Optional[Boxes],
    image_size: Tuple[int, int],
) -> ProposalsStep:
    """Step 2 for a proposal generator ``rpn`` (``box2box_transform``, ``pre_nms_topk``,
    ``post_nms_topk``, ``nms_thresh``, ``min_box_size``), from its captured anchors and flat
    head outputs (``flat_rpn_predictions``) and its output ``proposals`` for the image."""
    pre_nms_topk = _inference_value(getattr(rpn, "pre_nms_topk", None))
    total = sum(len(a) for a in anchors)
    min_box_size = float(getattr(rpn, "min_box_size", 0.0))
    before = candidates_before_nms(
        anchors, logits, deltas, rpn.box2box_transform, image_size, pre_nms_topk or total, min_box_size
    )
    after = ProposalSet(
        proposals.proposal_boxes.tensor.detach().cpu(),
        proposals.objectness_logits.detach().cpu()
        if proposals.has("objectness_logits")
        else torch.zeros(len(proposals)),
    )
    settings = {
        "pre_nms_topk_per_level": pre_nms_topk,
        "post_nms_topk": _inference_value(getattr(rpn, "post_nms_topk", None)),
        "nms_thresh": getattr(rpn, "nms_thresh", None),
        "min_box_size": min_box_size,
    }
    return ProposalsStep(
        before_nms=before,
        after_nms=after,
        recall_before=recall(gt_boxes, before.boxes) if gt_boxes is not None else None,
        recall_after=recall(gt_boxes, after.boxes) if gt_boxes is not None else None,
        settings=settings,
    )


__all__ = ["RECALL_THRESHOLDS", "ProposalSet", "ProposalsStep", "candidates_before_nms", "proposals_step", "recall"]
