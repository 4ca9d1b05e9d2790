"""Drawing instances onto an (H, W, 3) uint8 image with OpenCV and numpy, in place.

Each function draws one thing and works on the instances' crops only. Colours are (N, 3) uint8
arrays in the image's channel order.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..structures import MaskCrop


def line_thickness(image_size: Sequence[int]) -> int:
    """Pixels of a contour or box line that stays visible at the image's size (1 up to ~720p)."""
    return max(1, int(round(min(image_size[:2]) / 720)))


def blend_tables(colors: np.ndarray, alpha: float) -> np.ndarray:
    """(N, 256, 1, 3) uint8: per colour of the (N, 3) ``colors``, the ``cv2.LUT`` table of
    ``round((1 - alpha) * v + alpha * colour)`` per channel, halves rounded up."""
    values = (
        np.arange(256, dtype=np.float64)[None, :, None] * (1.0 - alpha)
        + colors.astype(np.float64).reshape(-1, 1, 3) * alpha
    )
    return np.floor(values + 0.5).clip(0, 255).astype(np.uint8)[:, :, None, :]


def fill_masks(
    image: np.ndarray,
    crops: Sequence[MaskCrop],
    labels: np.ndarray,
    colors: np.ndarray,
    alpha: float,
) -> None:
    """Blend each instance's colour into the pixels it shows in ``labels`` (see
    ``masks.label_map``): ``image = round((1 - alpha) * image + alpha * colour)`` there (see
    ``blend_tables``), the other pixels untouched. Each pixel is blended once, from its value
    before the call."""
    distinct, table_of = np.unique(colors.reshape(-1, 3), axis=0, return_inverse=True)
    tables = blend_tables(distinct, alpha)  # one table per distinct colour (a palette repeats)
    for i, crop in enumerate(crops):
        h, w = crop.mask.shape
        if h == 0 or w == 0:
            continue
        window = (slice(crop.y0, crop.y0 + h), slice(crop.x0, crop.x0 + w))
        shown = (labels[window] == i + 1).view(np.uint8)
        result = np.ascontiguousarray(image[window])
        blended = cv2.LUT(result, tables[table_of[i]])
        image[window] = cv2.copyTo(blended, shown, result)


def grey_background(image: np.ndarray, labels: np.ndarray) -> None:
    """Replace the colour of every pixel outside all masks (``labels == 0``) by its grey level."""
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    np.copyto(image, grey, where=(labels == 0)[:, :, None])


def draw_contours(image: np.ndarray, crops: Sequence[MaskCrop], colors: np.ndarray, thickness: int) -> None:
    """Outline each mask (outer borders and holes) in its colour, with lines ``thickness``
    pixels wide through polygons that stay within a third of the line width of the mask's exact
    border (fewer vertices: thick lines cost OpenCV a joint per vertex, which was most of the
    drawing time at 4K)."""
    tolerance = thickness / 3
    for crop, color in zip(crops, colors.tolist()):
        if crop.mask.size == 0:
            continue
        contours, _ = cv2.findContours(crop.mask.view(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        if contours:
            contours = [cv2.approxPolyDP(c, tolerance, True) for c in contours]
            cv2.drawContours(image, contours, -1, color, thickness, offset=(crop.x0, crop.y0))


def draw_boxes(image: np.ndarray, boxes: np.ndarray, colors: np.ndarray, thickness: int) -> None:
    """Rectangles for (N, 4) XYXY boxes in absolute pixels (pixel edges: a box ``[0, 0, 10, 10]``
    covers pixels 0..9)."""
    height, width = image.shape[:2]
    corners = np.rint(boxes).astype(np.int64)
    corners[:, 0::2] = corners[:, 0::2].clip(0, width)
    corners[:, 1::2] = corners[:, 1::2].clip(0, height)
    for (x0, y0, x1, y1), color in zip(corners.tolist(), colors.tolist()):
        cv2.rectangle(image, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), color, thickness)
