"""Mask heads: per-RoI, per-class mask logits, their loss, and inference."""

from __future__ import annotations

from typing import Dict, List

import torch
from fvcore.nn import weight_init
from torch import nn
from torch.nn import functional as F

from ...layers import ShapeSpec, cat, conv3x3_norm_relu
from ...structures import Instances
from ...utils.events import current_event_storage
from ..registry import ROI_MASK_HEAD_REGISTRY


def mask_rcnn_loss(pred_mask_logits: torch.Tensor, instances: List[Instances]) -> torch.Tensor:
    """Mean binary cross-entropy between the logits of each RoI's ground-truth class
    (R, K or 1, M, M) and its ground-truth mask cropped to the RoI and resized to M x M."""
    side = pred_mask_logits.size(2)
    class_agnostic = pred_mask_logits.size(1) == 1
    gt_classes, gt_masks = [], []
    for inst in instances:
        if len(inst) == 0:
            continue
        if not class_agnostic:
            gt_classes.append(inst.gt_classes.to(torch.int64))
        gt_masks.append(inst.gt_masks.crop_and_resize(inst.proposal_boxes.tensor, side).to(pred_mask_logits.device))
    if not gt_masks:
        return pred_mask_logits.sum() * 0
    gt_masks_t = cat(gt_masks, dim=0)
    rows = torch.arange(pred_mask_logits.size(0), device=pred_mask_logits.device)
    if class_agnostic:
        logits = pred_mask_logits[:, 0]
    else:
        logits = pred_mask_logits[rows, cat(gt_classes, dim=0)]
    report_mask_stats(logits, gt_masks_t)
    return F.binary_cross_entropy_with_logits(logits, gt_masks_t.to(logits.dtype), reduction="mean")


@torch.no_grad()
def report_mask_stats(logits: torch.Tensor, gt_masks: torch.Tensor) -> None:
    """Record, when training under an ``EventStorage``, the pixel ``accuracy`` of the (R, M, M)
    mask logits thresholded at 0 against the ground truth, and the ``false_positive`` and
    ``false_negative`` rates (over ground-truth background and foreground pixels)."""
    storage = current_event_storage()
    if storage is None:
        return
    predicted, target = logits > 0, gt_masks > 0.5
    num_positive = int(target.sum())
    storage.put_scalars(
        **{
            "mask_rcnn/accuracy": (predicted == target).float().mean(),
            "mask_rcnn/false_positive": (predicted & ~target).sum() / max(target.numel() - num_positive, 1),
            "mask_rcnn/false_negative": (~predicted & target).sum() / max(num_positive, 1),
        }
    )


def mask_rcnn_inference(pred_mask_logits: torch.Tensor, pred_instances: List[Instances]) -> None:
    """Set ``pred_masks`` (N, 1, M, M) probabilities on each image's instances, taken from the
    channel of each instance's predicted class."""
    if pred_mask_logits.size(1) == 1:
        probs = pred_mask_logits.sigmoid()
    else:
        classes = cat([i.pred_classes for i in pred_instances])
        rows = torch.arange(pred_mask_logits.size(0), device=classes.device)
        probs = pred_mask_logits[rows, classes][:, None].sigmoid()
    for p, instances in zip(probs.split([len(i) for i in pred_instances]), pred_instances):
        instances.pred_masks = p


@ROI_MASK_HEAD_REGISTRY.register()
class MaskRCNNConvUpsampleHead(nn.Module):
    """``NUM_CONV`` 3x3 convs (``mask_fcn1``...), a 2x ``deconv``, and a 1x1 ``predictor`` with
    one channel per class (or one if class-agnostic). Input (R, C, 14, 14); logits (R, K, 28, 28)."""

    def __init__(self, cfg, input_shape: ShapeSpec):
        super().__init__()
        head = cfg.MODEL.ROI_MASK_HEAD
        num_classes = 1 if head.CLS_AGNOSTIC_MASK else cfg.MODEL.ROI_HEADS.NUM_CLASSES
        self.loss_weight = 1.0
        channels = input_shape.channels
        self.conv_norm_relus = []
        for k in range(head.NUM_CONV):
            conv = conv3x3_norm_relu(channels, head.CONV_DIM, head.NORM)
            self.add_module(f"mask_fcn{k + 1}", conv)
            self.conv_norm_relus.append(conv)
            channels = head.CONV_DIM
        self.deconv = nn.ConvTranspose2d(channels, head.CONV_DIM, kernel_size=2, stride=2)
        self.predictor = nn.Conv2d(head.CONV_DIM, num_classes, kernel_size=1)
        for layer in self.conv_norm_relus + [self.deconv]:
            weight_init.c2_msra_fill(layer)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.constant_(self.predictor.bias, 0)

    def layers(self, x: torch.Tensor) -> torch.Tensor:
        """Mask logits (R, K, 2S, 2S) from pooled features (R, C, S, S)."""
        for conv in self.conv_norm_relus:
            x = conv(x)
        return self.predictor(F.relu(self.deconv(x)))

    def forward(self, x: torch.Tensor, instances: List[Instances]) -> Dict[str, torch.Tensor] | List[Instances]:
        """Training: ``{"loss_mask": ...}`` for the foreground proposals in ``instances``.
        Inference: ``instances`` with ``pred_masks`` (N, 1, M, M) probabilities set."""
        logits = self.layers(x)
        if self.training:
            return {"loss_mask": mask_rcnn_loss(logits, instances) * self.loss_weight}
        mask_rcnn_inference(logits, instances)
        return instances


def build_mask_head(cfg, input_shape: ShapeSpec) -> nn.Module:
    """The mask head named by ``MODEL.ROI_MASK_HEAD.NAME``."""
    return ROI_MASK_HEAD_REGISTRY.get(cfg.MODEL.ROI_MASK_HEAD.NAME)(cfg, input_shape)
