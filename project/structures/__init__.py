"""Data structures passed between the data pipeline, the model and the evaluator."""

from .boxes import Boxes, BoxMode, pairwise_intersection, pairwise_ioa, pairwise_iou
from .cropped_masks import CroppedBitMasks, MaskCrop, intersection_area, mask_iou, union_of_crops
from .image_list import ImageList
from .instances import Instances
from .masks import BitMasks, InstanceMasks, PolygonMasks, paste_masks_in_image, polygons_to_bitmask
from .rotated_boxes import RotatedBoxes

__all__ = [
    "BitMasks",
    "BoxMode",
    "Boxes",
    "CroppedBitMasks",
    "ImageList",
    "InstanceMasks",
    "Instances",
    "MaskCrop",
    "intersection_area",
    "mask_iou",
    "union_of_crops",
    "PolygonMasks",
    "RotatedBoxes",
    "paste_masks_in_image",
    "pairwise_intersection",
    "pairwise_ioa",
    "pairwise_iou",
    "polygons_to_bitmask",
]
