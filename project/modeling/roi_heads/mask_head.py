"""Mask heads: per-RoI, per-class mask logits, their loss, and inference."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
from fvcore.nn import weight_init
from torch import nn
from torch.nn import functional as F

from ...config import configurable
from ...layers import ShapeSpec, cat, conv3x3_norm_relu
from ...layers.batch_norm import NormSpec
from ...structures import Instances
from ...utils.events import current_event_storage, storage_for_training_image
from ..registry import ROI_MASK_HEAD_REGISTRY

# The mask head's training picture (see visualize_mask_training): how many RoIs, and its name.
VIS_NUM_ROIS = 16
MASKS_IMAGE_NAME = "train/mask_head_predicted_left_target_right"


def mask_rcnn_loss(pred_mask_logits: torch.Tensor, instances: List[Instances], vis_period: int = 0) -> torch.Tensor:
    """Mean binary cross-entropy between the logits of each RoI's ground-truth class
    (R, K or 1, M, M) and its ground-truth mask cropped to the RoI and resized to M x M.
    ``instances`` are the foreground proposals with ``proposal_boxes``, ``gt_classes`` and
    ``gt_masks``. With ``vis_period > 0``, records a picture every ``vis_period`` iterations
    (see ``visualize_mask_training``)."""
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
    if vis_period > 0:
        visualize_mask_training(logits, gt_masks_t, vis_period)
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


def visualize_mask_training(logits: torch.Tensor, gt_masks: torch.Tensor, vis_period: int) -> None:
    """When a training picture is due (see ``storage_for_training_image``), record
    ``MASKS_IMAGE_NAME``: for the first ``VIS_NUM_ROIS`` foreground RoIs, the predicted mask
    probabilities beside the target, from the (R, M, M) logits and targets of the loss."""
    storage = storage_for_training_image(MASKS_IMAGE_NAME, vis_period)
    if storage is None:
        return
    from ...visualization.training_pictures import as_chw, mask_pairs_grid

    picture = mask_pairs_grid(logits[:VIS_NUM_ROIS].detach().sigmoid(), gt_masks[:VIS_NUM_ROIS])
    storage.put_image(MASKS_IMAGE_NAME, as_chw(picture))


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


class BaseMaskRCNNHead(nn.Module):
    """What every mask head shares: ``forward`` runs ``layers`` (the subclass's network, pooled
    features to (R, K or 1, M, M) logits), then the loss in training (``mask_rcnn_loss`` times
    ``loss_weight``) or the predicted masks in inference (``mask_rcnn_inference``).
    With ``vis_period > 0`` (from a config: ``VIS_PERIOD``), training records a picture of
    predicted and target masks every ``vis_period`` iterations (see ``visualize_mask_training``)."""

    @configurable
    def __init__(self, *, loss_weight: float = 1.0, vis_period: int = 0):
        super().__init__()
        self.loss_weight = loss_weight
        self.vis_period = vis_period

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> Dict[str, Any]:
        return {"vis_period": cfg.VIS_PERIOD}

    def layers(self, x: torch.Tensor) -> torch.Tensor:
        """Mask logits from pooled features; each subclass defines its own."""
        raise NotImplementedError(f"{type(self).__name__} must define layers(x), its network")

    def forward(self, x: torch.Tensor, instances: List[Instances]) -> Dict[str, torch.Tensor] | List[Instances]:
        """Training: ``{"loss_mask": ...}`` for the foreground proposals in ``instances``.
        Inference: ``instances`` with ``pred_masks`` (N, 1, M, M) probabilities set."""
        logits = self.layers(x)
        if self.training:
            return {"loss_mask": mask_rcnn_loss(logits, instances, self.vis_period) * self.loss_weight}
        mask_rcnn_inference(logits, instances)
        return instances


@ROI_MASK_HEAD_REGISTRY.register()
class MaskRCNNConvUpsampleHead(BaseMaskRCNNHead):
    """3x3 convolutions (``mask_fcn1``...), a 2x ``deconv`` and a 1x1 ``predictor`` with one
    channel per class (``num_classes``, 1 if class-agnostic). ``conv_dims`` are the output sizes
    of the convolutions and, last, of the deconvolution (at least that one); ``conv_norm`` is the
    convolutions' norm. Input (R, C, S, S); logits (R, num_classes, 2S, 2S).

    From a config: ``NUM_CONV`` convolutions and the deconvolution of ``CONV_DIM`` channels,
    ``NORM``, and ``CLS_AGNOSTIC_MASK`` of ``MODEL.ROI_MASK_HEAD``.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        num_classes: int,
        conv_dims: Sequence[int],
        conv_norm: NormSpec = "",
        loss_weight: float = 1.0,
        vis_period: int = 0,
    ):
        super().__init__(loss_weight=loss_weight, vis_period=vis_period)
        if not conv_dims:
            raise ValueError("MaskRCNNConvUpsampleHead needs conv_dims to hold at least the deconvolution's channels")
        channels = input_shape.channels
        self.conv_norm_relus = []
        for k, dim in enumerate(conv_dims[:-1], start=1):
            conv = conv3x3_norm_relu(channels, dim, conv_norm)
            self.add_module(f"mask_fcn{k}", conv)
            self.conv_norm_relus.append(conv)
            channels = dim
        self.deconv = nn.ConvTranspose2d(channels, conv_dims[-1], kernel_size=2, stride=2)
        self.predictor = nn.Conv2d(conv_dims[-1], num_classes, kernel_size=1)
        for layer in self.conv_norm_relus + [self.deconv]:
            weight_init.c2_msra_fill(layer)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.constant_(self.predictor.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> Dict[str, Any]:
        head = cfg.MODEL.ROI_MASK_HEAD
        return {
            **super().from_config(cfg, input_shape),
            "input_shape": input_shape,
            "num_classes": 1 if head.CLS_AGNOSTIC_MASK else cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "conv_dims": [head.CONV_DIM] * (head.NUM_CONV + 1),
            "conv_norm": head.NORM,
        }

    def layers(self, x: torch.Tensor) -> torch.Tensor:
        """Mask logits (R, K, 2S, 2S) from pooled features (R, C, S, S)."""
        for conv in self.conv_norm_relus:
            x = conv(x)
        return self.predictor(F.relu(self.deconv(x)))


def build_mask_head(cfg, input_shape: ShapeSpec) -> nn.Module:
    """The mask head named by ``MODEL.ROI_MASK_HEAD.NAME``, built as ``cls(cfg, input_shape)``."""
    return ROI_MASK_HEAD_REGISTRY.get(cfg.MODEL.ROI_MASK_HEAD.NAME)(cfg, input_shape)


__all__ = [
    "ROI_MASK_HEAD_REGISTRY",
    "BaseMaskRCNNHead",
    "MaskRCNNConvUpsampleHead",
    "build_mask_head",
    "mask_rcnn_inference",
    "mask_rcnn_loss",
]
