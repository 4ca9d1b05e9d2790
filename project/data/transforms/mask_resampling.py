"""Moving instance masks kept as crops (``MaskCrop``) through the transforms applied to their
image, without building full-image masks."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from fvcore.transforms.transform import (
    BlendTransform,
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    PadTransform,
    Transform,
    TransformList,
    VFlipTransform,
)

from ...structures import MaskCrop
from .transform import ColorTransform, ResizeTransform, resize_source_index

_NO_SOURCE = -1


def _output_size(t: Transform, size: Tuple[int, int]) -> Tuple[int, int]:
    if isinstance(t, ResizeTransform):
        return (t.new_h, t.new_w)
    if isinstance(t, CropTransform):
        return (t.h, t.w)
    if isinstance(t, PadTransform):
        return (size[0] + t.y0 + t.y1, size[1] + t.x0 + t.x1)
    return size


def _source_index(t: Transform, index: np.ndarray, axis: int, input_length: int) -> np.ndarray:
    """Map output pixel indices of ``t`` along ``axis`` (0 = rows, 1 = columns) to its input
    pixel indices; ``_NO_SOURCE`` where the output pixel has no source (padding)."""
    valid = index >= 0
    if isinstance(t, ResizeTransform):
        new_length = t.new_h if axis == 0 else t.new_w
        source = resize_source_index(new_length, input_length)[np.where(valid, index, 0)]
    elif (isinstance(t, HFlipTransform) and axis == 1) or (isinstance(t, VFlipTransform) and axis == 0):
        source = input_length - 1 - index
    elif isinstance(t, CropTransform):
        source = index + (t.y0 if axis == 0 else t.x0)
    elif isinstance(t, PadTransform):
        source = index - (t.y0 if axis == 0 else t.x0)
    else:
        source = index
    valid &= (source >= 0) & (source < input_length)
    return np.where(valid, source, _NO_SOURCE)


def _is_axis_aligned(t: Transform) -> bool:
    """True for the transforms whose pixel mapping ``_source_index`` knows exactly."""
    return isinstance(
        t,
        (
            ResizeTransform,
            HFlipTransform,
            VFlipTransform,
            CropTransform,
            PadTransform,
            NoOpTransform,
            BlendTransform,
            ColorTransform,
        ),
    )


class MaskCropResampler:
    """Applies a ``TransformList`` to the ``MaskCrop``s of one input image.

    The result is the crop of what ``apply_segmentation`` gives on the full mask, with padding
    counted as background. For the axis-aligned transforms (resize, flips, crop, pad,
    photometric ones) the per-axis pixel maps are computed once per image, and each crop costs
    time in proportion to its own size. Any other transform falls back to transforming the full
    mask.
    """

    def __init__(self, transforms: Transform, input_size: Tuple[int, int]):
        self.transforms = transforms if isinstance(transforms, TransformList) else TransformList([transforms])
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.output_size: Optional[Tuple[int, int]] = None  # known up front for axis-aligned transforms
        self._rows: Optional[np.ndarray] = None
        self._cols: Optional[np.ndarray] = None
        if all(_is_axis_aligned(t) for t in self.transforms.transforms):
            self._build_pixel_maps()

    def _build_pixel_maps(self) -> None:
        sizes = [self.input_size]
        for t in self.transforms.transforms:
            sizes.append(_output_size(t, sizes[-1]))
        self.output_size = sizes[-1]
        rows = np.arange(self.output_size[0])
        cols = np.arange(self.output_size[1])
        for t, size in zip(reversed(self.transforms.transforms), reversed(sizes[:-1])):
            rows = _source_index(t, rows, 0, size[0])
            cols = _source_index(t, cols, 1, size[1])
        self._rows, self._cols = rows, cols

    def __call__(self, crop: MaskCrop) -> MaskCrop:
        if tuple(crop.image_size) != self.input_size:
            raise ValueError(f"mask of a {crop.image_size} image given to a resampler for {self.input_size}")
        if self._rows is None:
            full = self.transforms.apply_segmentation(crop.to_array().astype(np.uint8))
            return MaskCrop.from_array(full)
        h, w = crop.mask.shape
        row_hits = np.flatnonzero((self._rows >= crop.y0) & (self._rows < crop.y0 + h))
        col_hits = np.flatnonzero((self._cols >= crop.x0) & (self._cols < crop.x0 + w))
        if len(row_hits) == 0 or len(col_hits) == 0:
            return MaskCrop.empty(self.output_size)
        r0, r1 = row_hits[0], row_hits[-1] + 1
        c0, c1 = col_hits[0], col_hits[-1] + 1
        src_rows = self._rows[r0:r1] - crop.y0
        src_cols = self._cols[c0:c1] - crop.x0
        row_ok = (src_rows >= 0) & (src_rows < h)
        col_ok = (src_cols >= 0) & (src_cols < w)
        mask = crop.mask[np.clip(src_rows, 0, h - 1)[:, None], np.clip(src_cols, 0, w - 1)[None, :]]
        if not (row_ok.all() and col_ok.all()):
            mask &= row_ok[:, None] & col_ok[None, :]
        return MaskCrop(mask, int(c0), int(r0), self.output_size)
