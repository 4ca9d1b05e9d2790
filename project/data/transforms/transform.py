"""Deterministic transforms (fvcore ``Transform`` subclasses) that fvcore lacks or that we need
to behave differently: an OpenCV resize with pixel-centre nearest-neighbour masks, and a crop
that clips polygons without shapely.

Coordinates follow fvcore: continuous, ``(0, 0)`` is the top-left corner of the top-left pixel
and an (H, W) image spans ``[0, W] x [0, H]``.
"""

from __future__ import annotations

from typing import List

import cv2
import numpy as np
from fvcore.transforms.transform import CropTransform as _FvcoreCropTransform
from fvcore.transforms.transform import Transform

_CV2_INTERPOLATION = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
INTERPOLATIONS = ("nearest", *_CV2_INTERPOLATION)


def resize_source_index(new_length: int, length: int) -> np.ndarray:
    """For each of ``new_length`` output pixels, the input pixel (of ``length``) whose area
    contains the output pixel's centre: nearest-neighbour resampling on pixel centres."""
    centres = np.arange(new_length, dtype=np.float64) + 0.5
    return np.minimum((centres * (length / new_length)).astype(np.int64), length - 1)


class ResizeTransform(Transform):
    """Resize an (h, w) image to (new_h, new_w) with OpenCV.

    ``interp`` is "bilinear" (default), "bicubic" or "nearest". Shrinking with "bilinear" uses
    area averaging (OpenCV's INTER_AREA), which, like PIL's antialiased bilinear filter that
    Detectron2 uses, does not alias. "nearest" and segmentations (masks, label maps) take
    the input pixel under each output pixel's centre (``resize_source_index``), so an image
    resized with "nearest" and its masks stay aligned pixel for pixel.
    """

    def __init__(self, h: int, w: int, new_h: int, new_w: int, interp: str = "bilinear"):
        super().__init__()
        if interp not in INTERPOLATIONS:
            raise ValueError(f"interp must be one of {INTERPOLATIONS}, got {interp!r}")
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray, interp: str | None = None) -> np.ndarray:
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(f"ResizeTransform expects a {self.h}x{self.w} image, got {img.shape[:2]}")
        if (self.new_h, self.new_w) == (self.h, self.w):
            return img
        interp = interp or self.interp
        if interp == "nearest":
            return self.apply_segmentation(img)
        flag = _CV2_INTERPOLATION[interp]
        if interp == "bilinear" and self.new_h <= self.h and self.new_w <= self.w:
            flag = cv2.INTER_AREA
        out = cv2.resize(img, (self.new_w, self.new_h), interpolation=flag)
        if img.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel axis
            out = out[:, :, None]
        return out

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """Scale (N, 2) ``(x, y)`` points by ``new_w / w`` and ``new_h / h``, writing into
        ``coords`` (which is returned); integer arrays truncate."""
        for axis, (new_length, length) in enumerate(((self.new_w, self.w), (self.new_h, self.h))):
            coords[:, axis] = coords[:, axis] * (new_length / length)
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        rows = resize_source_index(self.new_h, self.h)
        cols = resize_source_index(self.new_w, self.w)
        return segmentation[rows[:, None], cols[None, :]]

    def inverse(self) -> Transform:
        return ResizeTransform(self.new_h, self.new_w, self.h, self.w, self.interp)


def clip_polygon(points: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Clip a closed polygon ((N, 2) points) to the rectangle [x0, x1] x [y0, y1]
    (Sutherland-Hodgman, one rectangle side at a time). Returns the (M, 2) clipped polygon,
    possibly with fewer than 3 points when nothing of it is inside."""
    # Each side: (axis, bound, keep points with coordinate >= bound if sign > 0, else <= bound).
    for axis, bound, sign in ((0, x0, 1.0), (0, x1, -1.0), (1, y0, 1.0), (1, y1, -1.0)):
        if len(points) == 0:
            break
        inside = sign * (points[:, axis] - bound) >= 0
        if inside.all():
            continue
        previous = np.roll(points, 1, axis=0)
        previous_inside = np.roll(inside, 1)
        clipped: List[np.ndarray] = []
        for point, prev, point_in, prev_in in zip(points, previous, inside, previous_inside):
            if point_in != prev_in:
                t = (bound - prev[axis]) / (point[axis] - prev[axis])
                crossing = prev + t * (point - prev)
                crossing[axis] = bound
                clipped.append(crossing)
            if point_in:
                clipped.append(point)
        points = np.asarray(clipped, dtype=np.float64).reshape(-1, 2)
    return points


class CropTransform(_FvcoreCropTransform):
    """fvcore's crop (``img[y0:y0+h, x0:x0+w]``), with polygons clipped to the crop window in
    numpy; a polygon entirely outside the window disappears."""

    def apply_polygons(self, polygons: list) -> list:
        out = []
        for polygon in polygons:
            clipped = clip_polygon(
                np.asarray(polygon, dtype=np.float64).reshape(-1, 2),
                self.x0,
                self.y0,
                self.x0 + self.w,
                self.y0 + self.h,
            )
            if len(clipped) >= 3:
                out.append(self.apply_coords(clipped))
        return out
