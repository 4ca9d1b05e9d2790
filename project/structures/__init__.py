"""Data structures passed between the data pipeline, the model and the evaluator."""

from .boxes import Boxes, BoxMode, pairwise_intersection, pairwise_ioa, pairwise_iou
from .image_list import ImageList
from .instances import Instances
from .masks import BitMasks, PolygonMasks, paste_masks_in_image, polygons_to_bitmask

__all__ = [
    "BitMasks",
    "BoxMode",
    "Boxes",
    "ImageList",
    "Instances",
    "PolygonMasks",
    "paste_masks_in_image",
    "pairwise_intersection",
    "pairwise_ioa",
    "pairwise_iou",
    "polygons_to_bitmask",
]
