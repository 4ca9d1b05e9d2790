"""Tiled inference across tile seams: objects placed on tile borders and corners, larger than the
overlap and longer than a tile, come out exactly once with their whole masks.

The detector is tests/blob_detector.py's BrightBlobs, which reports each bright blob it sees with
its exact mask: objects cut by a tile border come out as fragments, and run untiled it gives
each object's true mask, the reference.
"""

from __future__ import annotations

import blob_detector
import cv2
import numpy as np
import pytest
import torch

from project.config import get_cfg
from project.engine.tiled_predictor import TiledPredictor
from project.structures import MaskCrop, mask_iou
from project.tiling.grid import TileGrid, tile_starts

TILE, OVERLAP = 256, 48


def _blob(shape, center, radii, angle):
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.ellipse(mask, (int(center[0]), int(center[1])), (int(radii[0]), int(radii[1])), angle, 0, 360, 1, -1)
    return mask.astype(bool)


def seam_scene(height=900, width=1100, seed=0):
    """A dark BGR image with bright, separate objects centred on tile borders, on tile corners,
    wider than the overlap, and one bar longer than a tile; returns it with the true masks."""
    rng = np.random.default_rng(seed)
    grid = TileGrid((height, width), TILE, OVERLAP)
    xs = [s for s in grid.col_starts[1:]] + [s + TILE for s in grid.col_starts[:-1]]
    ys = [s for s in grid.row_starts[1:]] + [s + TILE for s in grid.row_starts[:-1]]
    wanted = [(x, rng.uniform(30, height - 30), rng.uniform(5, 40)) for x in xs for _ in range(3)]
    wanted += [(rng.uniform(30, width - 30), y, rng.uniform(5, 40)) for y in ys for _ in range(3)]
    wanted += [(x, y, rng.uniform(5, 70)) for x in xs for y in ys]  # corners, some wider than the overlap
    wanted += [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(3, 25)) for _ in range(40)]
    taken = np.zeros((height, width), dtype=bool)
    masks = []
    bar = np.zeros((height, width), dtype=bool)
    bar[430:446, 60:1040] = True  # crosses four tiles along a row
    for candidate in [bar] + [
        _blob((height, width), (x, y), (r, r * rng.uniform(0.5, 1.0)), rng.uniform(0, 180)) for x, y, r in wanted
    ]:
        grown = cv2.dilate(candidate.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        if candidate.any() and not (grown & taken).any():
            masks.append(candidate)
            taken |= grown
    image = np.full((height, width, 3), 20, dtype=np.uint8)
    for i, mask in enumerate(masks):
        image[mask] = 150 + (i * 7) % 100
    return image, masks


@pytest.fixture(scope="module")
def blob_cfg():
    cfg = get_cfg(["MODEL.DEVICE=cpu", "MODEL.WEIGHTS="])
    cfg.MODEL.META_ARCHITECTURE = blob_detector.NAME
    return cfg


def test_tiles_cover_the_image_with_the_overlap_asked_for():
    for length in (1, 255, 256, 257, 700, 1000, 4099):
        starts = tile_starts(length, TILE, OVERLAP)
        ends = [min(s + TILE, length) for s in starts]
        assert starts[0] == 0 and ends[-1] == length
        assert all(ends[i] - starts[i + 1] >= OVERLAP for i in range(len(starts) - 1))
        assert len(starts) == 1 or len(starts) == int(np.ceil((length - OVERLAP) / (TILE - OVERLAP)))
    grid = TileGrid((700, 1000), TILE, OVERLAP)
    owners = np.zeros((700, 1000), dtype=int)
    for tile in grid:
        x0, y0, x1, y1 = tile.owned
        assert tile.window[0] <= x0 and x1 <= tile.window[2] and tile.window[1] <= y0 and y1 <= tile.window[3]
        owners[int(np.ceil(y0)) : int(np.ceil(y1)), int(np.ceil(x0)) : int(np.ceil(x1))] += 1
    assert (owners == 1).all(), "the owned parts of the tiles partition the image"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_object_comes_once_with_its_whole_mask(blob_cfg, seed):
    image, truth = seam_scene(seed=seed)
    tiled = TiledPredictor(blob_cfg, tile_size=TILE, overlap=OVERLAP, batch_size=3)
    grid = tiled.grid(image.shape[:2])
    assert grid.shape[0] >= 3 and grid.shape[1] >= 4
    found = tiled(image)["instances"]
    reference = TiledPredictor(blob_cfg, tile_size=2048, overlap=0)(image)["instances"]  # one tile: untiled
    assert len(reference) == len(truth)
    report = tiled.last_report
    assert report.fragments_joined > 0 and report.objects_from_fragments > 0, "the scene must cut objects"
    assert len(found) == len(truth), report.as_dict()
    crops = found.pred_masks.crops
    for reference_crop in reference.pred_masks.crops:
        ious = [mask_iou(reference_crop, crop) for crop in crops]
        assert max(ious) >= 0.95
        assert sorted(ious)[-2] < 0.5, "one detection per object"
    boxes = found.pred_boxes.tensor.numpy()
    mask_boxes = np.array([crop.bounding_box() for crop in crops])
    assert np.abs(boxes - mask_boxes).max() <= 1e-4, "joined boxes cover the joined masks exactly"
    assert torch.all(found.scores[:-1] >= found.scores[1:])


def test_objects_smaller_than_the_overlap_are_never_split(blob_cfg):
    """The guarantee the README states: no fragment joining is needed for them."""
    image, truth = seam_scene(seed=3)
    small = [m for m in truth if max(np.ptp(np.nonzero(m)[0]), np.ptp(np.nonzero(m)[1])) + 1 <= OVERLAP]
    keep = np.logical_or.reduce(small)
    image[~keep] = 20
    tiled = TiledPredictor(blob_cfg, tile_size=TILE, overlap=OVERLAP)
    found = tiled(image)["instances"]
    assert len(found) == len(small)
    assert tiled.last_report.fragments_joined == 0 and tiled.last_report.suppressed == 0
    for crop in found.pred_masks.crops:
        assert max(mask_iou(crop, MaskCrop.from_array(m)) for m in small) == 1.0
