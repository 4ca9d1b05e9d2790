"""ROI heads: box and mask prediction on pooled RoI features."""

from .box_head import FastRCNNConvFCHead, build_box_head
from .fast_rcnn import FastRCNNOutputLayers, fast_rcnn_inference_single_image
from .mask_head import MaskRCNNConvUpsampleHead, build_mask_head, mask_rcnn_inference, mask_rcnn_loss
from .roi_heads import StandardROIHeads, build_roi_heads, select_foreground_proposals

__all__ = [
    "FastRCNNConvFCHead",
    "FastRCNNOutputLayers",
    "MaskRCNNConvUpsampleHead",
    "StandardROIHeads",
    "build_box_head",
    "build_mask_head",
    "build_roi_heads",
    "fast_rcnn_inference_single_image",
    "mask_rcnn_inference",
    "mask_rcnn_loss",
    "select_foreground_proposals",
]
