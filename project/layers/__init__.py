"""Building blocks shared by the model's components."""

from .batch_norm import FrozenBatchNorm2d, get_norm
from .mask_ops import paste_masks_in_image
from .roi_align import ROIAlign, roi_align
from .shape_spec import ShapeSpec
from .wrappers import Conv2d, batched_nms, cat, conv3x3_norm_relu, nonzero_tuple

__all__ = [
    "Conv2d",
    "FrozenBatchNorm2d",
    "ROIAlign",
    "ShapeSpec",
    "batched_nms",
    "cat",
    "conv3x3_norm_relu",
    "get_norm",
    "nonzero_tuple",
    "paste_masks_in_image",
    "roi_align",
]
