"""A whole image's instances as a tiled uint32 label TIFF, written one tile at a time.

The label image of a 100,000 px slide would need 40 GB as one array; here each tile is painted
from the few objects that reach it, compressed and written before the next, so memory holds one
tile plus the objects' mask crops. Tiles that no object reaches (most of a slide) are compressed
once and their bytes reused, so writing costs about the objects' pixels plus a little per tile.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple, Union

import numpy as np
import tifffile

from ..structures import CroppedBitMasks, Instances

# Classic TIFF addresses 4 GiB with 32-bit offsets; above this much pixel data (less a margin
# for tags and offset tables) the file is written as BigTIFF.
_CLASSIC_TIFF_DATA_LIMIT = 2**32 - 2**26
_ZLIB_LEVEL = 6
_LABEL_DTYPE = np.dtype("<u4")


@dataclass(frozen=True)
class _Object:
    """One object's tight mask: bool (h, w) covering rows ``y0 ..`` and columns ``x0 ..`` of the
    full-resolution image, drawn with value ``label``."""

    mask: np.ndarray
    x0: int
    y0: int
    label: int


def _painting_order(instances: Instances) -> List[_Object]:
    """The objects with a non-empty mask, in the order they are painted: decreasing score
    (ties and missing ``scores``: row order)."""
    masks = instances.pred_masks
    if not isinstance(masks, CroppedBitMasks):
        raise TypeError(
            f"write_label_tiff needs instances.pred_masks as CroppedBitMasks, got {type(masks).__name__}; "
            "paste a whole image's masks with project.structures.paste_masks_as_crops so that no "
            "full-image array is needed"
        )
    if instances.has("scores"):
        order = np.argsort(-instances.scores.detach().float().cpu().numpy(), kind="stable")
    else:
        order = np.arange(len(masks))
    objects = []
    for row in order.tolist():
        crop = masks.crops[row]
        rows = np.flatnonzero(crop.mask.any(axis=1))
        if len(rows) == 0:
            continue
        cols = np.flatnonzero(crop.mask.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        objects.append(_Object(crop.mask[r0:r1, c0:c1], crop.x0 + int(c0), crop.y0 + int(r0), row + 1))
    return objects


def _sampled_span(start: int, length: int, step: int) -> Tuple[int, int]:
    """The level indices ``[first, end)`` whose full-resolution position ``index * step`` lies
    in ``[start, start + length)``; empty (first >= end) when the span falls between samples."""
    return -(-start // step), -(-(start + length) // step)


def _bucket_by_tile(objects: List[_Object], step: int, tile_size: int, tile_cols: int) -> Dict[int, List[int]]:
    """For each tile (``row * tile_cols + col``) of the level sampled every ``step`` pixels, the
    indices into ``objects`` that reach it, in painting order."""
    buckets: Dict[int, List[int]] = {}
    for j, obj in enumerate(objects):
        h, w = obj.mask.shape
        r0, r1 = _sampled_span(obj.y0, h, step)
        c0, c1 = _sampled_span(obj.x0, w, step)
        if r0 >= r1 or c0 >= c1:
            continue
        for tile_row in range(r0 // tile_size, (r1 - 1) // tile_size + 1):
            for tile_col in range(c0 // tile_size, (c1 - 1) // tile_size + 1):
                buckets.setdefault(tile_row * tile_cols + tile_col, []).append(j)
    return buckets


def _paint_tile(
    tile: np.ndarray, top: int, left: int, step: int, objects: List[_Object], indices: List[int]
) -> List[int]:
    """Paint ``objects[indices]`` into ``tile``, the (T, T) block of the level sampled every
    ``step`` pixels whose top-left level pixel is ``(top, left)``; each object only onto pixels
    still 0. Returns the indices that got at least one pixel."""
    size = tile.shape[0]
    painted = []
    for j in indices:
        obj = objects[j]
        h, w = obj.mask.shape
        r0, r1 = _sampled_span(obj.y0, h, step)
        c0, c1 = _sampled_span(obj.x0, w, step)
        r0, r1 = max(r0, top), min(r1, top + size)
        c0, c1 = max(c0, left), min(c1, left + size)
        if r0 >= r1 or c0 >= c1:
            continue
        sampled = obj.mask[
            r0 * step - obj.y0 : (r1 - 1) * step - obj.y0 + 1 : step,
            c0 * step - obj.x0 : (c1 - 1) * step - obj.x0 + 1 : step,
        ]
        window = tile[r0 - top : r1 - top, c0 - left : c1 - left]
        paint = sampled & (window == 0)
        if paint.any():
            window[paint] = obj.label
            painted.append(j)
    return painted


def _encoder(compression: Optional[str]) -> Callable[[np.ndarray], bytes]:
    if compression is None:
        return lambda tile: tile.tobytes()
    if compression == "zlib":
        return lambda tile: zlib.compress(tile.tobytes(), _ZLIB_LEVEL)
    raise ValueError(f"compression must be 'zlib' or None, got {compression!r}")


def _level_tiles(
    objects: List[_Object],
    level_shape: Tuple[int, int],
    step: int,
    tile_size: int,
    encode: Callable[[np.ndarray], bytes],
    painted: Optional[Set[int]] = None,
) -> Iterator[bytes]:
    """The encoded (T, T) tiles of one level, row by row as TIFF stores them; adds to
    ``painted`` (when given) the indices of the objects that got pixels."""
    height, width = level_shape
    tile_rows, tile_cols = -(-height // tile_size), -(-width // tile_size)
    buckets = _bucket_by_tile(objects, step, tile_size, tile_cols)
    empty = encode(np.zeros((tile_size, tile_size), dtype=_LABEL_DTYPE))
    for tile_row in range(tile_rows):
        for tile_col in range(tile_cols):
            indices = buckets.get(tile_row * tile_cols + tile_col)
            if not indices:
                yield empty
                continue
            tile = np.zeros((tile_size, tile_size), dtype=_LABEL_DTYPE)
            hits = _paint_tile(tile, tile_row * tile_size, tile_col * tile_size, step, objects, indices)
            if painted is not None:
                painted.update(hits)
            yield encode(tile) if hits else empty


def write_label_tiff(
    path: Union[str, os.PathLike],
    instances: Instances,
    *,
    tile_size: int = 512,
    pyramid_levels: int = 0,
    compression: Optional[str] = "zlib",
) -> int:
    """Write ``instances`` of an (H, W) image as a uint32 instance-id label TIFF at ``path``.

    ``instances.pred_masks`` must be ``CroppedBitMasks``. The row ``i`` of ``instances`` has id
    ``i + 1`` on its mask pixels (the ``id`` of ``instances_to_geojson``); 0 is background. Where
    masks overlap, the higher-scoring object keeps the pixel (equal scores, or no ``scores``
    field: the earlier row), so an object covered by better ones may have no pixel at all.

    The file is tiled (``tile_size`` square tiles, a multiple of 16), ``compression`` ``"zlib"``
    (Adobe Deflate) or None, BigTIFF when the uncompressed pixels could pass 4 GiB.
    ``pyramid_levels`` more resolutions follow as SubIFDs of the first page (SubFileType 1):
    level k is (ceil(H / 2**k), ceil(W / 2**k)) with pixel (r, c) = the label at full-resolution
    pixel (r * 2**k, c * 2**k) (nearest, so ids stay exact). Every level is painted from the
    crops tile by tile; no (H, W) array is ever allocated.

    Returns the number of objects with at least one pixel in the full-resolution image.
    """
    height, width = instances.image_size
    if height <= 0 or width <= 0:
        raise ValueError(f"cannot write a label image of size {(height, width)}")
    if tile_size <= 0 or tile_size % 16:
        raise ValueError(f"tile_size must be a positive multiple of 16 (TIFF tiles), got {tile_size}")
    if pyramid_levels < 0:
        raise ValueError(f"pyramid_levels must be 0 or more, got {pyramid_levels}")
    if len(instances) >= np.iinfo(np.uint32).max:
        raise ValueError(f"{len(instances)} instances do not fit uint32 ids")
    encode = _encoder(compression)
    objects = _painting_order(instances)

    shapes = [(-(-height // 2**k), -(-width // 2**k)) for k in range(pyramid_levels + 1)]
    padded_bytes = sum(
        -(-h // tile_size) * -(-w // tile_size) * tile_size**2 * _LABEL_DTYPE.itemsize for h, w in shapes
    )
    painted: Set[int] = set()
    options = dict(
        dtype=_LABEL_DTYPE,
        tile=(tile_size, tile_size),
        compression=compression,
        photometric="minisblack",
        metadata=None,
    )
    with tifffile.TiffWriter(path, bigtiff=padded_bytes > _CLASSIC_TIFF_DATA_LIMIT, byteorder="<") as tif:
        tif.write(
            _level_tiles(objects, shapes[0], 1, tile_size, encode, painted),
            shape=shapes[0],
            subifds=pyramid_levels or None,
            description="instance labels: 0 background, id i + 1 on the mask of result row i",
            **options,
        )
        for k in range(1, pyramid_levels + 1):
            tiles = _level_tiles(objects, shapes[k], 2**k, tile_size, encode)
            tif.write(tiles, shape=shapes[k], subfiletype=1, **options)
    return len(painted)
