"""The augmentations the config can ask for, with Detectron2's names and semantics."""

from __future__ import annotations

import sys
from typing import Sequence, Tuple, Union

import numpy as np
from fvcore.transforms.transform import (
    BlendTransform,
    HFlipTransform,
    NoOpTransform,
    PadTransform,
    Transform,
    TransformList,
    VFlipTransform,
)

from .augmentation import Augmentation
from .transform import CropTransform, ResizeTransform


class ResizeShortestEdge(Augmentation):
    """Resize so that the shorter side has a length drawn from ``short_edge_length`` (one of
    the values with ``sample_style="choice"``, uniformly between the two values with "range"),
    unless the longer side would then exceed ``max_size``, in which case the longer side gets
    ``max_size``. The aspect ratio is kept; sizes round to the nearest pixel."""

    def __init__(
        self,
        short_edge_length: Union[int, Sequence[int]],
        max_size: int = sys.maxsize,
        sample_style: str = "range",
        interp: str = "bilinear",
    ):
        if isinstance(short_edge_length, int):
            short_edge_length = (short_edge_length, short_edge_length)
        self.short_edge_length = tuple(int(s) for s in short_edge_length)
        if sample_style not in ("range", "choice"):
            raise ValueError(f"sample_style must be 'range' or 'choice', got {sample_style!r}")
        if sample_style == "range" and len(self.short_edge_length) != 2:
            raise ValueError(f"sample_style='range' needs two lengths (min, max), got {self.short_edge_length}")
        self.max_size = int(max_size)
        self.sample_style = sample_style
        self.interp = interp

    @staticmethod
    def get_output_shape(oldh: int, oldw: int, short_edge_length: int, max_size: int) -> Tuple[int, int]:
        """(new_h, new_w) for an (oldh, oldw) image."""
        scale = short_edge_length / min(oldh, oldw)
        newh, neww = oldh * scale, oldw * scale
        if max(newh, neww) > max_size:
            shrink = max_size / max(newh, neww)
            newh, neww = newh * shrink, neww * shrink
        return int(newh + 0.5), int(neww + 0.5)

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        if self.sample_style == "range":
            size = np.random.randint(self.short_edge_length[0], self.short_edge_length[1] + 1)
        else:
            size = np.random.choice(self.short_edge_length)
        if size == 0:
            return NoOpTransform()
        newh, neww = self.get_output_shape(h, w, int(size), self.max_size)
        return ResizeTransform(h, w, newh, neww, self.interp)


class RandomFlip(Augmentation):
    """Flip the image horizontally or vertically (exactly one of the two) with probability ``prob``."""

    def __init__(self, prob: float = 0.5, *, horizontal: bool = True, vertical: bool = False):
        if horizontal == vertical:
            raise ValueError("RandomFlip flips either horizontally or vertically; use two RandomFlips for both")
        self.prob = prob
        self.horizontal = horizontal
        self.vertical = vertical

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        if np.random.uniform() >= self.prob:
            return NoOpTransform()
        return HFlipTransform(w) if self.horizontal else VFlipTransform(h)


class RandomCrop(Augmentation):
    """Crop a random window, sized by ``crop_type``:

    - "relative": ``crop_size = (h_frac, w_frac)`` of the image;
    - "relative_range": fractions drawn uniformly from ``[crop_size, 1]``;
    - "absolute": ``crop_size = (h, w)`` pixels (capped by the image);
    - "absolute_range": height and width drawn uniformly from ``[crop_size[0], crop_size[1]]``
      pixels (capped by the image).
    """

    CROP_TYPES = ("relative", "relative_range", "absolute", "absolute_range")

    def __init__(self, crop_type: str, crop_size: Sequence[float]):
        if crop_type not in self.CROP_TYPES:
            raise ValueError(f"crop_type must be one of {self.CROP_TYPES}, got {crop_type!r}")
        if len(crop_size) != 2:
            raise ValueError(f"crop_size needs two values, got {list(crop_size)}")
        self.crop_type = crop_type
        self.crop_size = tuple(crop_size)

    def get_crop_size(self, image_size: Tuple[int, int]) -> Tuple[int, int]:
        """(crop_h, crop_w) in pixels for an image of ``image_size = (h, w)``."""
        h, w = image_size
        a, b = self.crop_size
        if self.crop_type == "relative":
            return int(h * a + 0.5), int(w * b + 0.5)
        if self.crop_type == "relative_range":
            fractions = np.asarray(self.crop_size, dtype=np.float64)
            fh, fw = fractions + np.random.rand(2) * (1 - fractions)
            return int(h * fh + 0.5), int(w * fw + 0.5)
        if self.crop_type == "absolute":
            return min(int(a), h), min(int(b), w)
        if a > b:
            raise ValueError(f"absolute_range crop needs min <= max, got {self.crop_size}")
        ch = np.random.randint(min(h, int(a)), min(h, int(b)) + 1)
        cw = np.random.randint(min(w, int(a)), min(w, int(b)) + 1)
        return ch, cw

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        ch, cw = self.get_crop_size((h, w))
        if not (0 < ch <= h and 0 < cw <= w):
            raise ValueError(f"crop {ch}x{cw} does not fit a {h}x{w} image")
        y0 = np.random.randint(h - ch + 1)
        x0 = np.random.randint(w - cw + 1)
        return CropTransform(x0, y0, cw, ch, w, h)


class ResizeScale(Augmentation):
    """Large-scale jitter, resize part: scale the target box ``(target_height, target_width)``
    by a factor drawn uniformly from ``[min_scale, max_scale]``, then resize the image (keeping
    its aspect ratio) to the largest size that fits inside that box."""

    def __init__(
        self, min_scale: float, max_scale: float, target_height: int, target_width: int, interp: str = "bilinear"
    ):
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.target_height = target_height
        self.target_width = target_width
        self.interp = interp

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        scale = np.random.uniform(self.min_scale, self.max_scale)
        factor = min(self.target_height * scale / h, self.target_width * scale / w)
        newh, neww = int(round(h * factor)), int(round(w * factor))
        return ResizeTransform(h, w, max(newh, 1), max(neww, 1), self.interp)


class FixedSizeCrop(Augmentation):
    """Large-scale jitter, crop part: a random ``crop_size = (h, w)`` window where the image is
    larger, then (with ``pad``) padding at the right and bottom up to ``crop_size``. Padding is
    ``pad_value`` in the image and background in instance masks."""

    def __init__(
        self, crop_size: Tuple[int, int], pad: bool = True, pad_value: float = 128.0, seg_pad_value: int = 255
    ):
        self.crop_size = tuple(crop_size)
        self.pad = pad
        self.pad_value = pad_value
        self.seg_pad_value = seg_pad_value

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        ch, cw = min(self.crop_size[0], h), min(self.crop_size[1], w)
        y0 = int(round((h - ch) * np.random.uniform()))
        x0 = int(round((w - cw) * np.random.uniform()))
        transforms = [CropTransform(x0, y0, cw, ch, w, h)]
        if self.pad:
            pad_h, pad_w = self.crop_size[0] - ch, self.crop_size[1] - cw
            transforms.append(PadTransform(0, 0, pad_w, pad_h, cw, ch, self.pad_value, self.seg_pad_value))
        return TransformList(transforms)


class RandomBrightness(Augmentation):
    """Multiply pixel values by a factor drawn uniformly from ``[intensity_min, intensity_max]``
    (clipped to the value range)."""

    def __init__(self, intensity_min: float, intensity_max: float):
        self.intensity_min = intensity_min
        self.intensity_max = intensity_max

    def get_transform(self, image: np.ndarray) -> Transform:
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        return BlendTransform(src_image=0, src_weight=1 - w, dst_weight=w)


class RandomContrast(Augmentation):
    """Scale pixel values' distance to the image mean by a factor drawn uniformly from
    ``[intensity_min, intensity_max]`` (clipped to the value range)."""

    def __init__(self, intensity_min: float, intensity_max: float):
        self.intensity_min = intensity_min
        self.intensity_max = intensity_max

    def get_transform(self, image: np.ndarray) -> Transform:
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        return BlendTransform(src_image=float(image.mean()), src_weight=1 - w, dst_weight=w)
