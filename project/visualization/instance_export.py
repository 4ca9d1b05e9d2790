"""Each object on its own: cut-outs, mask pictures and an instance-id label image.

These are the files other tools read: an RGBA cut-out opens in any image editor with the
background transparent; a uint16 label image (0 = background, i + 1 = instance i) is what
cell-biology tools (CellProfiler, napari, Fiji) load as a segmentation.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from ..structures import MaskCrop
from .masks import label_map, paint_order


def instance_label_image(crops: Sequence[MaskCrop], image_size: Tuple[int, int]) -> np.ndarray:
    """(H, W) uint16 image with value ``i + 1`` on instance ``i``'s mask and 0 elsewhere.
    Where masks overlap, the smaller one keeps the pixel (the order the pictures are drawn in).
    Raises ``ValueError`` for 65535 instances or more, which uint16 cannot number."""
    if len(crops) >= np.iinfo(np.uint16).max:
        raise ValueError(f"{len(crops)} instances do not fit a uint16 label image (at most 65534)")
    return label_map(crops, image_size, paint_order(crops)).astype(np.uint16, copy=False)


def box_window(box: Sequence[float], image_size: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """The whole pixels ``(x0, y0, x1, y1)`` (end exclusive) an XYXY box touches, inside the image."""
    height, width = image_size
    x0 = int(np.clip(np.floor(box[0]), 0, width))
    y0 = int(np.clip(np.floor(box[1]), 0, height))
    x1 = int(np.clip(np.ceil(box[2]), x0, width))
    y1 = int(np.clip(np.ceil(box[3]), y0, height))
    return x0, y0, x1, y1


def window_mask(crop: MaskCrop, window: Tuple[int, int, int, int]) -> np.ndarray:
    """The (y1 - y0, x1 - x0) bool part of the mask inside ``window`` (zeros where the crop
    does not reach)."""
    x0, y0, x1, y1 = window
    out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    h, w = crop.mask.shape
    cx0, cy0, cx1, cy1 = max(x0, crop.x0), max(y0, crop.y0), min(x1, crop.x0 + w), min(y1, crop.y0 + h)
    if cx1 > cx0 and cy1 > cy0:
        out[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = crop.mask[
            cy0 - crop.y0 : cy1 - crop.y0, cx0 - crop.x0 : cx1 - crop.x0
        ]
    return out


def cutout(image: np.ndarray, crop: MaskCrop, box: Sequence[float]) -> np.ndarray:
    """The object as an (h, w, 4) uint8 image cropped to its XYXY ``box``: the colour channels
    of ``image`` (H, W, 3, in its channel order) and alpha 255 on the mask, 0 everywhere else
    (colour set to 0 there too)."""
    x0, y0, x1, y1 = box_window(box, image.shape[:2])
    inside = window_mask(crop, (x0, y0, x1, y1))
    rgba = np.zeros((y1 - y0, x1 - x0, 4), dtype=np.uint8)
    rgba[..., :3] = image[y0:y1, x0:x1] * inside[..., None]
    rgba[..., 3] = inside * np.uint8(255)
    return rgba
