"""COCO run-length encoding (RLE) of instance masks.

Encoding goes through pycocotools. Decoding one instance into its bounding-box crop is done
here in numpy: pycocotools can only decode into a full (H, W) array, which on a dense image
(hundreds of nuclei on 600 x 1300 pixels) costs far more time and memory than the crops.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple, Union

import numpy as np
import pycocotools.mask as mask_util

from .cropped_masks import MaskCrop

RLE = Dict[str, Any]  # {"size": [H, W], "counts": str | bytes | list of run lengths}


def encode_mask(mask: np.ndarray) -> RLE:
    """Compressed RLE of an (H, W) mask (nonzero = inside): ``{"size": [H, W], "counts": str}``.

    ``counts`` is a str so that the dict is JSON-serialisable as it is.
    """
    rle = mask_util.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _crop_runs_in_image(crop: MaskCrop) -> Tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each foreground run of ``crop`` as positions in its image's
    column-major pixel order, sorted; runs that meet across a column boundary are joined.

    Each crop column, framed by a background pixel above and below, is a stretch of the
    image's column-major order: crop pixel (r, j) is image position ``(x0 + j) * H + y0 + r``.
    """
    height = crop.image_size[0]
    h, w = crop.mask.shape
    framed = np.zeros((w, h + 2), dtype=np.int8)
    framed[:, 1:-1] = crop.mask.T
    steps = np.diff(framed.reshape(-1))
    first = np.flatnonzero(steps == 1) + 1  # framed positions of each run's first pixel
    after_last = np.flatnonzero(steps == -1) + 1  # ... and of the pixel after its last one

    def to_image(position: np.ndarray) -> np.ndarray:
        column, row = np.divmod(position, h + 2)
        return (crop.x0 + column) * height + crop.y0 + row - 1

    starts, ends = to_image(first), to_image(after_last)
    if len(starts) == 0:
        return starts, ends
    apart = starts[1:] != ends[:-1]  # a column's run reaching the image's bottom continues at the next top
    return starts[np.r_[True, apart]], ends[np.r_[apart, True]]


def encode_crop(crop: MaskCrop) -> RLE:
    """Compressed RLE of ``crop`` placed in its (H, W) image: equal to
    ``encode_mask(crop.to_array())`` but computed from the crop alone, in time and memory of the
    crop's size, never the image's. ``counts`` is a str."""
    height, width = crop.image_size
    starts, ends = _crop_runs_in_image(crop)
    # Background, foreground, background, ...; pycocotools ends on the last non-empty run.
    counts = np.empty(2 * len(starts) + 1, dtype=np.int64)
    counts[0:-1:2] = starts - np.r_[0, ends[:-1]]
    counts[1::2] = ends - starts
    counts[-1] = height * width - (ends[-1] if len(ends) else 0)
    if len(ends) and counts[-1] == 0:
        counts = counts[:-1]
    return compress({"size": [height, width], "counts": counts.tolist()})


def compress(rle: RLE) -> RLE:
    """The compressed form (str counts) of a compressed or uncompressed (list counts) RLE."""
    counts = rle["counts"]
    if isinstance(counts, list):
        height, width = rle["size"]
        rle = mask_util.frPyObjects(rle, int(height), int(width))
        counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(s) for s in rle["size"]], "counts": counts}


def run_lengths(counts: Union[str, bytes, List[int]]) -> np.ndarray:
    """The run lengths (int64) of an RLE, alternately background and foreground, starting with
    background, in column-major pixel order.

    Compressed counts pack each number in 5-bit groups (least significant first) stored as
    ``chr(48 + group)``; bit 0x20 of a group says another group follows and bit 0x10 of the last
    group is the sign. From the fourth number on, each is stored as the difference from the
    number two places before it.
    """
    if isinstance(counts, list):
        return np.asarray(counts, dtype=np.int64)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    groups = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if groups.size == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero((groups & 0x20) == 0)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    position = np.arange(groups.size) - np.repeat(starts, lengths)
    values = np.add.reduceat((groups & 0x1F) << (5 * position), starts)
    negative = (groups[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * lengths[negative])
    values[1::2] = np.cumsum(values[1::2])
    values[2::2] = np.cumsum(values[2::2])
    return values


def decode_crop(rle: RLE) -> MaskCrop:
    """Decode one instance's RLE into the tight crop around its pixels.

    Costs time and memory in proportion to the image height times the mask's width, never the
    full image.
    """
    height, width = (int(s) for s in rle["size"])
    runs = run_lengths(rle["counts"])
    ends = np.cumsum(runs)
    num_fg = len(runs) // 2
    fg_start = ends[0 : 2 * num_fg : 2]
    fg_end = ends[1 : 2 * num_fg : 2]
    keep = fg_end > fg_start
    fg_start, fg_end = fg_start[keep], fg_end[keep]
    if len(fg_start) == 0:
        return MaskCrop.empty((height, width))
    if fg_end[-1] > height * width:
        raise ValueError(f"RLE runs cover {int(fg_end[-1])} pixels, more than its {height}x{width} size")
    first_col = int(fg_start[0] // height)
    last_col = int((fg_end[-1] - 1) // height)
    base = first_col * height
    span = (last_col - first_col + 1) * height
    edges = np.bincount(fg_start - base, minlength=span + 1) - np.bincount(fg_end - base, minlength=span + 1)
    columns = (np.cumsum(edges[:span]) > 0).reshape(last_col - first_col + 1, height)
    rows = np.flatnonzero(columns.any(axis=0))
    mask = np.ascontiguousarray(columns[:, rows[0] : rows[-1] + 1].T)
    return MaskCrop(mask, first_col, int(rows[0]), (height, width))


def rle_area_and_box(rle: RLE) -> Tuple[int, List[float]]:
    """Pixel count and tight XYWH box of a compressed RLE, without decoding it."""
    compressed = dict(rle)
    if isinstance(compressed["counts"], str):
        compressed["counts"] = compressed["counts"].encode("ascii")
    return int(mask_util.area(compressed)), [float(v) for v in mask_util.toBbox(compressed)]
