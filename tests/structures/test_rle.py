"""``encode_crop``: the COCO RLE of a crop placed in its image, computed from the crop alone,
equals pycocotools' encoding of the full-image mask."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_dataset

from project.structures import MaskCrop
from project.structures.rle import decode_crop, encode_crop, encode_mask


def pycocotools_rle(crop: MaskCrop):
    return encode_mask(crop.to_array())


@pytest.mark.parametrize(
    "image_size, x0, y0, mask",
    [
        ((6, 5), 0, 0, np.ones((6, 5), dtype=bool)),  # the whole image: one run
        ((6, 5), 1, 0, np.ones((6, 2), dtype=bool)),  # full-height columns: runs join across columns
        ((6, 5), 0, 0, np.zeros((6, 5), dtype=bool)),  # nothing
        ((6, 5), 2, 3, np.zeros((0, 0), dtype=bool)),  # an empty crop
        ((6, 5), 4, 5, np.ones((1, 1), dtype=bool)),  # the last pixel: no closing background run
        ((6, 5), 0, 0, np.eye(3, dtype=bool)),  # the first pixel: an empty first background run
        ((7, 9), 3, 2, np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1]], dtype=bool)),
    ],
)
def test_edge_cases_match_pycocotools(image_size, x0, y0, mask):
    crop = MaskCrop(mask, x0, y0, image_size)
    assert encode_crop(crop) == pycocotools_rle(crop)


def test_random_crops_match_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(500):
        height, width = (int(v) for v in rng.integers(1, 40, 2))
        h, w = int(rng.integers(0, height + 1)), int(rng.integers(0, width + 1))
        y0, x0 = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        mask = rng.random((h, w)) < rng.choice([0.0, 0.2, 0.5, 0.9, 1.0])
        crop = MaskCrop(mask, x0, y0, (height, width))
        assert encode_crop(crop) == pycocotools_rle(crop)


def test_real_nuclei_round_trip_through_crops(data_root):
    """DSB2018 val masks: decoding each RLE into its crop and encoding the crop gives the
    ground truth's RLE string back."""
    with open(require_dataset(data_root, "dsb2018") / "annotations_val.json") as f:
        annotations = json.load(f)["annotations"][:300]
    for ann in annotations:
        expected = {"size": list(ann["segmentation"]["size"]), "counts": ann["segmentation"]["counts"]}
        assert isinstance(expected["counts"], str)
        assert encode_crop(decode_crop(expected)) == expected


def test_counts_is_a_json_string():
    rle = encode_crop(MaskCrop(np.ones((2, 2), dtype=bool), 1, 1, (4, 4)))
    assert isinstance(rle["counts"], str) and rle["size"] == [4, 4]
