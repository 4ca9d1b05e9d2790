"""Merging tile detections (project.tiling.merge) on hand-built detections of two neighbouring
tiles, where the right answer is known by construction."""

from __future__ import annotations

import numpy as np

from project.structures import MaskCrop
from project.tiling.grid import TileGrid
from project.tiling.merge import TileDetections, merge_tile_detections

IMAGE = (100, 456)  # two tiles of 256 sharing columns 200..255
GRID = TileGrid(IMAGE, 256, 56)


def region(rows, cols):
    mask = np.zeros(IMAGE, dtype=bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def detections(tile, masks, scores):
    """What a model that sees only ``tile`` reports for the given true masks."""
    x0, y0, x1, y1 = tile.window
    crops, boxes = [], []
    for mask in masks:
        seen = np.zeros(IMAGE, dtype=bool)
        seen[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
        crop = MaskCrop.from_array(seen)
        crops.append(crop)
        boxes.append(crop.bounding_box())
    return TileDetections(tile, np.array(boxes, dtype=np.float64), np.array(scores), np.zeros(len(masks), int), crops)


def merged(masks_per_tile, scores_per_tile):
    tiles = [GRID[0, 0], GRID[0, 1]]
    dets = [detections(t, m, s) for t, m, s in zip(tiles, masks_per_tile, scores_per_tile)]
    return merge_tile_detections(dets, IMAGE, 256)


def test_grid_is_two_tiles_sharing_a_strip():
    assert GRID.shape == (1, 2)
    assert GRID[0, 0].window == (0, 0, 256, 100) and GRID[0, 1].window == (200, 0, 456, 100)


def test_a_cut_object_is_joined_and_its_touching_neighbour_is_not():
    """A thin object crossing the shared strip is cut by both tiles; a blob inside the strip,
    whose predicted mask spills two rows onto the thin one (as real masks spill over), is a
    different object. Matching the pieces by intersection over the smaller part would chain the
    blob to the thin object (80 of the thin piece's 112 strip pixels are under the blob)."""
    thin = region((10, 12), (150, 300))
    blob = region((10, 60), (210, 250))
    instances, report = merged([[thin, blob], [thin, blob]], [[0.9, 0.8], [0.85, 0.8]])
    assert len(instances) == 2
    assert report.objects_from_fragments == 1 and report.fragments_joined == 2
    masks = [c.to_array() for c in instances.pred_masks.crops]
    assert any(np.array_equal(m, thin) for m in masks), "the thin object is whole again"
    assert any(np.array_equal(m, blob) for m in masks), "the blob stays itself"
    assert sorted(instances.scores.tolist()) == [0.800000011920929, 0.8999999761581421]  # best piece's score


def test_each_tile_keeps_what_it_owns_and_duplicates_across_tiles_go():
    """An object wholly inside the shared strip is reported by both tiles; only the tile owning
    its box centre keeps it. Two detections of one object by different tiles that both keep it
    (centres on both sides of the middle) are one object after mask NMS."""
    left_owned = region((40, 50), (205, 215))  # centre x 210 < 228: the left tile's
    instances, report = merged([[left_owned]], [[0.7]])
    instances_both, _ = merged([[left_owned], [left_owned]], [[0.7], [0.6]])
    assert len(instances) == 1 and len(instances_both) == 1 and report.not_owned == 0
    assert instances_both.scores.tolist() == [0.699999988079071]
    # The same object seen a few pixels apart by the two tiles: centres straddle the middle.
    a, b = region((40, 60), (215, 240)), region((40, 60), (217, 242))
    straddling, report = merged([[a], [b]], [[0.9], [0.5]])
    assert report.suppressed == 1 and len(straddling) == 1
    assert np.array_equal(straddling.pred_masks.crops[0].to_array(), a)
