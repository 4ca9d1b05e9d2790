"""Augmentations with Detectron2's names, arguments and random draws: those the config can ask
for, and the other geometric and photometric ones of Detectron2 (semantic-segmentation-aware
cropping aside)."""

from __future__ import annotations

import sys
from typing import Any, Sequence, Tuple, Union

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

from .augmentation import AugInput, Augmentation, as_augmentation
from .transform import CropTransform, ExtentTransform, ResizeTransform, RotationTransform


class ArgumentOutOfRangeError(ValueError, AssertionError):
    """An argument outside its allowed range. Also an ``AssertionError``, which is what
    Detectron2 raises in these places, so that code catching either keeps working."""


class RandomApply(Augmentation):
    """Apply ``tfm_or_aug`` (an augmentation, or a fixed transform) with probability ``prob``,
    else nothing (one uniform draw decides)."""

    def __init__(self, tfm_or_aug: Union[Augmentation, Transform], prob: float = 0.5):
        if not 0.0 <= prob <= 1.0:
            raise ArgumentOutOfRangeError(f"RandomApply: prob must lie in [0, 1], got {prob}")
        self.aug = as_augmentation(tfm_or_aug)
        self.prob = prob

    def get_transform(self, *args: Any) -> Transform:
        if self._rand_range() < self.prob:
            return self.aug.get_transform(*args)
        return NoOpTransform()

    def __call__(self, aug_input: AugInput) -> Transform:
        if self._rand_range() < self.prob:
            return self.aug(aug_input)
        return NoOpTransform()


class Resize(Augmentation):
    """Resize to the fixed ``shape = (h, w)`` (an int for a square)."""

    def __init__(self, shape: Union[int, Tuple[int, int]], interp: Union[str, int] = "bilinear"):
        self.shape = (shape, shape) if isinstance(shape, int) else tuple(shape)
        self.interp = interp

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        return ResizeTransform(h, w, self.shape[0], self.shape[1], self.interp)


class RandomResize(Augmentation):
    """Resize to one ``(h, w)`` of ``shape_list``, drawn uniformly."""

    def __init__(self, shape_list: Sequence[Tuple[int, int]], interp: Union[str, int] = "bilinear"):
        self.shape_list = shape_list
        self.interp = interp

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        new_h, new_w = self.shape_list[np.random.randint(low=0, high=len(self.shape_list))]
        return ResizeTransform(h, w, new_h, new_w, self.interp)


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
        """A crop at ``u * (image size - crop size)`` for one uniform draw ``u`` (the same
        fraction along both axes), then the padding."""
        h, w = image.shape[:2]
        ch, cw = min(self.crop_size[0], h), min(self.crop_size[1], w)
        fraction = np.random.uniform(0.0, 1.0)
        y0, x0 = int(np.round((h - ch) * fraction)), int(np.round((w - cw) * fraction))
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


class RandomSaturation(Augmentation):
    """Blend an RGB image with its grey version (ITU-R 601 luma) by a weight drawn uniformly
    from ``[intensity_min, intensity_max]``: below 1 desaturates, above 1 saturates."""

    def __init__(self, intensity_min: float, intensity_max: float):
        self.intensity_min = intensity_min
        self.intensity_max = intensity_max

    def get_transform(self, image: np.ndarray) -> Transform:
        if image.shape[-1] != 3:
            raise ValueError(f"RandomSaturation needs a 3-channel RGB image, got shape {image.shape}")
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        grey = image.dot([0.299, 0.587, 0.114])[:, :, None]
        return BlendTransform(src_image=grey, src_weight=1 - w, dst_weight=w)


class RandomLighting(Augmentation):
    """AlexNet-style lighting noise: add to every pixel a colour drawn along the principal
    components of ImageNet's RGB values, with weights ~ N(0, ``scale``) per component (for
    images scaled to 0..1 the ``scale`` is about 0.1; multiply it by 255 for 0..255)."""

    # Principal components (columns) of ImageNet's RGB pixel values and their eigenvalues.
    EIGEN_VECTORS = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])
    EIGEN_VALUES = np.array([0.2175, 0.0188, 0.0045])

    def __init__(self, scale: float):
        self.scale = scale

    def get_transform(self, image: np.ndarray) -> Transform:
        if image.shape[-1] != 3:
            raise ValueError(f"RandomLighting needs a 3-channel RGB image, got shape {image.shape}")
        weights = np.random.normal(scale=self.scale, size=3)
        shift = self.EIGEN_VECTORS.dot(weights * self.EIGEN_VALUES)
        return BlendTransform(src_image=shift, src_weight=1.0, dst_weight=1.0)


class RandomExtent(Augmentation):
    """Cut out a random rectangle and keep it at its own size: the image's extent scaled by a
    factor drawn uniformly from ``scale_range`` about the centre, whose centre is shifted by
    up to ``shift_range = (sx, sy)`` halves of the image width and height (each drawn
    uniformly); parts beyond the image are filled with 0."""

    def __init__(self, scale_range: Tuple[float, float], shift_range: Tuple[float, float]):
        self.scale_range = scale_range
        self.shift_range = shift_range

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        half_extent = np.array([w, h], dtype=np.float64) * 0.5 * np.random.uniform(*self.scale_range)
        centre = np.array([w, h], dtype=np.float64) * 0.5
        centre[0] += self.shift_range[0] * w * (np.random.rand() - 0.5)
        centre[1] += self.shift_range[1] * h * (np.random.rand() - 0.5)
        x0, y0 = centre - half_extent
        x1, y1 = centre + half_extent
        return ExtentTransform(src_rect=(x0, y0, x1, y1), output_size=(int(y1 - y0), int(x1 - x0)))


class RandomRotation(Augmentation):
    """Turn the image counter-clockwise by a random angle in degrees (see ``RotationTransform``).

    ``sample_style="range"``: the angle is drawn uniformly from ``angle = [low, high]`` (a
    number: that angle), and ``center``, if given as ``[[x_low, y_low], [x_high, y_high]]`` in
    fractions of the image width and height (a single ``[x, y]``: that point), from that box.
    ``sample_style="choice"``: angle and centre are picked from the lists ``angle`` and
    ``center``. Without ``center`` the image centre is the pivot; with ``expand`` it never
    matters. A whole number of turns gives a ``NoOpTransform``.
    """

    def __init__(
        self,
        angle: Union[float, Sequence[float]],
        expand: bool = True,
        center: Any = None,
        sample_style: str = "range",
        interp: Union[str, int, None] = None,
    ):
        if sample_style not in ("range", "choice"):
            raise ArgumentOutOfRangeError(f"sample_style must be 'range' or 'choice', got {sample_style!r}")
        single_centre = center is not None and isinstance(center[0], (int, float))
        self.angle = (angle, angle) if isinstance(angle, (int, float)) else angle
        self.expand = expand
        self.center = (center, center) if single_centre else center
        self.sample_style = sample_style
        self.interp = interp

    def _draw(self) -> Tuple[float, Any]:
        """The angle and the relative centre (or None) of one rotation."""
        if self.sample_style == "choice":
            angle = float(np.random.choice(self.angle))
            centre = None if self.center is None else self.center[np.random.randint(len(self.center))]
            return angle, centre
        angle = float(np.random.uniform(self.angle[0], self.angle[1]))
        if self.center is None:
            return angle, None
        (x_low, y_low), (x_high, y_high) = self.center
        return angle, (np.random.uniform(x_low, x_high), np.random.uniform(y_low, y_high))

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        angle, centre = self._draw()
        if angle % 360 == 0:
            return NoOpTransform()
        pivot = None if centre is None else (w * centre[0], h * centre[1])
        return RotationTransform(h, w, angle, expand=self.expand, center=pivot, interp=self.interp)
