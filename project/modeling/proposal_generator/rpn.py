"""The Region Proposal Network of Faster R-CNN, run on every level of a feature pyramid.

Shapes: N images, L levels, A anchors per location, H_l x W_l the size of level l, and
R = sum_l H_l * W_l * A anchors per image, ordered level by level, then row-major by location,
then by cell anchor.
"""

from __future__ import annotations

from collections import OrderedDict
from itertools import pairwise
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ...config import configurable
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
RPN_LOSS_NAMES = ("loss_rpn_cls", "loss_rpn_loc")


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


def _hidden_widths(in_channels: int, conv_dims: Sequence[int]) -> List[int]:
    """``in_channels`` followed by the output channels of each hidden conv (-1: keep the previous)."""
    conv_dims = list(conv_dims)
    if not conv_dims or any(d != -1 and d <= 0 for d in conv_dims):
        raise ValueError(
            "StandardRPNHead conv_dims (MODEL.RPN.CONV_DIMS in a config) must be a non-empty list of positive "
            f"channel counts or -1 (keep the input's), got {conv_dims}"
        )
    widths = [in_channels]
    for dim in conv_dims:
        widths.append(widths[-1] if dim == -1 else dim)
    return widths


def _the_one(values: Sequence, what: str) -> Any:
    """The single distinct value of ``values``, or a ValueError naming ``what`` differs."""
    distinct = set(values)
    if len(distinct) != 1 or None in distinct:
        raise ValueError(
            f"StandardRPNHead is shared over levels, so every level needs the same known {what}; got {list(values)}"
        )
    return distinct.pop()


@RPN_HEAD_REGISTRY.register()
class StandardRPNHead(nn.Module):
    """Shared over levels: 3x3 conv(s) with ReLU, then a 1x1 conv for the ``num_anchors``
    objectness logits and a 1x1 conv for the ``num_anchors * box_dim`` box deltas of each location.

    ``conv_dims`` lists the output channels of the hidden convs (-1: keep the input's). A single
    hidden conv is the module ``conv``; several are ``conv.conv0``, ``conv.conv1``, ...
    (Detectron2's checkpoint keys). From a config: ``MODEL.RPN.CONV_DIMS``, the channels shared by
    the ``input_shape`` list and the anchor count of the configured anchor generator.
    """

    @configurable
    def __init__(self, *, in_channels: int, num_anchors: int, box_dim: int = 4, conv_dims: Sequence[int] = (-1,)):
        super().__init__()
        widths = _hidden_widths(in_channels, conv_dims)
        hidden = [_hidden_conv(c_in, c_out) for c_in, c_out in pairwise(widths)]
        if len(hidden) == 1:
            self.conv = hidden[0]
        else:
            self.conv = nn.Sequential(OrderedDict((f"conv{index}", conv) for index, conv in enumerate(hidden)))
        self.objectness_logits = nn.Conv2d(widths[-1], num_anchors, kernel_size=1)
        self.anchor_deltas = nn.Conv2d(widths[-1], num_anchors * box_dim, kernel_size=1)

        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]) -> Dict[str, Any]:
        # Anchors hold no parameters, so building a generator here only to count them is free.
        anchors = build_anchor_generator(cfg, input_shape)
        return {
            "in_channels": _the_one([shape.channels for shape in input_shape], "input channel count"),
            "num_anchors": _the_one(anchors.num_anchors, "number of anchors per location (MODEL.ANCHOR_GENERATOR)"),
            "box_dim": anchors.box_dim,
            "conv_dims": list(cfg.MODEL.RPN.CONV_DIMS),
        }

    def forward(self, features: List[torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Per level (N, C, H_l, W_l): objectness logits (N, A, H_l, W_l) and box deltas
        (N, A * box_dim, H_l, W_l), the deltas of an anchor adjacent."""
        hidden = [self.conv(x) for x in features]
        return [self.objectness_logits(h) for h in hidden], [self.anchor_deltas(h) for h in hidden]


def _per_mode(train_and_test: Sequence[int]) -> Dict[bool, int]:
    """A (training, inference) pair keyed by ``module.training``."""
    train, test = train_and_test
    return {True: train, False: test}


def _rpn_loss_weights(loss_weight: Union[float, Mapping[str, float]]) -> Dict[str, float]:
    if isinstance(loss_weight, Mapping):
        return dict(loss_weight)
    return {name: loss_weight for name in RPN_LOSS_NAMES}


def _level_shapes(input_shape: Mapping[str, ShapeSpec], in_features: Sequence[str]) -> List[ShapeSpec]:
    missing = [name for name in in_features if name not in input_shape]
    if missing:
        raise ValueError(
            f"MODEL.RPN.IN_FEATURES names {missing}, which the backbone does not output "
            f"(it outputs {sorted(input_shape)})"
        )
    return [input_shape[name] for name in in_features]


@PROPOSAL_GENERATOR_REGISTRY.register()
class RPN(nn.Module):
    """Scores and regresses the anchors of ``in_features`` into object proposals, and in training
    computes the losses ``loss_rpn_cls`` and ``loss_rpn_loc``.

    ``head`` maps the feature maps to per-anchor logits and deltas, ``anchor_generator`` gives the
    anchors and ``box2box_transform`` decodes the deltas against them. In training,
    ``anchor_matcher`` labels anchors by IoU with ground truth (``anchor_boundary_thresh`` >= 0
    also ignores anchors reaching further outside the image), then ``batch_size_per_image`` of them
    per image are sampled with at most ``positive_fraction`` foreground. Both losses are sums over
    the sampled anchors (foreground ones for ``loss_rpn_loc``, ``box_reg_loss_type`` "smooth_l1"
    with ``smooth_l1_beta``, or "giou") divided by ``batch_size_per_image * N``, then multiplied
    by ``loss_weight`` (one number for both, or a dict by loss name; a missing name weighs 1).

    Proposals: per level the ``pre_nms_topk`` best, boxes with a side under ``min_box_size``
    dropped, NMS at ``nms_thresh`` within each level, then the ``post_nms_topk`` best per image;
    the two top-k settings are (training, inference) pairs, kept as dicts keyed by
    ``self.training``. From a config: ``MODEL.RPN`` and ``MODEL.PROPOSAL_GENERATOR.MIN_SIZE``.
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        head: nn.Module,
        anchor_generator: nn.Module,
        anchor_matcher: Matcher,
        box2box_transform: Box2BoxTransform,
        batch_size_per_image: int,
        positive_fraction: float,
        pre_nms_topk: Tuple[int, int],
        post_nms_topk: Tuple[int, int],
        nms_thresh: float = 0.7,
        min_box_size: float = 0.0,
        anchor_boundary_thresh: float = -1.0,
        loss_weight: Union[float, Dict[str, float]] = 1.0,
        box_reg_loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 0.0,
    ):
        super().__init__()
        if box_reg_loss_type not in BOX_REG_LOSS_TYPES:
            raise ValueError(
                f"RPN box_reg_loss_type (MODEL.RPN.BBOX_REG_LOSS_TYPE in a config) must be one of "
                f"{BOX_REG_LOSS_TYPES}, got {box_reg_loss_type!r}"
            )
        self.in_features: List[str] = list(in_features)
        self.rpn_head = head
        self.anchor_generator = anchor_generator
        # Labelling and sampling anchors in training.
        self.anchor_matcher = anchor_matcher
        self.anchor_boundary_thresh = anchor_boundary_thresh
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        # Losses.
        self.box2box_transform = box2box_transform
        self.box_reg_loss_type = box_reg_loss_type
        self.smooth_l1_beta = smooth_l1_beta
        self.loss_weight = _rpn_loss_weights(loss_weight)
        # Choosing proposals.
        self.pre_nms_topk = _per_mode(pre_nms_topk)
        self.post_nms_topk = _per_mode(post_nms_topk)
        self.nms_thresh = nms_thresh
        self.min_box_size = float(min_box_size)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> Dict[str, Any]:
        node = cfg.MODEL.RPN
        level_shapes = _level_shapes(input_shape, node.IN_FEATURES)
        head = build_rpn_head(cfg, level_shapes)  # first: its weights are drawn from the global RNG
        anchor_generator = build_anchor_generator(cfg, level_shapes)
        return {
            "in_features": list(node.IN_FEATURES),
            "head": head,
            "anchor_generator": anchor_generator,
            "anchor_matcher": Matcher(list(node.IOU_THRESHOLDS), list(node.IOU_LABELS), allow_low_quality_matches=True),
            "box2box_transform": Box2BoxTransform(weights=list(node.BBOX_REG_WEIGHTS)),
            "batch_size_per_image": node.BATCH_SIZE_PER_IMAGE,
            "positive_fraction": node.POSITIVE_FRACTION,
            "pre_nms_topk": (node.PRE_NMS_TOPK_TRAIN, node.PRE_NMS_TOPK_TEST),
            "post_nms_topk": (node.POST_NMS_TOPK_TRAIN, node.POST_NMS_TOPK_TEST),
            "nms_thresh": node.NMS_THRESH,
            "min_box_size": cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE,
            "anchor_boundary_thresh": node.BOUNDARY_THRESH,
            "loss_weight": {
                "loss_rpn_cls": node.LOSS_WEIGHT,
                "loss_rpn_loc": node.BBOX_REG_LOSS_WEIGHT * node.LOSS_WEIGHT,
            },
            "box_reg_loss_type": node.BBOX_REG_LOSS_TYPE,
            "smooth_l1_beta": node.SMOOTH_L1_BETA,
        }

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
        losses = {"loss_rpn_cls": cls_loss, "loss_rpn_loc": loc_loss}
        return {name: loss / normalizer * self.loss_weight.get(name, 1.0) for name, loss in losses.items()}

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
        return find_top_rpn_proposals(
            self._decode_proposals(anchors, pred_anchor_deltas),
            pred_objectness_logits,
            image_sizes,
            self.nms_thresh,
            self.pre_nms_topk[self.training],
            self.post_nms_topk[self.training],
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
