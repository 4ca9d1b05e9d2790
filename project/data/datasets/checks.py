"""Validation shared by the dataset loaders: each check returns the cleaned value or raises a
``BadAnnotationError`` naming the file, the item and what was expected."""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ...structures.rle import RLE, compress, rle_area_and_box
from ..bad_input import (
    KIND_BOX_OUTSIDE,
    KIND_CORRUPT_IMAGE,
    KIND_IMAGE_SIZE,
    KIND_INVALID,
    KIND_MALFORMED_JSON,
    KIND_MASK_BOX,
    KIND_MASK_SIZE,
    KIND_MISSING_IMAGE,
    KIND_MISSING_MASK,
    KIND_SHORT_POLYGON,
    BadAnnotationError,
)

# How far (pixels) a box may stick out of its image: annotation tools round coordinates, and
# exports such as Roboflow's put box edges up to half a pixel outside.
BOX_TOLERANCE = 1.0
# A mask and its box disagree when the mask's bounding box overlaps the box with an IoU below
# this and some edge of the two lies more than BOX_TOLERANCE apart. On the real datasets the
# lowest IoU is 0.64 (COAD: 2-pixel-wide polygons whose Roboflow boxes start on whole pixels);
# DSB2018, Penn-Fudan (converted) and COCO give 1.0.
MASK_BOX_MIN_IOU = 0.5
# EXIF orientations that turn the image a quarter: its decoded height is the stored width.
_QUARTER_TURNS = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112


_ID_BEFORE = re.compile(r'"id"\s*:\s*(-?\d+)')


def load_json(path: str) -> Any:
    """Parse a JSON file. A missing file raises ``FileNotFoundError``; one that cannot be read or
    is not UTF-8 text, a ``BadAnnotationError``; so does a syntax error, giving the line and
    column, and the last ``"id"`` seen before the error (the annotation or image it is in)."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"annotation file {path} does not exist") from e
    except OSError as e:  # a folder, no permission, ...
        raise BadAnnotationError(
            path, "annotation file", f"cannot be read ({e.strerror or e})", KIND_MALFORMED_JSON
        ) from None
    except UnicodeDecodeError as e:
        raise BadAnnotationError(
            path,
            "annotation file",
            f"is not UTF-8 text, so no JSON ({e.reason} at byte {e.start})",
            KIND_MALFORMED_JSON,
        ) from None
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


def _exif_orientation(image: Image.Image) -> Optional[int]:
    """The EXIF orientation in the image's header, if any (None also for unreadable EXIF data,
    which does not keep the pixels from decoding)."""
    raw = image.info.get("exif")
    if not raw:
        return None
    exif = Image.Exif()
    try:
        exif.load(raw)
    except (SyntaxError, ValueError, OSError):
        return None
    return exif.get(_EXIF_ORIENTATION)


def _decoded_size(image: Image.Image) -> Tuple[int, int]:
    """(height, width) of the image once decoded the way ``read_image`` does: OpenCV turns it
    upright by the EXIF orientation that the file's header carries."""
    width, height = image.size
    return (width, height) if _exif_orientation(image) in _QUARTER_TURNS else (height, width)


def read_image_size(path: str, item: str) -> Tuple[int, int]:
    """(height, width) of the image file ``path`` as ``read_image`` decodes it (EXIF orientation
    applied), from the file's header alone: a missing file, or one whose header is not an
    image's (empty, truncated before its size, text), raises ``BadAnnotationError``."""
    check_image_file(path, item)
    try:
        with Image.open(path) as im:
            return _decoded_size(im)
    except Image.DecompressionBombError as e:
        raise BadAnnotationError(
            path,
            item,
            f"the image has more pixels than PIL reads by default ({e}); if the file is genuine, raise "
            "PIL.Image.MAX_IMAGE_PIXELS before loading the dataset",
            KIND_CORRUPT_IMAGE,
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        detail = "" if isinstance(e, UnidentifiedImageError) else f" ({e})"  # PIL's message repeats the path
        raise BadAnnotationError(
            path,
            item,
            f"cannot read the image header{detail}: the file is empty, no image or damaged; replace it, or "
            "remove the image from the annotations",
            KIND_CORRUPT_IMAGE,
        ) from None


def check_image_header(path: str, item: str, expected_size: Tuple[int, int]) -> None:
    """Raise unless the header of image file ``path`` reads and gives ``expected_size``
    (height, width), the size its annotations are for; a different size usually means a wrong
    file. Only the header is read (no pixel is decoded)."""
    size = read_image_size(path, item)
    if tuple(size) != tuple(expected_size):
        raise BadAnnotationError(
            path,
            item,
            f"the image is {size[0]}x{size[1]} (height x width) but its annotations say "
            f"{expected_size[0]}x{expected_size[1]}; check that this is the right file, and replace it or "
            "correct the annotated size",
            KIND_IMAGE_SIZE,
        )


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


def check_points(points: Any, file: str, item: str) -> List[Tuple[float, float]]:
    """A list of (x, y) points, each a pair of finite numbers, returned as floats."""
    if not isinstance(points, list) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 and _finite_numbers(p) for p in points
    ):
        raise BadAnnotationError(file, item, "'points' must be a list of [x, y] pairs of finite numbers", KIND_INVALID)
    return [(float(x), float(y)) for x, y in points]


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
    counts = rle["counts"]
    if not isinstance(counts, (str, bytes, list)) or (
        isinstance(counts, list) and not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts)
    ):
        raise BadAnnotationError(
            file, item, "RLE 'counts' must be a string (compressed) or a list of run lengths >= 0", KIND_INVALID
        )
    try:
        return compress(rle)
    except (TypeError, ValueError) as e:
        raise BadAnnotationError(file, item, f"cannot read the RLE counts ({e})", KIND_INVALID) from None


def _corners(box: Sequence[float]) -> Tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of an ``[x, y, w, h]`` box."""
    x, y, w, h = box
    return x, y, x + w, y + h


def _box_iou_xywh(a: Sequence[float], b: Sequence[float]) -> float:
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _corners(a), _corners(b)
    overlap = max(min(ax1, bx1) - max(ax0, bx0), 0.0) * max(min(ay1, by1) - max(ay0, by0), 0.0)
    union = a[2] * a[3] + b[2] * b[3] - overlap
    return overlap / union if union > 0 else 0.0


def _max_edge_gap(a: Sequence[float], b: Sequence[float]) -> float:
    """The largest distance between corresponding edges of two ``[x, y, w, h]`` boxes."""
    return max(abs(p - q) for p, q in zip(_corners(a), _corners(b)))


def segmentation_box_xywh(segmentation: Any) -> List[float]:
    """Tight ``[x, y, w, h]`` of a checked segmentation: a compressed RLE (pixel extents) or a
    list of flat polygons (extents of their points)."""
    if isinstance(segmentation, dict):
        return rle_area_and_box(segmentation)[1]
    xs = [float(x) for polygon in segmentation for x in polygon[0::2]]
    ys = [float(y) for polygon in segmentation for y in polygon[1::2]]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _clip_xywh(box: Sequence[float], image_size: Tuple[int, int]) -> List[float]:
    """The part of an ``[x, y, w, h]`` box inside an (H, W) image (zero size when outside)."""
    height, width = image_size
    x0, y0, x1, y1 = _corners(box)
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    return [x0, y0, x1 - x0, y1 - y0]


def check_mask_box(segmentation: Any, box: Sequence[float], image_size: Tuple[int, int], file: str, item: str) -> None:
    """Raise unless the mask ``segmentation`` (checked RLE or polygons) lies where its box
    ``[x, y, w, h]`` says: its own bounding box, inside the (H, W) image (an object cut by the
    image border has a polygon reaching outside it, and a box of its visible part), must overlap
    the box with an IoU of at least ``MASK_BOX_MIN_IOU``, or match it within ``BOX_TOLERANCE``
    pixels at every edge."""
    mask_box = _clip_xywh(segmentation_box_xywh(segmentation), image_size)
    iou = _box_iou_xywh(mask_box, box)
    if iou >= MASK_BOX_MIN_IOU or _max_edge_gap(mask_box, box) <= BOX_TOLERANCE:
        return
    where = (
        "is empty" if mask_box[2] == mask_box[3] == 0 else f"lies at [x, y, w, h] = {[round(v, 1) for v in mask_box]}"
    )
    raise BadAnnotationError(
        file,
        item,
        f"the mask {where} but its bbox says {list(box)} (IoU {iou:.2f}, below {MASK_BOX_MIN_IOU}); "
        "the segmentation and the bbox must describe the same object",
        KIND_MASK_BOX,
    )
