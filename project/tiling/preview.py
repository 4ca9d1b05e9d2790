"""A picture-sized view of an image too large to draw at full resolution, and its objects moved
onto it: the image is reduced by a whole factor (each preview pixel the mean of a factor x factor
block), read window by window or from a pyramid level, so the full-resolution pixels never lie in
memory at once."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import cv2
import numpy as np

from ..structures import Boxes, CroppedBitMasks, Instances, MaskCrop
from .readers import LargeImage

# Level-0 pixels read at once while reducing an image that has no suitable pyramid level.
_WINDOW_PIXELS = 1024
_OPENCV_AREA_TYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


def reduction_factor(height: int, width: int, max_pixels: int, max_side: Optional[int] = None) -> int:
    """The smallest whole factor that brings a (height, width) image to at most ``max_pixels``
    pixels and, when given, ``max_side`` pixels on its longer side: 1 when it is small enough."""
    factor = max(1, math.ceil(math.sqrt(height * width / max_pixels)))
    while math.ceil(height / factor) * math.ceil(width / factor) > max_pixels:
        factor += 1
    if max_side is not None:
        factor = max(factor, math.ceil(max(height, width) / max_side))
    return factor


def reduced_size(height: int, width: int, factor: int) -> Tuple[int, int]:
    """(height, width) of the image reduced by ``factor``: a partial block at the bottom or right
    edge still makes a pixel."""
    return math.ceil(height / factor), math.ceil(width / factor)


def _source_level(image: LargeImage, factor: int) -> Tuple[int, int]:
    """``(level, step)``: the coarsest level whose size is level 0's divided by a whole number
    that divides ``factor`` (rounded up or down), and the factor left to reduce that level by."""
    best = (0, factor)
    for level, (height, width) in enumerate(image.levels[1:], start=1):
        downsample = max(1, round(image.width / width))
        exact = all(
            size in (full // downsample, math.ceil(full / downsample))
            for size, full in ((height, image.height), (width, image.width))
        )
        if exact and factor % downsample == 0 and factor // downsample < best[1]:
            best = (level, factor // downsample)
    return best


def read_reduced(image: LargeImage, factor: int) -> np.ndarray:
    """``image`` reduced by the whole ``factor``: array of ``reduced_size`` rows and columns, the
    image's channels and dtype, each pixel the mean of the ``factor`` x ``factor`` block it covers
    (a smaller block at the bottom and right edges). Reads from the coarsest pyramid level that
    allows it, about a thousand pixels square at a time."""
    level, step = _source_level(image, factor)
    height, width = image.levels[level]
    window = max(step, _WINDOW_PIXELS // step * step)  # whole blocks per window
    reduced = np.zeros(reduced_size(height, width, step) + _channels(image), dtype=image.dtype)
    for y in range(0, height, window):
        for x in range(0, width, window):
            w, h = min(window, width - x), min(window, height - y)
            part = _block_means(image.read_region(x, y, w, h, level=level), step)
            reduced[y // step : y // step + part.shape[0], x // step : x // step + part.shape[1]] = part
    # A pyramid level rounded down lacks the last partial block: repeat its last row or column.
    missing = np.subtract(reduced_size(image.height, image.width, factor), reduced.shape[:2])
    if missing.any():
        reduced = np.pad(reduced, [(0, missing[0]), (0, missing[1])] + [(0, 0)] * (reduced.ndim - 2), mode="edge")
    return reduced


def _block_means(pixels: np.ndarray, step: int) -> np.ndarray:
    """``pixels`` (h, w[, c]) reduced by ``step``: each output pixel the mean of its step x step
    block, of the pixels there are in the partial blocks at the bottom and right; integer types
    rounded to the nearest."""
    if step == 1:
        return pixels
    height, width = pixels.shape[:2]
    rows, cols = reduced_size(height, width, step)
    if height % step == 0 and width % step == 0 and pixels.dtype in _OPENCV_AREA_TYPES:
        # whole blocks: OpenCV's area resize is the block mean, rounded for integers, 15x faster
        return cv2.resize(pixels, (cols, rows), interpolation=cv2.INTER_AREA).reshape((rows, cols) + pixels.shape[2:])
    padded = np.zeros((rows * step, cols * step) + pixels.shape[2:], dtype=np.float64)
    padded[:height, :width] = pixels
    sums = padded.reshape(rows, step, cols, step, -1).sum(axis=(1, 3))
    counts = np.outer(
        np.diff(np.minimum(np.arange(rows + 1) * step, height)), np.diff(np.minimum(np.arange(cols + 1) * step, width))
    )
    means = (sums / counts[..., None]).reshape((rows, cols) + pixels.shape[2:])
    if np.issubdtype(pixels.dtype, np.integer):
        means = np.rint(means)
    return means.astype(pixels.dtype)


def _channels(image: LargeImage) -> Tuple[int, ...]:
    """The channel axis of ``image``'s windows: () for grey, (channels,) for colour."""
    return () if image.channels == 1 else (image.channels,)


def _reduced_crop(crop: MaskCrop, factor: int, image_size: Tuple[int, int]) -> MaskCrop:
    """``crop`` on the image reduced by ``factor``: a pixel is inside where the mask covers at
    least half of its block's pixels (where none reaches half, the most covered ones, so no object
    disappears)."""
    if crop.mask.size == 0:
        return MaskCrop.empty(image_size)
    x0, y0, x1, y1 = crop.window
    height, width = crop.image_size
    bx0, by0 = x0 // factor, y0 // factor
    left, top = bx0 * factor, by0 * factor
    blocks = np.zeros(
        (min(math.ceil(y1 / factor) * factor, height) - top, min(math.ceil(x1 / factor) * factor, width) - left),
        dtype=np.float32,
    )
    blocks[y0 - top : y1 - top, x0 - left : x1 - left] = crop.mask
    coverage = _block_means(blocks, factor)
    return MaskCrop(coverage >= min(0.5, coverage.max()), bx0, by0, image_size)


def reduce_instances(instances: Instances, factor: int) -> Instances:
    """Predictions of an image moved onto the image reduced by ``factor``: boxes divided by it,
    masks (``CroppedBitMasks``) reduced block by block (``read_reduced``'s blocks), other fields
    kept."""
    size = reduced_size(*instances.image_size, factor)
    reduced = Instances(size)
    for name, value in instances.get_fields().items():
        if name == "pred_boxes":
            value = Boxes(value.tensor / factor)
        elif name == "pred_masks":
            value = CroppedBitMasks([_reduced_crop(c, factor, size) for c in value.crops], size)
        reduced.set(name, value)
    return reduced
