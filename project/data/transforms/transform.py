"""Deterministic transforms (fvcore ``Transform`` subclasses) that fvcore lacks or that we need
to behave differently: an OpenCV resize with pixel-centre nearest-neighbour masks, a crop
that clips polygons without shapely, a rotation, the extraction of a rectangle scaled to a
fixed size, and photometric transforms given as a function.

Coordinates follow fvcore: continuous, ``(0, 0)`` is the top-left corner of the top-left pixel
and an (H, W) image spans ``[0, W] x [0, H]``.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple, Union

import cv2
import numpy as np
from fvcore.transforms.transform import CropTransform as _FvcoreCropTransform
from fvcore.transforms.transform import NoOpTransform, Transform, TransformList
from PIL import Image

_CV2_INTERPOLATION = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
INTERPOLATIONS = tuple(_CV2_INTERPOLATION)
# Pillow's resampling constants, which Detectron2's transforms take, by our names.
_PIL_INTERPOLATION = {Image.NEAREST: "nearest", Image.BILINEAR: "bilinear", Image.BICUBIC: "bicubic"}


def interpolation_name(interp: Union[str, int]) -> str:
    """``interp`` as one of ``INTERPOLATIONS``: a name, or Pillow's constant for it
    (``Image.BILINEAR``, ...). Raises ``ValueError`` for anything else."""
    name = _PIL_INTERPOLATION.get(interp, interp) if not isinstance(interp, str) else interp
    if name not in INTERPOLATIONS:
        raise ValueError(f"interp must be one of {INTERPOLATIONS} (or Pillow's constant for one), got {interp!r}")
    return name


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

    def __init__(self, h: int, w: int, new_h: int, new_w: int, interp: Union[str, int] = "bilinear"):
        super().__init__()
        interp = interpolation_name(interp)
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray, interp: Union[str, int, None] = None) -> np.ndarray:
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(f"ResizeTransform expects a {self.h}x{self.w} image, got {img.shape[:2]}")
        if (self.new_h, self.new_w) == (self.h, self.w):
            return img
        interp = interpolation_name(self.interp if interp is None else interp)
        if interp == "nearest":
            return self.apply_segmentation(img)
        flag = _CV2_INTERPOLATION[interp]
        if interp == "bilinear" and self.new_h <= self.h and self.new_w <= self.w:
            flag = cv2.INTER_AREA
        return _keep_channel_axis(img, cv2.resize(img, (self.new_w, self.new_h), interpolation=flag))

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
    numpy; a polygon entirely outside the window disappears. Clipped polygons come out with a
    negative shoelace area in image coordinates, the orientation Detectron2's crop (through
    shapely) gives them."""

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
                out.append(self.apply_coords(_negatively_oriented(clipped)))
        return out


def _negatively_oriented(points: np.ndarray) -> np.ndarray:
    """The (N, 2) polygon ``points``, reversed if their shoelace area is positive."""
    x, y = points[:, 0], points[:, 1]
    twice_area = np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)
    return points[::-1] if twice_area > 0 else points


def _keep_channel_axis(source: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out`` with the single channel axis that OpenCV drops put back where ``source`` had one."""
    return out[:, :, None] if source.ndim == 3 and out.ndim == 2 else out


class ExtentTransform(Transform):
    """Cut the rectangle ``src_rect = (x0, y0, x1, y1)`` (continuous coordinates, it may reach
    beyond the image) out of the image and scale it to ``output_size = (h, w)``; what lies
    outside the image becomes ``fill``. ``interp`` is a name of ``INTERPOLATIONS`` or Pillow's
    constant for it; segmentations always use "nearest"."""

    def __init__(
        self,
        src_rect: Tuple[float, float, float, float],
        output_size: Tuple[int, int],
        interp: Union[str, int] = "bilinear",
        fill: float = 0,
    ):
        super().__init__()
        interp = interpolation_name(interp)
        self._set_attributes(locals())

    def _scale(self) -> Tuple[float, float]:
        x0, y0, x1, y1 = self.src_rect
        h, w = self.output_size
        return w / (x1 - x0), h / (y1 - y0)

    def apply_image(self, img: np.ndarray, interp: Union[str, int, None] = None) -> np.ndarray:
        interp = interpolation_name(self.interp if interp is None else interp)
        sx, sy = self._scale()
        x0, y0 = self.src_rect[:2]
        # OpenCV indexes pixel centres: pixel u spans [u, u + 1) in continuous coordinates.
        matrix = np.array([[sx, 0.0, (0.5 - x0) * sx - 0.5], [0.0, sy, (0.5 - y0) * sy - 0.5]])
        h, w = self.output_size
        out = cv2.warpAffine(
            img,
            matrix,
            (int(w), int(h)),
            flags=_CV2_INTERPOLATION[interp],
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(self.fill,) * 4,
        )
        return _keep_channel_axis(img, out)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """(N, 2) ``(x, y)`` points moved with the rectangle's corner to the origin and scaled
        (a new float array)."""
        sx, sy = self._scale()
        moved = np.asarray(coords, dtype=np.float64) - np.asarray(self.src_rect[:2], dtype=np.float64)
        return moved * np.array([sx, sy])

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation, interp="nearest")


def _opencv_flag(interp: Union[str, int, None]) -> int:
    """An OpenCV interpolation flag: ``interp`` itself when it is one, the flag of a name of
    ``INTERPOLATIONS``, bilinear for None."""
    if interp is None:
        return cv2.INTER_LINEAR
    return _CV2_INTERPOLATION[interpolation_name(interp)] if isinstance(interp, str) else int(interp)


class RotationTransform(Transform):
    """Turn an (``h``, ``w``) image by ``angle`` degrees counter-clockwise (as it is seen on
    screen) about ``center = (x, y)``, by default the image centre.

    With ``expand`` (default) the output is large enough for the whole turned image, which sits
    in its middle (``center`` then changes nothing); without it the output keeps the input's size
    and the corners that leave it are lost. Pixels the image does not cover are 0. ``interp`` is
    an OpenCV flag or a name of ``INTERPOLATIONS`` (None: bilinear); segmentations use nearest.
    """

    def __init__(
        self,
        h: int,
        w: int,
        angle: float,
        expand: bool = True,
        center: Optional[Tuple[float, float]] = None,
        interp: Union[str, int, None] = None,
    ):
        super().__init__()
        self.h, self.w, self.angle, self.expand, self.center, self.interp = h, w, angle, expand, center, interp
        cos, sin = abs(np.cos(np.deg2rad(angle))), abs(np.sin(np.deg2rad(angle)))
        self.bound_w, self.bound_h = (
            (int(v) for v in np.rint([w * cos + h * sin, w * sin + h * cos])) if expand else (w, h)
        )
        self.matrix = self._coordinate_matrix()

    def _coordinate_matrix(self) -> np.ndarray:
        """The 2x3 affine map of continuous ``(x, y)`` coordinates."""
        image_centre = np.array([self.w / 2, self.h / 2])
        pivot = image_centre if self.expand or self.center is None else np.asarray(self.center, dtype=np.float64)
        matrix = cv2.getRotationMatrix2D((float(pivot[0]), float(pivot[1])), float(self.angle), 1.0)
        if self.expand:  # move the image centre, which the turn keeps, to the output's centre
            matrix[:, 2] += np.array([self.bound_w / 2, self.bound_h / 2]) - image_centre
        return matrix

    def _turns(self) -> bool:
        return self.angle % 360 != 0

    def apply_image(self, img: np.ndarray, interp: Union[str, int, None] = None) -> np.ndarray:
        if img.size == 0 or not self._turns():
            return img
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(f"RotationTransform expects a {self.h}x{self.w} image, got {img.shape[:2]}")
        # OpenCV addresses pixel centres (continuous coordinate minus 0.5) on both sides.
        pixel_matrix = self.matrix.copy()
        pixel_matrix[:, 2] += self.matrix[:, :2].sum(axis=1) * 0.5 - 0.5
        flag = _opencv_flag(self.interp if interp is None else interp)
        return _keep_channel_axis(img, cv2.warpAffine(img, pixel_matrix, (self.bound_w, self.bound_h), flags=flag))

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """(N, 2) ``(x, y)`` points turned with the image (a new float array)."""
        coords = np.asarray(coords, dtype=np.float64)
        if len(coords) == 0 or not self._turns():
            return coords
        return coords @ self.matrix[:, :2].T + self.matrix[:, 2]

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation, interp=cv2.INTER_NEAREST)

    def inverse(self) -> Transform:
        """The turn back (expanding again), then the crop of the original size from the middle.
        Without ``expand`` the lost corners make it impossible: ``NotImplementedError``."""
        if not self.expand:
            raise NotImplementedError("a rotation without expand loses the corners and cannot be undone")
        back = RotationTransform(self.bound_h, self.bound_w, -self.angle, True, None, self.interp)
        left, top = (back.bound_w - self.w) // 2, (back.bound_h - self.h) // 2
        return TransformList([back, CropTransform(left, top, self.w, self.h)])


class ColorTransform(Transform):
    """A photometric transform: ``op`` maps an image array to an image array of the same
    shape; coordinates and segmentations stay as they are."""

    def __init__(self, op: Callable[[np.ndarray], np.ndarray]):
        if not callable(op):
            raise ValueError(f"ColorTransform needs a callable op, got {op!r}")
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self.op(img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def inverse(self) -> Transform:
        return NoOpTransform()


class PILColorTransform(ColorTransform):
    """A ``ColorTransform`` whose ``op`` takes and returns a Pillow image (``ImageOps``,
    ``ImageEnhance`` functions, ...); the image array goes through ``Image.fromarray``."""

    def __init__(self, op: Callable[[Any], Any]):
        super().__init__(op)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return np.asarray(self.op(Image.fromarray(img)))
