"""ROI heads: box and mask prediction on pooled RoI features. Detectron2's keypoint and
rotated-box heads import from here too, but refuse to be built (outside this project's scope)."""

from ..registry import ROI_BOX_HEAD_REGISTRY, ROI_HEADS_REGISTRY, ROI_MASK_HEAD_REGISTRY
from .box_head import FastRCNNConvFCHead, build_box_head
from .fast_rcnn import FastRCNNOutputLayers, fast_rcnn_inference, fast_rcnn_inference_single_image
from .keypoint_head import BaseKeypointRCNNHead, KRCNNConvDeconvUpsampleHead
from .mask_head import (
    BaseMaskRCNNHead,
    MaskRCNNConvUpsampleHead,
    build_mask_head,
    mask_rcnn_inference,
    mask_rcnn_loss,
)
from .roi_heads import ROIHeads, StandardROIHeads, build_roi_heads, select_foreground_proposals
from .rotated_fast_rcnn import RROIHeads

__all__ = [
    "ROI_BOX_HEAD_REGISTRY",
    "ROI_HEADS_REGISTRY",
    "ROI_MASK_HEAD_REGISTRY",
    "BaseKeypointRCNNHead",
    "BaseMaskRCNNHead",
    "FastRCNNConvFCHead",
    "FastRCNNOutputLayers",
    "KRCNNConvDeconvUpsampleHead",
    "MaskRCNNConvUpsampleHead",
    "ROIHeads",
    "RROIHeads",
    "StandardROIHeads",
    "build_box_head",
    "build_mask_head",
    "build_roi_heads",
    "fast_rcnn_inference",
    "fast_rcnn_inference_single_image",
    "mask_rcnn_inference",
    "mask_rcnn_loss",
    "select_foreground_proposals",
]
