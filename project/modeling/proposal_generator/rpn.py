"""The Region Proposal Network of Faster R-CNN, run on every level of a feature pyramid.

Shapes: N images, L levels, A anchors per location, H_l x W_l the size of level l, and
R = sum_l H_l * W_l * A anchors per image, ordered level by level, then row-major by location,
then by cell anchor.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...layers import Conv2d, ShapeSpec
from ...structures import Boxes, ImageList, Instances, pairwise_iou
from ...utils.events import current_event_storage
from ..anchor_generator import build_anchor_generator
from ..box_regression import Box2BoxTransform, box_regression_loss
from ..matcher import Matcher
from ..registry import PROPOSAL_GENERATOR_REGISTRY, RPN_HEAD_REGISTRY
from ..sampling import subsample_labels
from .proposal_utils import find_top_rpn_proposals

BOX_REG_LOSS_TYPES = ("smooth_l1", "giou")


def build_rpn_head(cfg, input_shape: List[ShapeSpec]) -> nn.Module:
    """The RPN head named by ``cfg.MODEL.RPN.HEAD_NAME``, for these feature maps."""
    return RPN_HEAD_REGISTRY.get(cfg.MODEL.RPN.HEAD_NAME)(cfg, input_shape)


def flatten_anchor_logits(logits: torch.Tensor) -> torch.Tensor:
    """(N, A, H, W) objectness logits of one level -> (N, H * W * A), in anchor order."""
    return logits.permute(0, 2, 3, 1).reshape(logits.shape[0], -1)


def flatten_anchor_deltas(deltas: torch.Tensor) -> torch.Tensor:
    """(N, A * 4, H, W) box deltas of one level, each anchor's 4 adjacent -> (N, H * W * A, 4),
    in anchor order."""
    return deltas.permute(0, 2, 3, 1).reshape(deltas.shape[0], -1, 4)


def _hidden_conv(in_channels: int, out_channels: int) -> Conv2d:
    return Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, activation=F.relu)


@RPN_HEAD_REGISTRY.register()
class StandardRPNHead(nn.Module):
    """Shared over levels: 3x3 conv(s) with ReLU, then a 1x1 conv for the A objectness logits and
    a 1x1 conv for the A x 4 box deltas of each location.

    ``cfg.MODEL.RPN.CONV_DIMS`` lists the output channels of the hidden convs (-1: keep the
    input's). A single hidden conv is the module ``conv``; several are ``conv.conv0``,
    ``conv.conv1``, ... (Detectron2's checkpoint keys).
    """

    def __init__(self, cfg, input_shape: List[ShapeSpec]):
        super().__init__()
        channels = {shape.channels for shape in input_shape}
        if len(channels) != 1 or None in channels:
            raise ValueError(
                f"StandardRPNHead is shared over levels, so every input feature map needs the same "
                f"known channel count; got {[shape.channels for shape in input_shape]}"
            )
        in_channels = channels.pop()
        num_anchors = set(build_anchor_generator(cfg, input_shape).num_anchors)
        if len(num_anchors) != 1:
            raise ValueError(
                "StandardRPNHead needs the same number of anchors per location on every level; "
                f"cfg.MODEL.ANCHOR_GENERATOR gives {sorted(num_anchors)}"
            )
        num_anchors = num_anchors.pop()
        conv_dims = list(cfg.MODEL.RPN.CONV_DIMS)
        if not conv_dims or any(d != -1 and d <= 0 for d in conv_dims):
            raise ValueError(
                f"cfg.MODEL.RPN.CONV_DIMS must be a non-empty list of positive channel counts or -1 "
                f"(keep the input's), got {conv_dims}"
            )

        hidden_channels = [in_channels]
        for dim in conv_dims:
            hidden_channels.append(hidden_channels[-1] if dim == -1 else dim)
        hidden = [_hidden_conv(c_in, c_out) for c_in, c_out in pairwise(hidden_channels)]
        if len(hidden) == 1:
            self.conv = hidden[0]
        else:
            self.conv = nn.Sequential()
            for index, conv in enumerate(hidden):
                self.conv.add_module(f"conv{index}", conv)
        self.objectness_logits = nn.Conv2d(hidden_channels[-1], num_anchors, kernel_size=1)
        self.anchor_deltas = nn.Conv2d(hidden_channels[-1], num_anchors * 4, kernel_size=1)

        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    def forward(self, features: List[torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Per level (N, C, H_l, W_l): objectness logits (N, A, H_l, W_l) and box deltas
        (N, A * 4, H_l, W_l), the 4 deltas of an anchor adjacent."""
        hidden = [self.conv(x) for x in features]
        return [self.objectness_logits(h) for h in hidden], [self.anchor_deltas(h) for h in hidden]


@PROPOSAL_GENERATOR_REGISTRY.register()
class RPN(nn.Module):
    """Scores and regresses anchors on ``cfg.MODEL.RPN.IN_FEATURES`` into object proposals, and
    in training computes the losses ``loss_rpn_cls`` and ``loss_rpn_loc``.

    Anchors are labelled by IoU with ground truth (``IOU_THRESHOLDS`` / ``IOU_LABELS``, each gt's
    best anchors foreground too), then ``BATCH_SIZE_PER_IMAGE`` of them per image are sampled
    with at most ``POSITIVE_FRACTION`` foreground. Both losses are sums over the sampled anchors
    (foreground ones for ``loss_rpn_loc``) divided by ``BATCH_SIZE_PER_IMAGE * N``, then scaled
    by ``LOSS_WEIGHT`` (and ``loss_rpn_loc`` also by ``BBOX_REG_LOSS_WEIGHT``).
    """

    def __init__(self, cfg, input_shape: Dict[str, ShapeSpec]):
        super().__init__()
        rpn_cfg = cfg.MODEL.RPN
        self.in_features: List[str] = list(rpn_cfg.IN_FEATURES)
        missing = [name for name in self.in_features if name not in input_shape]
        if missing:
            raise ValueError(
                f"cfg.MODEL.RPN.IN_FEATURES names {missing}, which the backbone does not output "
                f"(it outputs {sorted(input_shape)})"
            )
        if rpn_cfg.BBOX_REG_LOSS_TYPE not in BOX_REG_LOSS_TYPES:
            raise ValueError(
                f"cfg.MODEL.RPN.BBOX_REG_LOSS_TYPE must be one of {BOX_REG_LOSS_TYPES}, "
                f"got {rpn_cfg.BBOX_REG_LOSS_TYPE!r}"
            )
        level_shapes = [input_shape[name] for name in self.in_features]
        self.rpn_head = build_rpn_head(cfg, level_shapes)
        self.anchor_generator = build_anchor_generator(cfg, level_shapes)
        self.anchor_matcher = Matcher(
            list(rpn_cfg.IOU_THRESHOLDS), list(rpn_cfg.IOU_LABELS), allow_low_quality_matches=True
        )
        self.box2box_transform = Box2BoxTransform(weights=list(rpn_cfg.BBOX_REG_WEIGHTS))
        self.batch_size_per_image: int = rpn_cfg.BATCH_SIZE_PER_IMAGE
        self.positive_fraction: float = rpn_cfg.POSITIVE_FRACTION
        # (training, inference) pairs: proposals kept per level before NMS, per image after it.
        self.pre_nms_topk = (rpn_cfg.PRE_NMS_TOPK_TRAIN, rpn_cfg.PRE_NMS_TOPK_TEST)
        self.post_nms_topk = (rpn_cfg.POST_NMS_TOPK_TRAIN, rpn_cfg.POST_NMS_TOPK_TEST)
        self.nms_thresh: float = rpn_cfg.NMS_THRESH
        self.min_box_size = float(cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE)
        self.anchor_boundary_thresh: int = rpn_cfg.BOUNDARY_THRESH
        self.loss_weight = {
            "loss_rpn_cls": rpn_cfg.LOSS_WEIGHT,
            "loss_rpn_loc": rpn_cfg.BBOX_REG_LOSS_WEIGHT * rpn_cfg.LOSS_WEIGHT,
        }
        self.box_reg_loss_type: str = rpn_cfg.BBOX_REG_LOSS_TYPE
        self.smooth_l1_beta: float = rpn_cfg.SMOOTH_L1_BETA

    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        gt_instances: Optional[List[Instances]] = None,
    ) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """Proposals for the N images (``proposal_boxes`` and ``objectness_logits``, best first,
        without gradient) and, in training, the losses (empty dict in eval).

        ``features`` maps names to (N, C, H_l, W_l) maps; ``gt_instances`` (training only) holds
        each image's ``gt_boxes``.
        """
        level_features = [features[name] for name in self.in_features]
        anchors = self.anchor_generator(level_features)
        level_logits, level_deltas = self.rpn_head(level_features)
        logits = [flatten_anchor_logits(x) for x in level_logits]
        deltas = [flatten_anchor_deltas(x) for x in level_deltas]

        losses: Dict[str, torch.Tensor] = {}
        if self.training:
            if gt_instances is None:
                raise ValueError("RPN needs gt_instances in training mode")
            gt_labels, matched_gt_boxes = self.label_and_sample_anchors(anchors, gt_instances)
            losses = self.losses(anchors, logits, gt_labels, deltas, matched_gt_boxes)
        proposals = self.predict_proposals(anchors, logits, deltas, images.image_sizes)
        return proposals, losses

    @torch.no_grad()
    def label_and_sample_anchors(
        self, anchors: List[Boxes], gt_instances: List[Instances]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per image and anchor, the sampled label (N, R) int8 (1 foreground, 0 background,
        -1 not sampled) and the matched gt box (N, R, 4) (meaningful for foreground only)."""
        all_anchors = Boxes.cat(anchors)
        labels, matched_boxes = [], []
        for instances in gt_instances:
            gt_boxes = instances.gt_boxes
            matched_idxs, labels_i = self.anchor_matcher(pairwise_iou(gt_boxes, all_anchors))
            labels_i = labels_i.to(device=gt_boxes.device)
            if self.anchor_boundary_thresh >= 0:
                inside = all_anchors.inside_box(instances.image_size, self.anchor_boundary_thresh)
                labels_i[~inside] = -1
            labels.append(self._subsample(labels_i))
            if len(gt_boxes) == 0:
                matched_boxes.append(torch.zeros_like(all_anchors.tensor))
            else:
                matched_boxes.append(gt_boxes.tensor[matched_idxs])
        return torch.stack(labels), torch.stack(matched_boxes)

    def _subsample(self, labels: torch.Tensor) -> torch.Tensor:
        """Keep a random ``batch_size_per_image`` sample of the labelled anchors; -1 elsewhere."""
        fg_idx, bg_idx = subsample_labels(labels, self.batch_size_per_image, self.positive_fraction, 0)
        sampled = torch.full_like(labels, -1)
        sampled[fg_idx] = 1
        sampled[bg_idx] = 0
        return sampled

    def losses(
        self,
        anchors: List[Boxes],
        pred_objectness_logits: List[torch.Tensor],
        gt_labels: torch.Tensor,
        pred_anchor_deltas: List[torch.Tensor],
        matched_gt_boxes: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        """``loss_rpn_cls`` and ``loss_rpn_loc`` from per-level predictions (N, R_l) and
        (N, R_l, 4), and the output of ``label_and_sample_anchors``."""
        normalizer = self.batch_size_per_image * gt_labels.shape[0]
        foreground = gt_labels == 1
        storage = current_event_storage()
        if storage is not None:  # anchors sampled per image
            storage.put_scalars(
                **{
                    "rpn/num_pos_anchors": foreground.sum() / gt_labels.shape[0],
                    "rpn/num_neg_anchors": (gt_labels == 0).sum() / gt_labels.shape[0],
                }
            )
        loc_loss = box_regression_loss(
            [a.tensor for a in anchors],
            self.box2box_transform,
            torch.cat(pred_anchor_deltas, dim=1),
            matched_gt_boxes,
            foreground,
            loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
        )
        sampled = gt_labels >= 0
        cls_loss = F.binary_cross_entropy_with_logits(
            torch.cat(pred_objectness_logits, dim=1)[sampled],
            gt_labels[sampled].to(torch.float32),
            reduction="sum",
        )
        return {
            "loss_rpn_cls": cls_loss / normalizer * self.loss_weight["loss_rpn_cls"],
            "loss_rpn_loc": loc_loss / normalizer * self.loss_weight["loss_rpn_loc"],
        }

    @torch.no_grad()
    def predict_proposals(
        self,
        anchors: List[Boxes],
        pred_objectness_logits: List[torch.Tensor],
        pred_anchor_deltas: List[torch.Tensor],
        image_sizes: List[Tuple[int, int]],
    ) -> List[Instances]:
        """Decode every anchor's deltas and pick each image's proposals (see
        ``find_top_rpn_proposals``). Proposals are constants for the ROI heads: no gradient."""
        mode = 0 if self.training else 1
        return find_top_rpn_proposals(
            self._decode_proposals(anchors, pred_anchor_deltas),
            pred_objectness_logits,
            image_sizes,
            self.nms_thresh,
            self.pre_nms_topk[mode],
            self.post_nms_topk[mode],
            self.min_box_size,
            self.training,
        )

    def _decode_proposals(self, anchors: List[Boxes], pred_anchor_deltas: List[torch.Tensor]) -> List[torch.Tensor]:
        """Per level, the boxes (N, R_l, 4) the deltas (N, R_l, 4) make of the anchors (R_l, 4)."""
        return [self._decode_level(a.tensor, d) for a, d in zip(anchors, pred_anchor_deltas)]

    def _decode_level(self, anchors: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        # The transform decodes (M, 4) rows: every image's deltas against its own copy of the anchors.
        num_images = deltas.shape[0]
        boxes = self.box2box_transform.apply_deltas(deltas.flatten(0, 1), anchors.repeat(num_images, 1))
        return boxes.unflatten(0, (num_images, -1))
