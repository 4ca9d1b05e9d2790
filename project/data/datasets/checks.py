"""Validation shared by the dataset loaders: each check returns the cleaned value or raises a
``BadAnnotationError`` naming the file, the item and what was expected."""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any, List, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ...structures.rle import RLE, compress
from ..bad_input import (
    KIND_BOX_OUTSIDE,
    KIND_CORRUPT_IMAGE,
    KIND_INVALID,
    KIND_MALFORMED_JSON,
    KIND_MASK_SIZE,
    KIND_MISSING_IMAGE,
    KIND_MISSING_MASK,
    KIND_SHORT_POLYGON,
    BadAnnotationError,
)

# How far (pixels) a box may stick out of its image: annotation tools round coordinates, and
# exports such as Roboflow's put box edges up to half a pixel outside.
BOX_TOLERANCE = 1.0


_ID_BEFORE = re.compile(r'"id"\s*:\s*(-?\d+)')


def load_json(path: str) -> Any:
    """Parse a JSON file. A syntax error becomes a ``BadAnnotationError`` giving the line and
    column, and the last ``"id"`` seen before the error (the annotation or image it is in)."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"annotation file {path} does not exist") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        ids = _ID_BEFORE.findall(text[: e.pos])
        near = f"after id {ids[-1]}" if ids else "before any id"
        raise BadAnnotationError(
            path, f"JSON line {e.lineno} column {e.colno} ({near})", f"malformed JSON: {e.msg}", KIND_MALFORMED_JSON
        ) from None


def check_image_file(path: str, item: str) -> None:
    """Raise unless the image file ``path`` exists."""
    if not os.path.isfile(path):
        raise BadAnnotationError(path, item, "image file does not exist", KIND_MISSING_IMAGE)


def read_mask_file(path: str, item: str) -> np.ndarray:
    """A mask or label PNG as an (H, W) array, keeping its bit depth; for a colour file, the
    pixel is foreground where any channel is nonzero."""
    if not os.path.isfile(path):
        raise BadAnnotationError(path, item, "mask file does not exist", KIND_MISSING_MASK)
    data = np.fromfile(path, dtype=np.uint8)
    mask = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if mask is None:
        raise BadAnnotationError(
            path, item, "cannot decode the mask file (corrupt or not an image)", KIND_CORRUPT_IMAGE
        )
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return mask


def check_mask_size(mask_shape: Tuple[int, ...], image_size: Tuple[int, int], file: str, item: str) -> None:
    """Raise unless a mask of ``mask_shape`` (H, W) matches its (H, W) image."""
    if tuple(mask_shape[:2]) != tuple(image_size):
        raise BadAnnotationError(
            file,
            item,
            f"mask is {mask_shape[0]}x{mask_shape[1]} (height x width) but its image is "
            f"{image_size[0]}x{image_size[1]}",
            KIND_MASK_SIZE,
        )


def read_image_size(path: str, item: str) -> Tuple[int, int]:
    """(height, width) from the image file's header, without decoding the pixels."""
    check_image_file(path, item)
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (UnidentifiedImageError, OSError) as e:
        raise BadAnnotationError(path, item, f"cannot read the image header ({e})", KIND_CORRUPT_IMAGE) from None
    return height, width


def _finite_numbers(values: Any) -> bool:
    return isinstance(values, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )


def check_box_xywh(box: Any, image_size: Tuple[int, int], file: str, item: str) -> List[float]:
    """A box ``[x, y, w, h]`` (absolute pixels) with positive size, inside the (H, W) image up to
    ``BOX_TOLERANCE``; returned as floats."""
    if not _finite_numbers(box) or len(box) != 4:
        raise BadAnnotationError(file, item, f"bbox must be 4 finite numbers [x, y, w, h], got {box!r}", KIND_INVALID)
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise BadAnnotationError(file, item, f"bbox {box} has no area (width and height must be > 0)", KIND_INVALID)
    height, width = image_size
    t = BOX_TOLERANCE
    if x < -t or y < -t or x + w > width + t or y + h > height + t:
        raise BadAnnotationError(
            file,
            item,
            f"bbox [x, y, w, h] = {box} lies outside the {width}x{height} (width x height) image",
            KIND_BOX_OUTSIDE,
        )
    return [x, y, w, h]


def points_box_xywh(points: Sequence[Sequence[float]]) -> List[float]:
    """Bounding box ``[x, y, w, h]`` of (x, y) points."""
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def check_polygon(polygon: Any, file: str, item: str) -> List[float]:
    """One flat polygon ``[x0, y0, x1, y1, ...]`` with at least 3 points."""
    if not _finite_numbers(polygon) or len(polygon) % 2:
        raise BadAnnotationError(
            file, item, "a polygon must be a flat list of an even number of finite coordinates", KIND_INVALID
        )
    if len(polygon) < 6:
        raise BadAnnotationError(
            file, item, f"polygon has {len(polygon) // 2} point(s); at least 3 are needed", KIND_SHORT_POLYGON
        )
    return [float(v) for v in polygon]


def check_rle(rle: Any, image_size: Tuple[int, int], file: str, item: str) -> RLE:
    """A compressed or uncompressed RLE of the image's size, returned compressed (str counts)."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise BadAnnotationError(file, item, "an RLE mask needs 'size' and 'counts'", KIND_INVALID)
    size = rle["size"]
    if not _finite_numbers(size) or len(size) != 2:
        raise BadAnnotationError(file, item, f"RLE 'size' must be [height, width], got {size!r}", KIND_INVALID)
    check_mask_size((int(size[0]), int(size[1])), image_size, file, item)
    try:
        return compress(rle)
    except (TypeError, ValueError) as e:
        raise BadAnnotationError(file, item, f"cannot read the RLE counts ({e})", KIND_INVALID) from None
