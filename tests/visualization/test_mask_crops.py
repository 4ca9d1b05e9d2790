"""``project.visualization.masks``: every mask form the visualizer accepts gives crops of the
same dense masks; wrong sizes are refused; paint order, label map and crop IoU.

(Named test_mask_crops.py: tests/structures/test_masks.py already owns the module name
``test_masks`` in this package-less test tree.)"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from conftest import require_dataset

from project.structures import BitMasks, CroppedBitMasks, MaskCrop, PolygonMasks
from project.visualization.masks import as_mask_crops, label_map, paint_order


def coco_rasterise(polygons, height, width):
    return mask_util.decode(mask_util.merge(mask_util.frPyObjects(polygons, height, width))).astype(bool)


def uncompressed_rle(mask):
    """COCO's uncompressed RLE (column-major run lengths, starting with background)."""
    flat = mask.ravel(order="F").astype(np.int8)
    bounds = np.r_[0, np.flatnonzero(flat[1:] != flat[:-1]) + 1, flat.size]
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"size": list(mask.shape), "counts": runs}


@pytest.fixture(scope="module")
def nuclei(data_root):
    """The real DSB2018 nuclei masks (N, H, W) of one image with their compressed RLEs, plus an
    empty mask."""
    root = require_dataset(data_root, "dsb2018")
    coco = json.loads((root / "annotations_val.json").read_text())
    image_id = coco["images"][0]["id"]
    rles = [a["segmentation"] for a in coco["annotations"] if a["image_id"] == image_id]
    masks = np.stack([mask_util.decode(r).astype(bool) for r in rles])
    empty = np.zeros_like(masks[:1])
    rles.append(mask_util.encode(np.asfortranarray(empty[0].astype(np.uint8))))
    return np.concatenate([masks, empty]), rles


def contour_polygons(mask):
    """Integer-vertex polygons tracing a real mask's outer borders (flat x, y lists)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(np.float64).tolist() for c in contours if len(c) >= 3]


def dense_forms(masks, rles):
    size = masks.shape[1:]
    return {
        "CroppedBitMasks": CroppedBitMasks([MaskCrop.from_array(m) for m in masks], size),
        "BitMasks": BitMasks(torch.from_numpy(masks)),
        "bool tensor": torch.from_numpy(masks),
        "uint8 tensor": torch.from_numpy(masks.astype(np.uint8)),
        "ndarray": masks.astype(np.uint8),
        "compressed RLEs": rles,
        "uncompressed RLEs": [uncompressed_rle(m) for m in masks],
        "arrays": list(masks),
        "MaskCrops": [MaskCrop.from_array(m) for m in masks],
    }


FORMS = [
    "CroppedBitMasks",
    "BitMasks",
    "bool tensor",
    "uint8 tensor",
    "ndarray",
    "compressed RLEs",
    "uncompressed RLEs",
    "arrays",
    "MaskCrops",
]


def test_uncompressed_rle_helper_matches_pycocotools(nuclei):
    masks, _ = nuclei
    h, w = masks.shape[1:]
    for m in masks[:3]:
        assert np.array_equal(mask_util.decode(mask_util.frPyObjects(uncompressed_rle(m), h, w)).astype(bool), m)


@pytest.mark.parametrize("form", FORMS)
def test_every_form_gives_the_dense_masks(nuclei, form):
    masks, rles = nuclei
    crops = as_mask_crops(dense_forms(masks, rles)[form], masks.shape[1:])
    assert len(crops) == len(masks)
    for crop, mask in zip(crops, masks):
        assert crop.to_array().shape == mask.shape
        assert np.array_equal(crop.to_array(), mask)


@pytest.mark.parametrize("form", ["PolygonMasks", "polygon lists"])
def test_polygon_forms_give_coco_rasterisation(nuclei, form):
    masks, _ = nuclei
    h, w = masks.shape[1:]
    polygons = [contour_polygons(m) for m in masks[:-1]]
    given = PolygonMasks(polygons) if form == "PolygonMasks" else polygons
    crops = as_mask_crops(given, (h, w))
    for crop, polys in zip(crops, polygons):
        assert np.array_equal(crop.to_array(), coco_rasterise(polys, h, w))


def test_real_coco_polygons_give_coco_rasterisation(data_root):
    root = require_dataset(data_root, "coco_mini")
    coco = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    (info,) = coco["images"]
    h, w = info["height"], info["width"]
    polygons = [a["segmentation"] for a in coco["annotations"]]
    crops = as_mask_crops(polygons, (h, w))
    for crop, polys in zip(crops, polygons):
        assert np.array_equal(crop.to_array(), coco_rasterise(polys, h, w))


def wrong_size_forms(masks, rles):
    n, h, w = masks.shape
    other = np.zeros((n, h + 1, w), dtype=bool)
    other[:, :h] = masks
    return {
        "ndarray": other,
        "tensor": torch.from_numpy(other),
        "BitMasks": BitMasks(torch.from_numpy(other)),
        "CroppedBitMasks": CroppedBitMasks([MaskCrop.from_array(m) for m in other], (h + 1, w)),
        "RLE": [mask_util.encode(np.asfortranarray(m.astype(np.uint8))) for m in other],
        "arrays": list(other),
        "MaskCrops": [MaskCrop.from_array(m) for m in other],
    }


@pytest.mark.parametrize("form", ["ndarray", "tensor", "BitMasks", "CroppedBitMasks", "RLE", "arrays", "MaskCrops"])
def test_masks_of_another_image_size_raise(nuclei, form):
    masks, rles = nuclei
    with pytest.raises(ValueError):
        as_mask_crops(wrong_size_forms(masks, rles)[form], masks.shape[1:])


def rectangle(size, x0, y0, x1, y1):
    mask = np.zeros(size, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return MaskCrop.from_array(mask)


def test_paint_order_is_largest_first_ties_in_given_order():
    size = (20, 20)
    crops = [
        rectangle(size, 0, 0, 2, 2),
        rectangle(size, 0, 0, 3, 3),
        rectangle(size, 5, 5, 7, 7),
        rectangle(size, 0, 0, 1, 1),
        MaskCrop.empty(size),
    ]
    assert paint_order(crops).tolist() == [1, 0, 2, 3, 4]


def test_label_map_later_in_order_wins():
    size = (10, 12)
    crops = [rectangle(size, 0, 0, 6, 6), rectangle(size, 4, 4, 10, 8), MaskCrop.empty(size)]
    forward = label_map(crops, size, [0, 1, 2])
    backward = label_map(crops, size, [2, 1, 0])
    assert forward.dtype == np.uint16
    assert forward[5, 5] == 2 and backward[5, 5] == 1
    assert forward[0, 0] == backward[0, 0] == 1
    assert forward[7, 9] == backward[7, 9] == 2
    union = crops[0].to_array() | crops[1].to_array()
    assert not forward[~union].any() and not backward[~union].any()
    assert (forward[union] > 0).all()


def test_label_map_widens_its_type_for_many_instances():
    size = (4, 4)
    crops = [MaskCrop.empty(size)] * 65535 + [rectangle(size, 1, 1, 3, 3)]
    labels = label_map(crops, size, range(len(crops)))
    assert labels.dtype == np.int32
    assert labels[2, 2] == 65536
