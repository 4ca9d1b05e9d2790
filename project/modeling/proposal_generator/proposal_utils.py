"""Choosing each image's object proposals from dense per-anchor predictions."""

from __future__ import annotations

import logging
from typing import List, Tuple

import torch

from ...layers import batched_nms
from ...structures import Boxes, Instances

logger = logging.getLogger(__name__)


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
    num_images = len(image_sizes)
    image_index = torch.arange(num_images, device=proposals[0].device)[:, None]
    level_scores, level_boxes, level_ids = [], [], []
    for level, (boxes, logits) in enumerate(zip(proposals, pred_objectness_logits)):
        k = min(logits.shape[1], pre_nms_topk)
        scores, index = logits.topk(k, dim=1)
        level_scores.append(scores)
        level_boxes.append(boxes[image_index, index])
        level_ids.append(torch.full((k,), level, dtype=torch.int64, device=boxes.device))
    scores = torch.cat(level_scores, dim=1)
    boxes = torch.cat(level_boxes, dim=1)
    level_ids = torch.cat(level_ids)

    results = []
    for image_id, image_size in enumerate(image_sizes):
        results.append(
            _select_in_image(
                Boxes(boxes[image_id]),
                scores[image_id],
                level_ids,
                image_size,
                nms_thresh,
                post_nms_topk,
                min_box_size,
                training,
            )
        )
    return results


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
    """One image's step of ``find_top_rpn_proposals``, after the per-level top-k."""
    finite = torch.isfinite(boxes.tensor).all(dim=1) & torch.isfinite(scores)
    if not finite.all():
        if training:
            raise FloatingPointError(
                "RPN predicted non-finite proposal boxes or objectness logits: training has diverged "
                "(try a lower learning rate or gradient clipping)"
            )
        logger.warning(
            "dropped %d of %d RPN proposals with non-finite boxes or objectness logits",
            int((~finite).sum()),
            len(finite),
        )
        boxes, scores, level_ids = boxes[finite], scores[finite], level_ids[finite]
    boxes.clip(image_size)

    large_enough = boxes.nonempty(threshold=min_box_size)
    boxes, scores, level_ids = boxes[large_enough], scores[large_enough], level_ids[large_enough]

    keep = batched_nms(boxes.tensor, scores, level_ids, nms_thresh)[:post_nms_topk]
    result = Instances(image_size)
    result.proposal_boxes = boxes[keep]
    result.objectness_logits = scores[keep]
    return result
