"""Putting fixed-size mask predictions back into images, under Detectron2's ``layers.mask_ops`` names.

:func:`paste_masks_in_image` (implemented in :mod:`project.structures.masks`) is the one the
model uses. :func:`paste_mask_in_image_old` is the coarser paste of the original Detectron
(boxes truncated to whole pixels, the mask resized with PIL), kept for comparisons; it is
usually given masks grown by :func:`pad_masks` and boxes grown by :func:`scale_boxes` by the
same factor, so that resizing interpolates towards zero outside the mask.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from PIL import Image

from ..structures.masks import paste_masks_in_image

__all__ = ["pad_masks", "paste_mask_in_image_old", "paste_masks_in_image", "scale_boxes"]


def pad_masks(masks: torch.Tensor, padding: int) -> Tuple[torch.Tensor, float]:
    """(B, M, M) ``masks`` surrounded by ``padding`` zero cells on every side, and the factor
    ``(M + 2 * padding) / M`` by which the mask side grew."""
    side = masks.shape[-1]
    padded = masks.new_zeros((masks.shape[0], side + 2 * padding, side + 2 * padding))
    padded[:, padding : padding + side, padding : padding + side] = masks
    return padded, float(side + 2 * padding) / side


def scale_boxes(boxes: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, 4) XYXY ``boxes`` with width and height multiplied by ``scale``, centres kept."""
    centres = (boxes[:, 2:] + boxes[:, :2]) * 0.5
    half_sizes = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale
    return torch.cat([centres - half_sizes, centres + half_sizes], dim=1)


def paste_mask_in_image_old(
    mask: torch.Tensor, box: torch.Tensor, img_h: int, img_w: int, threshold: float
) -> torch.Tensor:
    """One (Hm, Wm) mask of probabilities pasted into an (img_h, img_w) uint8 image of 0s and 1s.

    ``box`` (4,) XYXY is truncated to integers; the mask is resized bilinearly (PIL) onto the
    ``x1 - x0 + 1`` by ``y1 - y0 + 1`` pixels it covers, set to 1 where above ``threshold``
    (in [0, 1]), and clipped to the image.
    """
    x0, y0, x1, y1 = box.to(torch.int32).tolist()
    resized = Image.fromarray(mask.cpu().numpy()).resize((x1 - x0 + 1, y1 - y0 + 1), resample=Image.BILINEAR)
    binary = torch.from_numpy((np.asarray(resized) > threshold).astype(np.uint8))
    image = torch.zeros((img_h, img_w), dtype=torch.uint8)
    top, left = max(y0, 0), max(x0, 0)
    bottom, right = min(y1 + 1, img_h), min(x1 + 1, img_w)
    image[top:bottom, left:right] = binary[top - y0 : bottom - y0, left - x0 : right - x0]
    return image
