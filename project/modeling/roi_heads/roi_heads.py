"""``StandardROIHeads``: per-RoI box classification/regression and mask prediction on FPN features."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ...layers import ShapeSpec
from ...structures import ImageList, Instances, pairwise_iou
from ...utils.events import current_event_storage
from ..matcher import Matcher
from ..poolers import ROIPooler
from ..registry import ROI_HEADS_REGISTRY
from ..sampling import subsample_labels
from .box_head import build_box_head
from .fast_rcnn import FastRCNNOutputLayers
from .mask_head import build_mask_head


def select_foreground_proposals(proposals: List[Instances], bg_label: int) -> List[Instances]:
    """Per image, the proposals whose ``gt_classes`` is a real class (not -1, not background)."""
    return [p[(p.gt_classes != -1) & (p.gt_classes != bg_label)] for p in proposals]


@ROI_HEADS_REGISTRY.register()
class StandardROIHeads(nn.Module):
    """Box head + box predictor (``box_head``, ``box_predictor``) and, with MASK_ON, a mask head
    (``mask_head``), each pooling its own RoI features from ``ROI_HEADS.IN_FEATURES``.

    Training samples ``BATCH_SIZE_PER_IMAGE`` proposals per image (ground-truth boxes appended)
    and returns losses; inference returns detections with masks, in the resized-image frame.
    """

    def __init__(self, cfg, input_shape: Dict[str, ShapeSpec]):
        super().__init__()
        heads = cfg.MODEL.ROI_HEADS
        self.in_features = list(heads.IN_FEATURES)
        missing = [f for f in self.in_features if f not in input_shape]
        if missing:
            raise ValueError(f"ROI_HEADS.IN_FEATURES {missing} are not backbone outputs {sorted(input_shape)}")
        self.num_classes = heads.NUM_CLASSES
        self.batch_size_per_image = heads.BATCH_SIZE_PER_IMAGE
        self.positive_fraction = heads.POSITIVE_FRACTION
        self.proposal_append_gt = heads.PROPOSAL_APPEND_GT
        self.proposal_matcher = Matcher(heads.IOU_THRESHOLDS, heads.IOU_LABELS, allow_low_quality_matches=False)
        scales = [1.0 / input_shape[f].stride for f in self.in_features]
        channels = {input_shape[f].channels for f in self.in_features}
        if len(channels) != 1:
            raise ValueError(f"ROI heads need equal channels on {self.in_features}, got {channels}")
        in_channels = channels.pop()

        box = cfg.MODEL.ROI_BOX_HEAD
        self.box_pooler = ROIPooler(box.POOLER_RESOLUTION, scales, box.POOLER_SAMPLING_RATIO, box.POOLER_TYPE)
        self.box_head = build_box_head(
            cfg, ShapeSpec(channels=in_channels, height=box.POOLER_RESOLUTION, width=box.POOLER_RESOLUTION)
        )
        self.box_predictor = FastRCNNOutputLayers(cfg, self.box_head.output_shape)

        self.mask_on = cfg.MODEL.MASK_ON
        if self.mask_on:
            mask = cfg.MODEL.ROI_MASK_HEAD
            self.mask_pooler = ROIPooler(mask.POOLER_RESOLUTION, scales, mask.POOLER_SAMPLING_RATIO, mask.POOLER_TYPE)
            self.mask_head = build_mask_head(
                cfg, ShapeSpec(channels=in_channels, height=mask.POOLER_RESOLUTION, width=mask.POOLER_RESOLUTION)
            )

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals: List[Instances], targets: List[Instances]) -> List[Instances]:
        """Match proposals to ground truth and sample a balanced set per image.

        Each returned Instances has ``proposal_boxes``, ``gt_classes`` (``num_classes`` for
        background) and, for every ``gt_*`` field of the targets, that field of its matched box.
        """
        sampled, num_fg, num_bg = [], 0, 0
        for props, gts in zip(proposals, targets):
            if self.proposal_append_gt:
                gt_as_proposals = Instances(props.image_size)
                gt_as_proposals.proposal_boxes = gts.gt_boxes
                gt_as_proposals.objectness_logits = torch.full((len(gts),), 1e10, device=gts.gt_boxes.device)
                props = Instances.cat([props, gt_as_proposals])
            has_gt = len(gts) > 0
            iou = pairwise_iou(gts.gt_boxes, props.proposal_boxes)
            matched_idxs, matched_labels = self.proposal_matcher(iou)
            if has_gt:
                gt_classes = gts.gt_classes[matched_idxs]
                gt_classes[matched_labels == 0] = self.num_classes
                gt_classes[matched_labels == -1] = -1
            else:
                gt_classes = torch.full_like(matched_idxs, self.num_classes)
            fg_idx, bg_idx = subsample_labels(
                gt_classes, self.batch_size_per_image, self.positive_fraction, self.num_classes
            )
            keep = torch.cat([fg_idx, bg_idx])
            num_fg, num_bg = num_fg + fg_idx.numel(), num_bg + bg_idx.numel()
            props = props[keep]
            props.gt_classes = gt_classes[keep]
            if has_gt:
                matched = matched_idxs[keep]
                for name, value in gts.get_fields().items():
                    if name.startswith("gt_") and not props.has(name):
                        props.set(name, value[matched])
            sampled.append(props)
        storage = current_event_storage()
        if storage is not None and sampled:
            storage.put_scalars(
                **{
                    "roi_head/num_fg_samples": num_fg / len(sampled),
                    "roi_head/num_bg_samples": num_bg / len(sampled),
                }
            )
        return sampled

    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
    ) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """Training: ``([], losses)``; inference: ``(detections per image, {})``."""
        del images
        features = self._pooling_features(features)
        if self.training:
            if targets is None:
                raise ValueError("StandardROIHeads needs targets (gt instances) in training")
            proposals = self.label_and_sample_proposals(proposals, targets)
            losses = self._forward_box(features, proposals)
            losses.update(self._forward_mask(features, proposals))
            return [], losses
        detections = self._forward_box(features, proposals)
        return self.forward_with_given_boxes(features, detections), {}

    def forward_with_given_boxes(
        self, features: Dict[str, torch.Tensor], instances: List[Instances]
    ) -> List[Instances]:
        """Add masks (and any other per-instance predictions) to instances that already have
        ``pred_boxes`` and ``pred_classes``. Inference only."""
        if self.training:
            raise RuntimeError("forward_with_given_boxes is for inference")
        return self._forward_mask(self._pooling_features(features), instances)

    def _pooling_features(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The pooled levels as contiguous NCHW maps: RoIAlign would otherwise convert a
        channels-last map on every call, and its CPU kernel is far slower on that layout."""
        return {f: features[f].contiguous() for f in self.in_features}

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        x = self.box_pooler([features[f] for f in self.in_features], [p.proposal_boxes for p in proposals])
        predictions = self.box_predictor(self.box_head(x))
        if self.training:
            return self.box_predictor.losses(predictions, proposals)
        return self.box_predictor.inference(predictions, proposals)

    def _forward_mask(self, features: Dict[str, torch.Tensor], instances: List[Instances]):
        if not self.mask_on:
            return {} if self.training else instances
        if self.training:
            instances = select_foreground_proposals(instances, self.num_classes)
            boxes = [i.proposal_boxes for i in instances]
        else:
            boxes = [i.pred_boxes for i in instances]
        x = self.mask_pooler([features[f] for f in self.in_features], boxes)
        return self.mask_head(x, instances)


def build_roi_heads(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """The ROI heads named by ``MODEL.ROI_HEADS.NAME``."""
    return ROI_HEADS_REGISTRY.get(cfg.MODEL.ROI_HEADS.NAME)(cfg, input_shape)


__all__ = ["StandardROIHeads", "build_roi_heads", "select_foreground_proposals"]
