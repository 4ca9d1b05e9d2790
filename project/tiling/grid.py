"""Cutting an image into overlapping tiles, and which part of the image each tile answers for.

Coordinates are image pixels: x is the column, y the row, and a window ``(x0, y0, x1, y1)`` covers
columns ``x0 .. x1 - 1`` and rows ``y0 .. y1 - 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, List, Tuple


def tile_starts(length: int, tile: int, overlap: int) -> List[int]:
    """Start offsets of the fewest tiles of ``tile`` pixels covering ``0 .. length - 1`` with
    neighbours sharing at least ``overlap`` pixels: the first starts at 0, the last ends at the
    image edge and the others are spread evenly between (so neighbours may share a few pixels
    more than ``overlap``). One tile of the whole length when ``length <= tile``."""
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"tiles need size > 0 and 0 <= overlap < size, got size {tile}, overlap {overlap}")
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _owned_ranges(starts: List[int], tile: int, length: int) -> List[Tuple[float, float]]:
    """Each tile's share ``[lo, hi)`` of ``0 .. length``: neighbours split their common pixels at the
    middle, the first and last tiles reach the image edges."""
    ends = [min(s + tile, length) for s in starts]
    cuts = [0.0] + [(starts[i + 1] + ends[i]) / 2 for i in range(len(starts) - 1)] + [float(length)]
    return list(zip(cuts[:-1], cuts[1:]))


@dataclass(frozen=True)
class Tile:
    """One tile: its window in the image, its grid position, and the part of the image it owns
    (``owned``, a float ``(x0, y0, x1, y1)`` window; the owned windows of a grid partition the
    image)."""

    row: int
    col: int
    window: Tuple[int, int, int, int]
    owned: Tuple[float, float, float, float]

    def owns_point(self, x: float, y: float) -> bool:
        x0, y0, x1, y1 = self.owned
        return x0 <= x < x1 and y0 <= y < y1


class TileGrid:
    """Overlapping ``tile x tile`` windows over an image of ``(height, width)`` pixels, in raster
    order (row by row). Images smaller than a tile along an axis get one tile of their size there.

    An object no wider and no taller than ``overlap`` lies whole inside the tile that owns its
    centre, so a model that finds it there reports it uncut."""

    def __init__(self, image_size: Tuple[int, int], tile: int, overlap: int):
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.tile, self.overlap = int(tile), int(overlap)
        height, width = self.image_size
        self.row_starts = tile_starts(height, self.tile, self.overlap)
        self.col_starts = tile_starts(width, self.tile, self.overlap)
        rows = _owned_ranges(self.row_starts, self.tile, height)
        cols = _owned_ranges(self.col_starts, self.tile, width)
        self.tiles = [
            Tile(
                r,
                c,
                (x, y, min(x + self.tile, width), min(y + self.tile, height)),
                (cols[c][0], rows[r][0], cols[c][1], rows[r][1]),
            )
            for r, y in enumerate(self.row_starts)
            for c, x in enumerate(self.col_starts)
        ]

    @property
    def shape(self) -> Tuple[int, int]:
        """Tiles per column and per row: ``(rows, cols)``."""
        return len(self.row_starts), len(self.col_starts)

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self) -> Iterator[Tile]:
        return iter(self.tiles)

    def __getitem__(self, row_col: Tuple[int, int]) -> Tile:
        row, col = row_col
        return self.tiles[row * len(self.col_starts) + col]

    def neighbour_pairs(self) -> Iterator[Tuple[Tile, Tile]]:
        """Every pair of tiles whose windows share pixels (side and corner neighbours; also tiles
        further apart when the overlap is more than half a tile), each once."""
        row_reach = _overlapping_index_pairs(self.row_starts, self.tile, self.image_size[0])
        col_reach = _overlapping_index_pairs(self.col_starts, self.tile, self.image_size[1])
        rows = [(i, i) for i in range(len(self.row_starts))] + row_reach
        cols = [(j, j) for j in range(len(self.col_starts))] + col_reach
        for r_a, r_b in rows:
            for c_a, c_b in cols:
                if (r_a, c_a) == (r_b, c_b):
                    continue
                yield self[r_a, c_a], self[r_b, c_b]
                if r_a != r_b and c_a != c_b:  # the other diagonal
                    yield self[r_a, c_b], self[r_b, c_a]


def _overlapping_index_pairs(starts: List[int], tile: int, length: int) -> List[Tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of tiles along one axis whose ranges share pixels."""
    return [
        (i, j)
        for i in range(len(starts))
        for j in range(i + 1, len(starts))
        if starts[j] < min(starts[i] + tile, length)
    ]
