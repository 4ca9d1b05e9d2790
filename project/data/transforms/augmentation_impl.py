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

    def _sample_short_edge(self) -> int:
        """One short-side length, from one draw of NumPy's global generator."""
        if self.sample_style == "choice":
            return int(np.random.choice(self.short_edge_length))
        shortest, longest = self.short_edge_length
        return np.random.randint(shortest, longest + 1)

    def get_transform(self, image: np.ndarray) -> Transform:
        """A resize of ``image`` (its first two axes are H, W) to the sampled short side; a
        no-op when the sampled length is 0."""
        h, w = image.shape[:2]
        target = self._sample_short_edge()
        if target == 0:
            return NoOpTransform()
        return ResizeTransform(h, w, *self.get_output_shape(h, w, target, self.max_size), self.interp)


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

    def _height_width_fractions(self) -> Tuple[float, float]:
        """The crop's share of the image height and width, for the relative crop types
        ("relative_range" draws ``np.random.rand(2)``)."""
        if self.crop_type == "relative":
            return self.crop_size
        smallest = np.asarray(self.crop_size, dtype=np.float64)
        return tuple(smallest + (1 - smallest) * np.random.rand(2))

    def _height_width_pixels(self, image_size: Tuple[int, int]) -> Tuple[int, int]:
        """The crop's height and width in pixels, for the absolute crop types, capped by
        ``image_size`` ("absolute_range" draws the height, then the width, with ``np.random.randint``)."""
        if self.crop_type == "absolute":
            return tuple(min(int(size), extent) for size, extent in zip(self.crop_size, image_size))
        low, high = self.crop_size
        if low > high:
            raise ValueError(f"RandomCrop: an absolute_range crop_size is (min, max); got {self.crop_size}")
        low, high = int(low), int(high)
        return tuple(np.random.randint(min(extent, low), min(extent, high) + 1) for extent in image_size)

    def get_crop_size(self, image_size: Tuple[int, int]) -> Tuple[int, int]:
        """(crop_h, crop_w) in pixels for an image of ``image_size = (h, w)``; relative sizes
        round to the nearest pixel."""
        if len(image_size) != 2:
            raise ValueError(f"RandomCrop.get_crop_size takes an (h, w) image size, got {image_size}")
        if not self.crop_type.startswith("relative"):
            return self._height_width_pixels(image_size)
        fractions = self._height_width_fractions()
        return tuple(int(extent * fraction + 0.5) for extent, fraction in zip(image_size, fractions))

    def get_transform(self, image: np.ndarray) -> Transform:
        """A crop of ``image`` (its first two axes are H, W) at an offset drawn uniformly among
        those that keep it inside (``np.random.randint``, top then left)."""
        h, w = image.shape[:2]
        crop_h, crop_w = self.get_crop_size((h, w))
        if not (0 < crop_h <= h and 0 < crop_w <= w):
            raise ValueError(f"RandomCrop: a {crop_h}x{crop_w} crop does not fit the {h}x{w} image")
        y0, x0 = [np.random.randint(extent - crop + 1) for extent, crop in ((h, crop_h), (w, crop_w))]
        return CropTransform(x0, y0, crop_w, crop_h, w, h)


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
