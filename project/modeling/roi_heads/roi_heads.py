"""ROI heads: per-RoI box classification/regression and mask prediction on pooled features.

``ROIHeads`` holds what every variant shares, matching proposals to ground truth and sampling
them for training; ``StandardROIHeads`` adds a box head and predictor and, optionally, a mask
head, each pooling its own RoI features.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ...config import configurable
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


def select_foreground_proposals(
    proposals: List[Instances], bg_label: int
) -> Tuple[List[Instances], List[torch.Tensor]]:
    """Per image, the proposals whose ``gt_classes`` is a real class (neither -1 nor
    ``bg_label``), and the (R_i,) bool mask that selects them."""
    masks = [(p.gt_classes != -1) & (p.gt_classes != bg_label) for p in proposals]
    return [p[m] for p, m in zip(proposals, masks)], masks


def _pooler_scales(in_features: Sequence[str], input_shape: Dict[str, ShapeSpec]) -> List[float]:
    """``1 / stride`` of each of ``in_features``, which must all be ``input_shape``'s features."""
    missing = [f for f in in_features if f not in input_shape]
    if missing:
        raise ValueError(f"ROI_HEADS.IN_FEATURES {missing} are not backbone outputs {sorted(input_shape)}")
    return [1.0 / input_shape[f].stride for f in in_features]


def _common_channels(in_features: Sequence[str], input_shape: Dict[str, ShapeSpec]) -> int:
    """The channel count that every one of ``in_features`` has (ROI heads pool them alike)."""
    channels = {input_shape[f].channels for f in in_features}
    if len(channels) != 1:
        raise ValueError(f"ROI heads need equal channels on {list(in_features)}, got {channels}")
    return channels.pop()


def _pooled_shape(channels: int, resolution: int) -> ShapeSpec:
    """The shape of one RoI's pooled features: ``channels`` x ``resolution`` x ``resolution``."""
    return ShapeSpec(channels=channels, height=resolution, width=resolution)


class ROIHeads(nn.Module):
    """The training-time proposal handling every ROI head variant shares; subclasses add the
    heads and ``forward``.

    ``label_and_sample_proposals`` matches proposals to ground truth with ``proposal_matcher``
    (ground-truth boxes joining the proposals if ``proposal_append_gt``), then samples at most
    ``batch_size_per_image`` per image, a ``positive_fraction`` of them foreground at most.
    ``num_classes`` is the number of foreground classes; background is labelled ``num_classes``.
    From a config: ``MODEL.ROI_HEADS``.
    """

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        batch_size_per_image: int,
        positive_fraction: float,
        proposal_matcher: Matcher,
        proposal_append_gt: bool = True,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.proposal_matcher = proposal_matcher
        self.proposal_append_gt = proposal_append_gt

    @classmethod
    def from_config(cls, cfg) -> Dict[str, Any]:
        heads = cfg.MODEL.ROI_HEADS
        return {
            "num_classes": heads.NUM_CLASSES,
            "batch_size_per_image": heads.BATCH_SIZE_PER_IMAGE,
            "positive_fraction": heads.POSITIVE_FRACTION,
            "proposal_matcher": Matcher(heads.IOU_THRESHOLDS, heads.IOU_LABELS, allow_low_quality_matches=False),
            "proposal_append_gt": heads.PROPOSAL_APPEND_GT,
        }

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals: List[Instances], targets: List[Instances]) -> List[Instances]:
        """Per image, a balanced sample of proposals to train the heads on.

        The ground-truth boxes join the proposals (if ``proposal_append_gt``); each proposal is
        matched to ground truth and labelled (``_label_proposals``); at most
        ``batch_size_per_image`` are sampled, a ``positive_fraction`` of them foreground at most.
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
        """Training: (sampled proposals, losses); inference: (detections per image, {})."""
        raise NotImplementedError(f"{type(self).__name__} must define forward")


@ROI_HEADS_REGISTRY.register()
class StandardROIHeads(ROIHeads):
    """A box head and box predictor and, optionally, a mask head, each on its own RoI features.

    ``box_pooler`` pools ``box_in_features`` for each proposal, ``box_head`` turns that into one
    vector per RoI and ``box_predictor`` (a ``FastRCNNOutputLayers``) scores and refines it. With
    ``mask_in_features``, ``mask_head`` predicts masks on what ``mask_pooler`` pools from those
    features (or, with no ``mask_pooler``, on the dict of those feature maps itself). The other
    keyword arguments are ``ROIHeads``'s.

    Training (with targets): (sampled proposals, losses). Inference: (detections with masks per
    image, in the frame of the (resized) input images, {}).

    From a config: the box branch from ``MODEL.ROI_BOX_HEAD``, the mask branch from
    ``MODEL.ROI_MASK_HEAD`` when ``MODEL.MASK_ON``, both on ``MODEL.ROI_HEADS.IN_FEATURES`` of
    ``input_shape`` (the backbone's output shapes).
    """

    @configurable
    def __init__(
        self,
        *,
        box_in_features: List[str],
        box_pooler: ROIPooler,
        box_head: nn.Module,
        box_predictor: nn.Module,
        mask_in_features: Optional[List[str]] = None,
        mask_pooler: Optional[ROIPooler] = None,
        mask_head: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.in_features = self.box_in_features = list(box_in_features)
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.mask_on = mask_in_features is not None
        if self.mask_on:
            self.mask_in_features = list(mask_in_features)
            self.mask_pooler = mask_pooler
            self.mask_head = mask_head

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> Dict[str, Any]:
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        scales = _pooler_scales(in_features, input_shape)
        channels = _common_channels(in_features, input_shape)
        arguments = super().from_config(cfg)
        arguments.update(cls._box_branch(cfg, in_features, scales, channels))
        if cfg.MODEL.MASK_ON:
            arguments.update(cls._mask_branch(cfg, in_features, scales, channels))
        return arguments

    @classmethod
    def _box_branch(cls, cfg, in_features: List[str], scales: List[float], channels: int) -> Dict[str, Any]:
        """The box pooler, head and predictor the config describes (built in that order)."""
        box = cfg.MODEL.ROI_BOX_HEAD
        pooler = ROIPooler(box.POOLER_RESOLUTION, scales, box.POOLER_SAMPLING_RATIO, box.POOLER_TYPE)
        head = build_box_head(cfg, _pooled_shape(channels, box.POOLER_RESOLUTION))
        predictor = FastRCNNOutputLayers(cfg, head.output_shape)
        return {"box_in_features": in_features, "box_pooler": pooler, "box_head": head, "box_predictor": predictor}

    @classmethod
    def _mask_branch(cls, cfg, in_features: List[str], scales: List[float], channels: int) -> Dict[str, Any]:
        """The mask pooler and head the config describes (built in that order)."""
        mask = cfg.MODEL.ROI_MASK_HEAD
        pooler = ROIPooler(mask.POOLER_RESOLUTION, scales, mask.POOLER_SAMPLING_RATIO, mask.POOLER_TYPE)
        head = build_mask_head(cfg, _pooled_shape(channels, mask.POOLER_RESOLUTION))
        return {"mask_in_features": in_features, "mask_pooler": pooler, "mask_head": head}

    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
    ) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """Training: ``(sampled proposals, losses)``; inference: ``(detections per image, {})``."""
        del images
        if self.training:
            if targets is None:
                raise ValueError("StandardROIHeads needs targets (gt instances) in training")
            proposals = self.label_and_sample_proposals(proposals, targets)
            losses = self._forward_box(features, proposals)
            losses.update(self._forward_mask(features, proposals))
            return proposals, losses
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
        x = self.box_pooler([features[f] for f in self.box_in_features], [p.proposal_boxes for p in proposals])
        predictions = self.box_predictor(self.box_head(x))
        if self.training:
            return self.box_predictor.losses(predictions, proposals)
        detections, _ = self.box_predictor.inference(predictions, proposals)
        return detections

    def _forward_mask(self, features: Dict[str, torch.Tensor], instances: List[Instances]):
        if not self.mask_on:
            return {} if self.training else instances
        if self.training:
            instances, _ = select_foreground_proposals(instances, self.num_classes)
        if self.mask_pooler is None:
            return self.mask_head({f: features[f] for f in self.mask_in_features}, instances)
        boxes = [i.proposal_boxes if self.training else i.pred_boxes for i in instances]
        x = self.mask_pooler([features[f] for f in self.mask_in_features], boxes)
        return self.mask_head(x, instances)


def build_roi_heads(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """The ROI heads named by ``MODEL.ROI_HEADS.NAME``, built as ``cls(cfg, input_shape)``."""
    return ROI_HEADS_REGISTRY.get(cfg.MODEL.ROI_HEADS.NAME)(cfg, input_shape)


__all__ = ["ROI_HEADS_REGISTRY", "ROIHeads", "StandardROIHeads", "build_roi_heads", "select_foreground_proposals"]
