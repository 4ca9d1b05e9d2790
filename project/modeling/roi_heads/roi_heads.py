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
from ..proposal_generator.proposal_utils import add_ground_truth_to_proposals
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
        """Per image, a balanced sample of proposals to train the heads on.

        The ground-truth boxes join the proposals (``PROPOSAL_APPEND_GT``); each proposal is
        matched to ground truth and labelled (``_label_proposals``); at most
        ``BATCH_SIZE_PER_IMAGE`` are sampled, a ``POSITIVE_FRACTION`` of them foreground at most.
        Each returned Instances has ``proposal_boxes``, ``gt_classes`` (``num_classes`` for
        background) and, for each ``gt_*`` field of the targets, that field of the matched box.
        """
        if self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(targets, proposals)
        sampled = [self._sample_image(p, t) for p, t in zip(proposals, targets)]
        self._report_sampling(sampled)
        return sampled

    def _label_proposals(self, proposals: Instances, targets: Instances) -> Tuple[torch.Tensor, torch.Tensor]:
        """For one image's P proposals: the index of the matched ground truth (P,) and the
        training class (P,): the matched box's class, ``num_classes`` (background) when the IoU
        is below the foreground threshold, or -1 (ignored) between the thresholds."""
        matched_idxs, match_labels = self.proposal_matcher(pairwise_iou(targets.gt_boxes, proposals.proposal_boxes))
        if len(targets) == 0:
            return matched_idxs, torch.full_like(matched_idxs, self.num_classes)
        classes = targets.gt_classes[matched_idxs]
        classes[match_labels == 0] = self.num_classes
        classes[match_labels == -1] = -1
        return matched_idxs, classes

    def _sample_image(self, proposals: Instances, targets: Instances) -> Instances:
        """One image's sampled proposals with their training targets (see
        ``label_and_sample_proposals``): foreground first, then background."""
        matched_idxs, classes = self._label_proposals(proposals, targets)
        foreground, background = subsample_labels(
            classes, self.batch_size_per_image, self.positive_fraction, self.num_classes
        )
        keep = torch.cat([foreground, background])
        sampled = proposals[keep]
        sampled.gt_classes = classes[keep]
        if len(targets):
            matched = matched_idxs[keep]
            for name, value in targets.get_fields().items():
                if name.startswith("gt_") and not sampled.has(name):
                    sampled.set(name, value[matched])
        return sampled

    def _report_sampling(self, sampled: List[Instances]) -> None:
        """Record the mean number of foreground and background samples per image, when
        training under an ``EventStorage``."""
        storage = current_event_storage()
        if storage is None or not sampled:
            return
        classes = torch.cat([s.gt_classes for s in sampled])
        num_background = int((classes == self.num_classes).sum())
        num_foreground = len(classes) - num_background
        storage.put_scalars(
            **{
                "roi_head/num_fg_samples": num_foreground / len(sampled),
                "roi_head/num_bg_samples": num_background / len(sampled),
            }
        )

    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
    ) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """Training: ``([], losses)``; inference: ``(detections per image, {})``."""
        del images
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
        return self._forward_mask(features, instances)

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
