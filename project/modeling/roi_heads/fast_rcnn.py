"""The box predictor of Fast R-CNN: class scores and per-class box deltas, their losses, and
per-image inference (score threshold, per-class NMS, top-k)."""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ...layers import ShapeSpec, batched_nms, cat
from ...structures import Boxes, Instances
from ...utils.events import current_event_storage
from ..box_regression import Box2BoxTransform, box_regression_loss


@torch.no_grad()
def report_classification_stats(scores: torch.Tensor, gt_classes: torch.Tensor, foreground: torch.Tensor) -> None:
    """Record, when training under an ``EventStorage``, how the sampled RoIs are classified:
    ``cls_accuracy`` over all of them and, over the ``foreground`` ones (an (R,) bool mask),
    ``fg_cls_accuracy`` and ``false_negative`` (the share predicted as background, the last of
    the (R, K + 1) scores)."""
    storage = current_event_storage()
    if storage is None or gt_classes.numel() == 0:
        return
    background = scores.shape[1] - 1
    predicted = scores.argmax(dim=1)
    stats = {"fast_rcnn/cls_accuracy": (predicted == gt_classes).float().mean()}
    num_foreground = int(foreground.sum())
    if num_foreground:
        stats["fast_rcnn/fg_cls_accuracy"] = (predicted[foreground] == gt_classes[foreground]).sum() / num_foreground
        stats["fast_rcnn/false_negative"] = (predicted[foreground] == background).sum() / num_foreground
    storage.put_scalars(**stats)


def _per_class_boxes(boxes: torch.Tensor, num_classes: int, image_shape: Tuple[int, int]) -> torch.Tensor:
    """(R, K, 4) boxes clipped to ``image_shape`` from (R, K*4) class-specific boxes, or from
    (R, 4) class-agnostic ones (shared by every class)."""
    clipped = Boxes(boxes.reshape(-1, 4))
    clipped.clip(image_shape)
    per_class = clipped.tensor.view(len(boxes), boxes.shape[1] // 4, 4)
    return per_class.expand(-1, num_classes, -1)


def fast_rcnn_inference_single_image(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_shape: Tuple[int, int],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
) -> Instances:
    """One image's detections from its RoIs' per-class boxes (R, K*4), or class-agnostic
    boxes (R, 4), and class probabilities (R, K+1), background last.

    Every (RoI, class) pair whose probability exceeds ``score_thresh`` is a candidate, with that
    class's box clipped to ``image_shape`` (height, width); RoIs with a non-finite box or score
    are ignored. Candidates of the same class suppress each other above IoU ``nms_thresh``. The
    result holds the best ``topk_per_image`` (all when negative) as ``pred_boxes``, ``scores``
    and ``pred_classes`` (0-based), by decreasing score.
    """
    class_scores = scores[:, :-1]
    finite = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
    if not finite.all():
        boxes, class_scores = boxes[finite], class_scores[finite]
    per_class = _per_class_boxes(boxes, class_scores.shape[1], image_shape)
    roi_index, class_index = (class_scores > score_thresh).nonzero(as_tuple=True)
    candidate_boxes = per_class[roi_index, class_index]
    candidate_scores = class_scores[roi_index, class_index]
    keep = batched_nms(candidate_boxes, candidate_scores, class_index, nms_thresh)
    if topk_per_image >= 0:
        keep = keep[:topk_per_image]
    return Instances(
        image_shape,
        pred_boxes=Boxes(candidate_boxes[keep]),
        scores=candidate_scores[keep],
        pred_classes=class_index[keep],
    )


class FastRCNNOutputLayers(nn.Module):
    """Two linear layers on the box head's features: ``cls_score`` (K+1 logits, background
    last, as in Detectron2) and ``bbox_pred`` (K*4 class-specific deltas, or 4 if agnostic)."""

    def __init__(self, cfg, input_shape: ShapeSpec):
        super().__init__()
        box_head = cfg.MODEL.ROI_BOX_HEAD
        roi_heads = cfg.MODEL.ROI_HEADS
        input_size = input_shape.channels * (input_shape.width or 1) * (input_shape.height or 1)
        self.num_classes = roi_heads.NUM_CLASSES
        self.cls_score = nn.Linear(input_size, self.num_classes + 1)
        num_bbox_reg_classes = 1 if box_head.CLS_AGNOSTIC_BBOX_REG else self.num_classes
        self.bbox_pred = nn.Linear(input_size, num_bbox_reg_classes * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.constant_(self.cls_score.bias, 0)
        nn.init.constant_(self.bbox_pred.bias, 0)

        self.box2box_transform = Box2BoxTransform(weights=box_head.BBOX_REG_WEIGHTS)
        self.smooth_l1_beta = box_head.SMOOTH_L1_BETA
        self.box_reg_loss_type = box_head.BBOX_REG_LOSS_TYPE
        self.loss_weight = {"loss_cls": 1.0, "loss_box_reg": box_head.BBOX_REG_LOSS_WEIGHT}
        self.test_score_thresh = roi_heads.SCORE_THRESH_TEST
        self.test_nms_thresh = roi_heads.NMS_THRESH_TEST
        self.test_topk_per_image = cfg.TEST.DETECTIONS_PER_IMAGE

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Class logits (R, K+1) and box deltas (R, K*4) for features (R, D) (or (R, C, H, W))."""
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)

    def losses(
        self, predictions: Tuple[torch.Tensor, torch.Tensor], proposals: List[Instances]
    ) -> Dict[str, torch.Tensor]:
        """Cross-entropy over sampled proposals and box regression over their foreground,
        both normalised by the number of sampled proposals."""
        scores, proposal_deltas = predictions
        gt_classes = cat([p.gt_classes for p in proposals], dim=0)
        proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        gt_boxes = cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals], dim=0)
        fg = (gt_classes >= 0) & (gt_classes < self.num_classes)
        report_classification_stats(scores, gt_classes, fg)
        loss_cls = F.cross_entropy(scores, gt_classes, reduction="mean") if gt_classes.numel() else scores.sum() * 0.0

        box_dim = proposal_boxes.shape[1]
        if proposal_deltas.shape[1] == box_dim:  # class-agnostic regression
            fg_deltas = proposal_deltas[fg]
        else:
            fg_deltas = proposal_deltas.view(-1, self.num_classes, box_dim)[fg, gt_classes[fg]]
        loss_box_reg = box_regression_loss(
            proposal_boxes[fg],
            self.box2box_transform,
            fg_deltas,
            gt_boxes[fg],
            loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
        ) / max(gt_classes.numel(), 1.0)
        return {
            "loss_cls": loss_cls * self.loss_weight["loss_cls"],
            "loss_box_reg": loss_box_reg * self.loss_weight["loss_box_reg"],
        }

    def predict_boxes(
        self, predictions: Tuple[torch.Tensor, torch.Tensor], proposals: List[Instances]
    ) -> List[torch.Tensor]:
        """Per image, decoded boxes (R_i, K*4) (or (R_i, 4) if agnostic)."""
        if not proposals:
            return []
        _, proposal_deltas = predictions
        boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        predicted = self.box2box_transform.apply_deltas(proposal_deltas, boxes)
        return list(predicted.split([len(p) for p in proposals]))

    def predict_probs(
        self, predictions: Tuple[torch.Tensor, torch.Tensor], proposals: List[Instances]
    ) -> List[torch.Tensor]:
        """Per image, softmax class probabilities (R_i, K+1)."""
        scores, _ = predictions
        return list(F.softmax(scores, dim=-1).split([len(p) for p in proposals]))

    def inference(self, predictions: Tuple[torch.Tensor, torch.Tensor], proposals: List[Instances]) -> List[Instances]:
        """Final detections per image (see ``fast_rcnn_inference_single_image``)."""
        boxes = self.predict_boxes(predictions, proposals)
        scores = self.predict_probs(predictions, proposals)
        return [
            fast_rcnn_inference_single_image(
                b, s, p.image_size, self.test_score_thresh, self.test_nms_thresh, self.test_topk_per_image
            )
            for b, s, p in zip(boxes, scores, proposals)
        ]
