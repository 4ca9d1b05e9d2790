"""Instance masks in any of the project's forms, as ``MaskCrop``s for drawing.

Drawing works on each mask's crop only, so its cost follows the objects' area, not the number
of instances times the image size.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import cv2
import numpy as np
import torch

from ..data.detection_utils import segmentation_to_mask_crop
from ..structures import BitMasks, CroppedBitMasks, MaskCrop, PolygonMasks


def _dense_to_crops(masks: np.ndarray) -> List[MaskCrop]:
    """Tight crops of an (N, H, W) array (nonzero = inside). Each crop is a copy of its own
    window; nothing of the full array's size is allocated."""
    image_size = masks.shape[1:]
    rows_any = masks.any(axis=2)
    cols_any = masks.any(axis=1)
    crops = []
    for mask, rows, cols in zip(masks, rows_any, cols_any):
        ys, xs = np.flatnonzero(rows), np.flatnonzero(cols)
        if len(ys) == 0:
            crops.append(MaskCrop.empty(image_size))
            continue
        y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
        crops.append(MaskCrop(mask[y0:y1, x0:x1] != 0, int(x0), int(y0), image_size))
    return crops


def _one_segmentation(segm: Any, image_size: Tuple[int, int]) -> MaskCrop:
    """A crop from one instance's polygons (a list of flat lists), RLE dict, array or crop."""
    if isinstance(segm, (list, tuple)):
        return MaskCrop.from_polygons([np.asarray(p, dtype=np.float64) for p in segm], image_size)
    crop = segmentation_to_mask_crop(np.asarray(segm) if isinstance(segm, torch.Tensor) else segm, image_size)
    if tuple(crop.image_size) != tuple(image_size):
        raise ValueError(f"a mask of a {crop.image_size} image given for a {image_size} image")
    return crop


def as_mask_crops(masks: Any, image_size: Tuple[int, int]) -> List[MaskCrop]:
    """One ``MaskCrop`` per instance of an image of ``image_size = (H, W)``.

    ``masks`` may be a ``CroppedBitMasks`` (used as is), ``BitMasks``, ``PolygonMasks``, an
    (N, H, W) tensor or array (nonzero = inside), or a list with one entry per instance of:
    polygons (a list of flat ``[x0, y0, x1, y1, ...]`` lists), a COCO RLE dict (compressed or
    not), an (H, W) array or a ``MaskCrop``. Raises ``ValueError`` when a mask belongs to an
    image of another size.
    """
    image_size = (int(image_size[0]), int(image_size[1]))
    if isinstance(masks, CroppedBitMasks):
        crops = masks.crops
    elif isinstance(masks, PolygonMasks):
        crops = [MaskCrop.from_polygons(p, image_size) for p in masks.polygons]
    elif isinstance(masks, (BitMasks, torch.Tensor, np.ndarray)):
        dense = masks.tensor if isinstance(masks, BitMasks) else masks
        dense = dense.detach().cpu().numpy() if isinstance(dense, torch.Tensor) else np.asarray(dense)
        if dense.ndim != 3:
            raise ValueError(f"expected (N, H, W) masks, got shape {dense.shape}")
        crops = _dense_to_crops(dense) if len(dense) else []
    elif isinstance(masks, Sequence):
        crops = [_one_segmentation(segm, image_size) for segm in masks]
    else:
        raise TypeError(f"cannot draw masks given as {type(masks).__name__}")
    for i, crop in enumerate(crops):
        if tuple(crop.image_size) != image_size:
            raise ValueError(
                f"mask {i} belongs to a {tuple(crop.image_size)} image, not to the {image_size} image drawn"
            )
    return list(crops)


def paint_order(crops: Sequence[MaskCrop]) -> np.ndarray:
    """Instance indices from the largest mask to the smallest: drawn in this order, small
    objects stay visible on top of large ones."""
    areas = np.array([int(np.count_nonzero(c.mask)) for c in crops], dtype=np.int64)
    return np.argsort(-areas, kind="stable")


def label_map(crops: Sequence[MaskCrop], image_size: Tuple[int, int], order: Sequence[int]) -> np.ndarray:
    """(H, W) map of which instance each pixel shows: ``i + 1`` for instance ``i``, 0 for
    background; where masks overlap, the one later in ``order`` wins. uint16 when there are
    fewer than 65535 instances, else int32."""
    dtype = np.uint16 if len(crops) < np.iinfo(np.uint16).max else np.int32
    labels = np.zeros(image_size, dtype=dtype)
    for i in order:
        crop = crops[i]
        h, w = crop.mask.shape
        if h and w:  # OpenCV writes through the window (a view of ``labels``) where the mask is set
            cv2.copyTo(
                np.full((h, w), i + 1, dtype),
                crop.mask.view(np.uint8),
                labels[crop.y0 : crop.y0 + h, crop.x0 : crop.x0 + w],
            )
    return labels
