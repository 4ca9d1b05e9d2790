"""Choosing each image's object proposals from dense per-anchor predictions."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Sequence, Tuple, Union

import torch

from ...layers import batched_nms
from ...structures import Boxes, Instances

logger = logging.getLogger(__name__)

# The objectness logit given to ground-truth boxes added as proposals: certain objects.
GT_OBJECTNESS_LOGIT = 1e10


def find_top_rpn_proposals(
    proposals: List[torch.Tensor],
    pred_objectness_logits: List[torch.Tensor],
    image_sizes: List[Tuple[int, int]],
    nms_thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    min_box_size: float,
    training: bool,
) -> List[Instances]:
    """Per image, the best-scoring proposals after per-level top-k and per-level NMS.

    ``proposals[l]`` is (N, R_l, 4) XYXY boxes in input pixels and ``pred_objectness_logits[l]``
    is (N, R_l), for level ``l``. For each image: keep the ``pre_nms_topk`` highest logits of
    each level, clip the boxes to the image ``(height, width)``, drop non-finite boxes or
    scores (an error while ``training``: the model has diverged), drop boxes with a side not
    longer than ``min_box_size``, run NMS at ``nms_thresh`` within each level, and keep the
    ``post_nms_topk`` best over all levels.

    Returns one Instances per image with ``proposal_boxes`` (Boxes) and ``objectness_logits``
    (logits, sorted in descending order).
    """
    candidates = [_level_top_k(boxes, logits, pre_nms_topk) for boxes, logits in zip(proposals, pred_objectness_logits)]
    boxes = torch.cat([level_boxes for level_boxes, _ in candidates], dim=1)
    scores = torch.cat([level_scores for _, level_scores in candidates], dim=1)
    level_ids = torch.cat(
        [
            torch.full((s.shape[1],), level, dtype=torch.int64, device=s.device)
            for level, (_, s) in enumerate(candidates)
        ]
    )
    return [
        _select_in_image(
            Boxes(boxes[i]), scores[i], level_ids, image_size, nms_thresh, post_nms_topk, min_box_size, training
        )
        for i, image_size in enumerate(image_sizes)
    ]


def _at_most(count: Union[int, torch.Tensor], cap: int) -> Union[int, torch.Tensor]:
    """``min(count, cap)`` for a tensor size ``count``; while tracing, sizes are 0-dim tensors and
    the minimum stays a traced operation, so the trace also fits inputs of other sizes."""
    if isinstance(count, torch.Tensor):
        return count.clamp(max=cap)
    return min(count, cap)


def _level_top_k(boxes: torch.Tensor, logits: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` (at most all) highest-scoring of one level's (N, R, 4) boxes and (N, R) logits,
    per image, best first: (N, k, 4) boxes and (N, k) logits."""
    top_logits, index = logits.topk(_at_most(logits.shape[1], k), dim=1)
    top_boxes = boxes.gather(1, index.unsqueeze(-1).expand(-1, -1, boxes.shape[-1]))
    return top_boxes, top_logits


def _select_in_image(
    boxes: Boxes,
    scores: torch.Tensor,
    level_ids: torch.Tensor,
    image_size: Tuple[int, int],
    nms_thresh: float,
    post_nms_topk: int,
    min_box_size: float,
    training: bool,
) -> Instances:
    """One image's proposals from its per-level top-k candidates (see ``find_top_rpn_proposals``)."""
    finite = torch.isfinite(boxes.tensor).all(dim=1) & torch.isfinite(scores)
    if not finite.all():
        _report_non_finite(int((~finite).sum()), len(finite), training)
    boxes.clip(image_size)  # a clipped box is only used if it was finite before clipping
    usable = finite & boxes.nonempty(threshold=min_box_size)
    boxes, scores, level_ids = boxes[usable], scores[usable], level_ids[usable]
    keep = batched_nms(boxes.tensor, scores, level_ids, nms_thresh)[:post_nms_topk]
    return Instances(image_size, proposal_boxes=boxes[keep], objectness_logits=scores[keep])


def _report_non_finite(count: int, total: int, training: bool) -> None:
    """Non-finite RPN outputs: an error in training (the model has diverged), else a warning."""
    if training:
        raise FloatingPointError(
            f"the RPN predicted {count} non-finite proposal boxes or objectness logits: training has "
            "diverged (try a lower learning rate, a longer warmup or gradient clipping)"
        )
    logger.warning("dropped %d of %d RPN proposals with non-finite boxes or objectness logits", count, total)


def add_ground_truth_to_proposals(
    targets: Sequence[Union[Instances, Boxes]], proposals: Sequence[Instances]
) -> List[Instances]:
    """Per image, its proposals followed by its ground-truth boxes as further proposals, so the
    ROI heads always see well-placed foreground, even while the RPN still proposes badly.

    ``targets`` holds one ``Boxes``, or Instances with ``gt_boxes``, per image; ``proposals``
    one Instances per image (see ``add_ground_truth_to_proposals_single_image`` for its fields).
    """
    if len(targets) != len(proposals):
        raise ValueError(f"{len(targets)} images of ground truth but {len(proposals)} images of proposals")
    return [add_ground_truth_to_proposals_single_image(t, p) for t, p in zip(targets, proposals)]


def add_ground_truth_to_proposals_single_image(gt: Union[Instances, Boxes], proposals: Instances) -> Instances:
    """One image's ``proposals`` followed by one proposal per ground-truth box, with the fields
    of ``proposals`` only: ``proposal_boxes`` are the gt boxes, ``objectness_logits`` are
    ``GT_OBJECTNESS_LOGIT``, and any other field is copied from the gt field of the same name.

    Raises AssertionError (the type Detectron2 raises) when ``gt`` lacks one of those fields.
    """
    gt_fields = {"gt_boxes": gt} if isinstance(gt, Boxes) else gt.get_fields()
    extra = Instances(proposals.image_size)
    for name in proposals.get_fields():
        extra.set(name, _ground_truth_as_proposal_field(name, gt_fields))
    return Instances.cat([proposals, extra])


def _ground_truth_as_proposal_field(name: str, gt_fields: Dict[str, Any]) -> Any:
    boxes = gt_fields["gt_boxes"]
    if name == "proposal_boxes":
        return boxes
    if name == "objectness_logits":
        return torch.full((len(boxes),), GT_OBJECTNESS_LOGIT, device=boxes.device)
    if name not in gt_fields:
        raise AssertionError(
            f"the proposals have a field {name!r} that the ground truth lacks (it has {sorted(gt_fields)}); "
            "ground-truth boxes added as proposals need a value for every proposal field"
        )
    return gt_fields[name]
