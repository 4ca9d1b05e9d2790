"""Merging the detections of overlapping tiles into one set of whole objects.

Three steps, each on masks kept as crops (memory grows with the number of objects, not with the
image area):

1. Ownership: a tile keeps the detections whose box centre lies in the part of the image it owns
   (``TileGrid``). An object no larger than the overlap is seen whole by the tile owning its
   centre and reported by that tile alone.
2. Joining: an object larger than the overlap may be cut by tile borders into fragments kept by
   several tiles. Both tiles see the pixels they share, so two fragments of one object cover the
   same pixels there. A fragment touching an inner tile border is joined with each detection of
   the same class from another tile whose mask matches it where the two tiles overlap (IoU of
   the two masks' parts there at least ``join_threshold``); joined fragments become one object:
   the union of their masks and boxes, the best score. (Intersection over the smaller part, the
   usual alternative, joins distinct neighbours: a fragment reaching a pixel or two into the
   shared strip is "covered" by whatever touches it there.)
3. Safety net: mask NMS between objects of different tiles (mask IoU above ``nms_threshold``,
   same class: the lower score goes).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Sequence, Set, Tuple

import numpy as np
import torch

from ..structures import Boxes, CroppedBitMasks, Instances, MaskCrop, intersection_area, mask_iou, union_of_crops
from .grid import Tile

Window = Tuple[int, int, int, int]


@dataclass
class TileDetections:
    """One tile's detections in whole-image coordinates: ``boxes`` (N, 4) XYXY pixels,
    ``scores`` (N,), ``classes`` (N,) and ``masks`` (N crops of the whole image)."""

    tile: Tile
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: List[MaskCrop]

    @staticmethod
    def from_instances(tile: Tile, instances: Instances, image_size: Tuple[int, int]) -> TileDetections:
        """Detections the model made on ``tile``'s window (coordinates of the window) moved into
        the image of ``image_size``; ``pred_masks`` must be a ``CroppedBitMasks``."""
        x0, y0 = tile.window[:2]
        boxes = instances.pred_boxes.tensor.detach().cpu().double().numpy() + np.array([x0, y0, x0, y0])
        masks = [crop.moved(x0, y0, image_size) for crop in instances.pred_masks.crops]
        return TileDetections(
            tile,
            boxes,
            instances.scores.detach().cpu().numpy(),
            instances.pred_classes.detach().cpu().numpy(),
            masks,
        )


@dataclass
class MergeReport:
    """What merging did: detections made by the tiles, those left to the tile owning their
    centre, fragments joined into objects, duplicates removed by mask NMS, objects kept."""

    detections: int = 0
    not_owned: int = 0
    fragments_joined: int = 0
    objects_from_fragments: int = 0
    suppressed: int = 0
    objects: int = 0

    def as_dict(self) -> Dict[str, int]:
        return dict(self.__dict__)


class _BoxIndex:
    """Boxes bucketed on a square grid of ``cell`` pixels, for finding the boxes that meet one."""

    def __init__(self, cell: int):
        self.cell = max(int(cell), 1)
        self.buckets: Dict[Tuple[int, int], List[int]] = defaultdict(list)

    def _cells(self, box: np.ndarray) -> Iterable[Tuple[int, int]]:
        c0, r0 = int(box[0] // self.cell), int(box[1] // self.cell)
        c1, r1 = int(math.ceil(box[2] / self.cell)), int(math.ceil(box[3] / self.cell))
        return ((r, c) for r in range(r0, max(r1, r0 + 1)) for c in range(c0, max(c1, c0 + 1)))

    def add(self, index: int, box: np.ndarray) -> None:
        for key in self._cells(box):
            self.buckets[key].append(index)

    def meeting(self, box: np.ndarray) -> Set[int]:
        return {i for key in self._cells(box) for i in self.buckets.get(key, ())}


def _boxes_meet(a: np.ndarray, b: np.ndarray) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _common(a: Window, b: Window) -> Window:
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def _is_cut(box: np.ndarray, window: Window, image_size: Tuple[int, int], margin: float) -> bool:
    """Whether ``box`` reaches an edge of its tile's ``window`` that lies inside the image."""
    height, width = image_size
    x0, y0, x1, y1 = window
    return bool(
        (x0 > 0 and box[0] <= x0 + margin)
        or (y0 > 0 and box[1] <= y0 + margin)
        or (x1 < width and box[2] >= x1 - margin)
        or (y1 < height and box[3] >= y1 - margin)
    )


@dataclass
class _Objects:
    """Flat lists of the objects being merged, with the tiles each came from."""

    boxes: List[np.ndarray] = field(default_factory=list)
    scores: List[float] = field(default_factory=list)
    classes: List[int] = field(default_factory=list)
    masks: List[MaskCrop] = field(default_factory=list)
    tiles: List[frozenset] = field(default_factory=list)

    def append(self, box, score, cls, mask, tiles) -> None:
        self.boxes.append(np.asarray(box, dtype=np.float64))
        self.scores.append(float(score))
        self.classes.append(int(cls))
        self.masks.append(mask)
        self.tiles.append(tiles)


def _find(parent: List[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _join_fragments(
    owned: _Objects, windows: Dict[Tuple[int, int], Window], cut: List[bool], cell: int, threshold: float
) -> Tuple[_Objects, int, int]:
    """Join cut fragments with the detections of other tiles covering the same pixels; returns
    the objects and how many fragments went into how many joined objects."""
    index = _BoxIndex(cell)
    for i, box in enumerate(owned.boxes):
        index.add(i, box)
    parent = list(range(len(owned.boxes)))
    for i in (i for i, is_cut in enumerate(cut) if is_cut):
        (tile_i,) = owned.tiles[i]
        for j in index.meeting(owned.boxes[i]):
            (tile_j,) = owned.tiles[j]
            if tile_j == tile_i or owned.classes[j] != owned.classes[i]:
                continue
            if not _boxes_meet(owned.boxes[i], owned.boxes[j]) or _find(parent, i) == _find(parent, j):
                continue
            shared = _common(windows[tile_i], windows[tile_j])
            part_i = np.count_nonzero(owned.masks[i].part_in(shared))
            part_j = np.count_nonzero(owned.masks[j].part_in(shared))
            if min(part_i, part_j) == 0:
                continue
            inter = intersection_area(owned.masks[i], owned.masks[j], shared)
            if inter >= threshold * (part_i + part_j - inter):
                parent[_find(parent, j)] = _find(parent, i)
    groups: Dict[int, List[int]] = defaultdict(list)
    for i in range(len(parent)):
        groups[_find(parent, i)].append(i)
    joined = _Objects()
    fragments = objects = 0
    for members in groups.values():
        if len(members) > 1:
            fragments += len(members)
            objects += 1
        boxes = np.stack([owned.boxes[m] for m in members])
        joined.append(
            np.concatenate([boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)]),
            max(owned.scores[m] for m in members),
            owned.classes[members[0]],
            owned.masks[members[0]] if len(members) == 1 else union_of_crops([owned.masks[m] for m in members]),
            frozenset().union(*(owned.tiles[m] for m in members)),
        )
    return joined, fragments, objects


def _suppress_duplicates(objects: _Objects, cell: int, threshold: float) -> Tuple[List[int], int]:
    """Indices of the objects kept by mask NMS across tiles, best score first."""
    order = sorted(range(len(objects.scores)), key=lambda i: -objects.scores[i])
    index = _BoxIndex(cell)
    kept: List[int] = []
    suppressed = 0
    for i in order:
        duplicate = False
        for j in index.meeting(objects.boxes[i]):
            same_tile_only = objects.tiles[i] == objects.tiles[j] and len(objects.tiles[i]) == 1
            if same_tile_only or objects.classes[j] != objects.classes[i]:
                continue  # within a tile the model's own NMS decided
            if (
                _boxes_meet(objects.boxes[i], objects.boxes[j])
                and mask_iou(objects.masks[i], objects.masks[j]) > threshold
            ):
                duplicate = True
                break
        if duplicate:
            suppressed += 1
            continue
        kept.append(i)
        index.add(i, objects.boxes[i])
    return kept, suppressed


def merge_tile_detections(
    tile_detections: Sequence[TileDetections],
    image_size: Tuple[int, int],
    tile_size: int,
    join_threshold: float = 0.5,
    nms_threshold: float = 0.5,
    border_margin: float = 2.0,
) -> Tuple[Instances, MergeReport]:
    """Merge the detections of the tiles of a ``TileGrid`` over an image of ``image_size =
    (H, W)`` (``tile_size`` in image pixels) into ``Instances`` of the whole image, best score
    first: ``pred_boxes``, ``scores``, ``pred_classes`` and ``pred_masks`` (``CroppedBitMasks``).
    ``border_margin`` (pixels) is how close to an inner tile edge a box must come to count as cut.
    """
    report = MergeReport()
    owned = _Objects()
    cut: List[bool] = []
    windows: Dict[Tuple[int, int], Window] = {}
    for det in tile_detections:
        key = (det.tile.row, det.tile.col)
        windows[key] = det.tile.window
        report.detections += len(det.scores)
        for box, score, cls, mask in zip(det.boxes, det.scores, det.classes, det.masks):
            if not det.tile.owns_point((box[0] + box[2]) / 2, (box[1] + box[3]) / 2):
                report.not_owned += 1
                continue
            owned.append(box, score, cls, mask, frozenset([key]))
            cut.append(_is_cut(box, det.tile.window, image_size, border_margin))
    objects, report.fragments_joined, report.objects_from_fragments = _join_fragments(
        owned, windows, cut, tile_size, join_threshold
    )
    kept, report.suppressed = _suppress_duplicates(objects, tile_size, nms_threshold)
    report.objects = len(kept)
    result = Instances(image_size)
    result.pred_boxes = Boxes(
        torch.tensor(np.array([objects.boxes[i] for i in kept]).reshape(-1, 4), dtype=torch.float32)
    )
    result.scores = torch.tensor([objects.scores[i] for i in kept], dtype=torch.float32)
    result.pred_classes = torch.tensor([objects.classes[i] for i in kept], dtype=torch.int64)
    result.pred_masks = CroppedBitMasks([objects.masks[i] for i in kept], image_size)
    return result, report
