"""The box predictor of Fast R-CNN: class scores and per-class box deltas, their losses, and
per-image inference (score threshold, per-class NMS, top-k)."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ...config import configurable
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
) -> Tuple[Instances, torch.Tensor]:
    """One image's detections from its RoIs' per-class boxes (R, K*4), or class-agnostic
    boxes (R, 4), and class probabilities (R, K+1), background last.

    Every (RoI, class) pair whose probability exceeds ``score_thresh`` is a candidate, with that
    class's box clipped to ``image_shape`` (height, width); RoIs with a non-finite box or score
    are left out first. Candidates of the same class suppress each other above IoU
    ``nms_thresh``. Returns the best ``topk_per_image`` (all when negative) as Instances with
    ``pred_boxes``, ``scores`` and ``pred_classes`` (0-based), by decreasing score, and for each
    the index of its RoI among the RoIs left after the finite check (all of them, as a rule).
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
    detections = Instances(
        image_shape,
        pred_boxes=Boxes(candidate_boxes[keep]),
        scores=candidate_scores[keep],
        pred_classes=class_index[keep],
    )
    return detections, roi_index[keep]


def fast_rcnn_inference(
    boxes: Sequence[torch.Tensor],
    scores: Sequence[torch.Tensor],
    image_shapes: Sequence[Tuple[int, int]],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
) -> Tuple[List[Instances], List[torch.Tensor]]:
    """``fast_rcnn_inference_single_image`` on each image of a batch: ``boxes``, ``scores`` and
    ``image_shapes`` hold one entry per image (as ``predict_boxes`` and ``predict_probs`` give).
    Returns the per-image detections and the per-image RoI indices of the detections."""
    per_image = [
        fast_rcnn_inference_single_image(b, s, shape, score_thresh, nms_thresh, topk_per_image)
        for b, s, shape in zip(boxes, scores, image_shapes)
    ]
    return [detections for detections, _ in per_image], [rois for _, rois in per_image]


def _concatenated_targets(
    proposals: List[Instances], device: torch.device
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sampled proposals of a batch, concatenated: ``gt_classes`` (R,), ``proposal_boxes``
    (R, 4) and the matched ``gt_boxes`` (R, 4), the proposal itself standing in for an image
    without ground truth (all background, so never regressed). Empty tensors for no proposals."""
    if not proposals:
        empty_boxes = torch.empty((0, 4), device=device)
        return torch.empty(0, dtype=torch.int64, device=device), empty_boxes, empty_boxes
    gt_classes = cat([p.gt_classes for p in proposals], dim=0)
    proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
    gt_boxes = cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals], dim=0)
    return gt_classes, proposal_boxes, gt_boxes


class FastRCNNOutputLayers(nn.Module):
    """Two linear layers on the box head's features: ``cls_score`` (K+1 logits, background
    last, as in Detectron2) and ``bbox_pred`` (K*4 class-specific deltas, or 4 if
    ``cls_agnostic_bbox_reg``), with their losses and the detections they give.

    ``box2box_transform`` decodes the deltas; ``num_classes`` is K, background not counted.
    Inference keeps (RoI, class) pairs scoring above ``test_score_thresh``, applies per-class NMS
    at ``test_nms_thresh`` and keeps ``test_topk_per_image`` per image. The box loss is
    ``box_reg_loss_type`` ("smooth_l1" with ``smooth_l1_beta``, or "giou"). ``loss_weight``
    multiplies both losses, or, as a dict, ``loss_cls`` and ``loss_box_reg`` by name (1 if
    absent). ``input_shape`` may be a channel count.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec | int,
        *,
        box2box_transform: Box2BoxTransform,
        num_classes: int,
        test_score_thresh: float = 0.0,
        test_nms_thresh: float = 0.5,
        test_topk_per_image: int = 100,
        cls_agnostic_bbox_reg: bool = False,
        smooth_l1_beta: float = 0.0,
        box_reg_loss_type: str = "smooth_l1",
        loss_weight: float | Dict[str, float] = 1.0,
    ):
        super().__init__()
        if isinstance(input_shape, int):
            input_shape = ShapeSpec(channels=input_shape)
        input_size = input_shape.channels * (input_shape.width or 1) * (input_shape.height or 1)
        self.num_classes = num_classes
        self.cls_score = nn.Linear(input_size, num_classes + 1)
        num_bbox_reg_classes = 1 if cls_agnostic_bbox_reg else num_classes
        self.bbox_pred = nn.Linear(input_size, num_bbox_reg_classes * len(box2box_transform.weights))
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.constant_(self.cls_score.bias, 0)
        nn.init.constant_(self.bbox_pred.bias, 0)

        self.box2box_transform = box2box_transform
        self.smooth_l1_beta = smooth_l1_beta
        self.box_reg_loss_type = box_reg_loss_type
        if not isinstance(loss_weight, Mapping):
            loss_weight = {"loss_cls": loss_weight, "loss_box_reg": loss_weight}
        self.loss_weight: Dict[str, float] = dict(loss_weight)
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_topk_per_image = test_topk_per_image

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> Dict[str, Any]:
        box_head, roi_heads = cfg.MODEL.ROI_BOX_HEAD, cfg.MODEL.ROI_HEADS
        return {
            "input_shape": input_shape,
            "box2box_transform": Box2BoxTransform(weights=box_head.BBOX_REG_WEIGHTS),
            "num_classes": roi_heads.NUM_CLASSES,
            "test_score_thresh": roi_heads.SCORE_THRESH_TEST,
            "test_nms_thresh": roi_heads.NMS_THRESH_TEST,
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "cls_agnostic_bbox_reg": box_head.CLS_AGNOSTIC_BBOX_REG,
            "smooth_l1_beta": box_head.SMOOTH_L1_BETA,
            "box_reg_loss_type": box_head.BBOX_REG_LOSS_TYPE,
            "loss_weight": {"loss_box_reg": box_head.BBOX_REG_LOSS_WEIGHT},
        }

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Class logits (R, K+1) and box deltas (R, K*4) for features (R, D) (or (R, C, H, W))."""
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)

    def losses(
        self, predictions: Tuple[torch.Tensor, torch.Tensor], proposals: List[Instances]
    ) -> Dict[str, torch.Tensor]:
        """``loss_cls``, the cross-entropy over the sampled ``proposals`` (with ``gt_classes``,
        ``proposal_boxes`` and, where an image has ground truth, ``gt_boxes``), and
        ``loss_box_reg`` (see ``box_reg_loss``), each times its ``loss_weight``. Zero, still
        connected to ``predictions``, when there are no proposals."""
        scores, proposal_deltas = predictions
        gt_classes, proposal_boxes, gt_boxes = _concatenated_targets(proposals, proposal_deltas.device)
        report_classification_stats(scores, gt_classes, self._foreground(gt_classes))
        loss_cls = F.cross_entropy(scores, gt_classes, reduction="mean") if gt_classes.numel() else scores.sum() * 0.0
        losses = {
            "loss_cls": loss_cls,
            "loss_box_reg": self.box_reg_loss(proposal_boxes, gt_boxes, proposal_deltas, gt_classes),
        }
        return {name: value * self.loss_weight.get(name, 1.0) for name, value in losses.items()}

    def _foreground(self, gt_classes: torch.Tensor) -> torch.Tensor:
        """Which proposals are foreground: a class in [0, K), neither background (K) nor ignored (-1)."""
        return (gt_classes >= 0) & (gt_classes < self.num_classes)

    def box_reg_loss(
        self, proposal_boxes: torch.Tensor, gt_boxes: torch.Tensor, pred_deltas: torch.Tensor, gt_classes: torch.Tensor
    ) -> torch.Tensor:
        """The box regression loss of the foreground proposals (``gt_classes`` in [0, K)), each
        through its ground-truth class's deltas (or the shared ones), divided by the number of
        all proposals R, so that each foreground RoI weighs the same whatever the batch holds.
        Boxes (R, 4), ``pred_deltas`` (R, K*4) or (R, 4)."""
        box_dim = proposal_boxes.shape[1]
        fg = self._foreground(gt_classes)
        if pred_deltas.shape[1] == box_dim:  # class-agnostic regression
            fg_deltas = pred_deltas[fg]
        else:
            fg_deltas = pred_deltas.view(-1, self.num_classes, box_dim)[fg, gt_classes[fg]]
        loss = box_regression_loss(
            proposal_boxes[fg],
            self.box2box_transform,
            fg_deltas,
            gt_boxes[fg],
            loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
        )
        return loss / max(gt_classes.numel(), 1.0)

    def predict_boxes(
        self, predictions: Tuple[Optional[torch.Tensor], torch.Tensor], proposals: List[Instances]
    ) -> List[torch.Tensor]:
        """Per image, decoded boxes (R_i, K*4) (or (R_i, 4) if agnostic)."""
        if not proposals:
            return []
        _, proposal_deltas = predictions
        boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        predicted = self.box2box_transform.apply_deltas(proposal_deltas, boxes)
        return list(predicted.split([len(p) for p in proposals]))

    def predict_probs(
        self, predictions: Tuple[torch.Tensor, Optional[torch.Tensor]], proposals: List[Instances]
    ) -> List[torch.Tensor]:
        """Per image, softmax class probabilities (R_i, K+1)."""
        scores, _ = predictions
        return list(F.softmax(scores, dim=-1).split([len(p) for p in proposals]))

    def inference(
        self, predictions: Tuple[torch.Tensor, torch.Tensor], proposals: List[Instances]
    ) -> Tuple[List[Instances], List[torch.Tensor]]:
        """Final detections per image and the index of each one's RoI (see ``fast_rcnn_inference``)."""
        return fast_rcnn_inference(
            self.predict_boxes(predictions, proposals),
            self.predict_probs(predictions, proposals),
            [p.image_size for p in proposals],
            self.test_score_thresh,
            self.test_nms_thresh,
            self.test_topk_per_image,
        )


__all__ = ["FastRCNNOutputLayers", "fast_rcnn_inference", "fast_rcnn_inference_single_image"]
