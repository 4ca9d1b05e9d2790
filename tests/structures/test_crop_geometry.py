"""Geometry of masks kept as crops (MaskCrop windows, parts, moves, intersections, IoU, unions),
checked against the same operations on the dense (H, W) masks."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
from conftest import require_dataset

from project.structures import MaskCrop, intersection_area, mask_iou, union_of_crops


def dense_iou(a, b):
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def random_blobs(count, size, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: size[0], : size[1]]
    masks = []
    for _ in range(count):
        cy, cx = rng.uniform(0, size[0]), rng.uniform(0, size[1])
        ry, rx = rng.uniform(2, 12, size=2)
        masks.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)
    return masks


def test_mask_iou_equals_dense_iou_on_real_nuclei(data_root):
    root = require_dataset(data_root, "dsb2018")
    coco = json.loads((root / "annotations_val.json").read_text())
    image_id = coco["images"][0]["id"]
    real = [mask_util.decode(a["segmentation"]).astype(bool) for a in coco["annotations"] if a["image_id"] == image_id]
    shifted = [np.roll(m, (dy, dx), axis=(0, 1)) for m, (dy, dx) in zip(real, [(1, 1), (0, 2), (1, 0), (0, 1)] * 99)]
    values = [mask_iou(MaskCrop.from_array(a), MaskCrop.from_array(b)) for a, b in zip(real, shifted)]
    assert values == pytest.approx([dense_iou(a, b) for a, b in zip(real, shifted)], abs=1e-12)
    assert 0 < min(values) and max(values) < 1, "shifted nuclei overlap partly"
    assert mask_iou(MaskCrop.from_array(real[0]), MaskCrop.from_array(real[0])) == 1.0
    assert mask_iou(MaskCrop.from_array(real[0]), MaskCrop.empty(real[0].shape)) == 0.0


def test_loose_crops_give_the_same_answers():
    """Crops need not be tight: a crop with a background border gives the same IoU and areas."""
    size = (30, 30)
    a = np.zeros(size, dtype=bool)
    a[5:15, 5:20] = True
    b = np.zeros(size, dtype=bool)
    b[10:25, 12:18] = True
    loose = MaskCrop(b[2:28, 1:29], 1, 2, size)
    assert mask_iou(MaskCrop.from_array(a), loose) == pytest.approx(dense_iou(a, b))
    assert intersection_area(MaskCrop.from_array(a), loose) == np.count_nonzero(a & b)
    assert loose.area() == np.count_nonzero(b) and loose.window == (1, 2, 29, 28)


def test_parts_intersections_and_unions_match_dense_masks():
    size = (60, 80)
    masks = random_blobs(12, size)
    crops = [MaskCrop.from_array(m) for m in masks]
    windows = [(0, 0, 80, 60), (10, 5, 40, 30), (70, 50, 80, 60), (30, 30, 30, 40), (-5, -5, 200, 200)]
    for m, c in zip(masks, crops):
        for x0, y0, x1, y1 in windows:
            expected = np.count_nonzero(m[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)])
            assert np.count_nonzero(c.part_in((x0, y0, x1, y1))) == expected
    for i in range(len(masks)):
        for j in range(len(masks)):
            a, b = masks[i], masks[j]
            assert intersection_area(crops[i], crops[j]) == np.count_nonzero(a & b)
            assert intersection_area(crops[i], crops[j], (10, 5, 40, 30)) == np.count_nonzero((a & b)[5:30, 10:40])
    union = union_of_crops(crops[:5])
    assert np.array_equal(union.to_array(), np.logical_or.reduce(masks[:5]))


def test_moving_a_crop_into_a_larger_image():
    tile = np.zeros((20, 20), dtype=bool)
    tile[3:9, 4:15] = True
    crop = MaskCrop.from_array(tile).moved(100, 40, (200, 300))
    full = np.zeros((200, 300), dtype=bool)
    full[40:60, 100:120] = tile
    assert crop.image_size == (200, 300)
    assert np.array_equal(crop.to_array(), full)
    with pytest.raises(ValueError, match="does not fit"):
        MaskCrop.from_array(tile).moved(290, 0, (200, 300))
