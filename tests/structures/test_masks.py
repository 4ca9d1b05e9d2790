"""RLE decoding into crops, ``CroppedBitMasks`` against dense ``BitMasks``, and moving crops
through transforms against transforming full masks."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from project.data import transforms as T
from project.structures import BitMasks, CroppedBitMasks, MaskCrop, PolygonMasks
from project.structures.rle import compress, decode_crop, encode_mask, rle_area_and_box, run_lengths


def random_masks(rng: np.random.Generator, count: int, height: int, width: int) -> np.ndarray:
    """(count, H, W) bool masks: random blobs, empty, full, single pixels, border-touching."""
    masks = np.zeros((count, height, width), dtype=bool)
    for i in range(count):
        kind = i % 5
        if kind == 0:
            masks[i] = rng.random((height, width)) < rng.uniform(0.05, 0.6)
        elif kind == 1:
            y, x = rng.integers(0, height), rng.integers(0, width)
            masks[i, y : y + rng.integers(1, 15), x : x + rng.integers(1, 15)] = True
        elif kind == 2:
            masks[i] = True
        elif kind == 3:
            masks[i, rng.integers(0, height), rng.integers(0, width)] = True
        # kind 4: empty
    return masks


def test_decode_crop_matches_pycocotools_on_random_masks():
    rng = np.random.default_rng(0)
    for height, width in [(1, 1), (7, 3), (31, 45), (64, 17)]:
        for mask in random_masks(rng, 25, height, width):
            rle = encode_mask(mask)
            expected = mask_util.decode(dict(rle, counts=rle["counts"].encode())).astype(bool)
            assert np.array_equal(expected, mask)
            crop = decode_crop(rle)
            assert np.array_equal(crop.to_array(), mask)
            if mask.any():  # the crop is tight
                assert crop.mask.any(axis=0)[[0, -1]].all() and crop.mask.any(axis=1)[[0, -1]].all()


def test_run_lengths_of_compressed_equal_the_uncompressed_counts():
    rng = np.random.default_rng(1)
    mask = rng.random((40, 50)) < 0.3
    uncompressed = {"size": [40, 50], "counts": []}
    flat = mask.flatten(order="F")
    value, run = False, 0
    for pixel in flat:  # column-major runs, starting with background
        if pixel == value:
            run += 1
        else:
            uncompressed["counts"].append(run)
            value, run = pixel, 1
    uncompressed["counts"].append(run)
    assert run_lengths(encode_mask(mask)["counts"]).tolist() == uncompressed["counts"]
    assert compress(uncompressed) == encode_mask(mask)


def test_rle_area_and_box_are_those_of_the_pixels():
    mask = np.zeros((20, 30), dtype=bool)
    mask[3:9, 10:25] = True
    area, box = rle_area_and_box(encode_mask(mask))
    assert area == 6 * 15
    assert box == [10.0, 3.0, 15.0, 6.0]


def test_cropped_bitmasks_answer_like_dense_bitmasks():
    rng = np.random.default_rng(2)
    height, width = 48, 64
    dense = random_masks(rng, 15, height, width)
    cropped = CroppedBitMasks([MaskCrop.from_array(m) for m in dense], (height, width))
    reference = BitMasks(torch.from_numpy(dense))
    assert torch.equal(cropped.tensor, reference.tensor)
    assert torch.equal(cropped.nonempty(), reference.nonempty())
    assert torch.equal(cropped.area(), reference.area())
    assert torch.equal(cropped.get_bounding_boxes().tensor, reference.get_bounding_boxes().tensor)
    # Boxes anywhere inside the image, including ones on the borders and tiny ones.
    xy0 = torch.rand(len(dense), 2) * torch.tensor([width, height])
    xy1 = xy0 + torch.rand(len(dense), 2) * torch.tensor([width, height])
    boxes = torch.cat([xy0, xy1], dim=1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    boxes[0] = torch.tensor([0.0, 0.0, width, height])
    boxes[1] = torch.tensor([width - 3.0, height - 2.0, width, height])
    for size in (7, 28):
        assert torch.equal(cropped.crop_and_resize(boxes, size), reference.crop_and_resize(boxes, size))


def test_cropped_bitmasks_indexing_shares_crops_and_matches_dense_indexing():
    rng = np.random.default_rng(3)
    dense = random_masks(rng, 6, 20, 30)
    cropped = CroppedBitMasks([MaskCrop.from_array(m) for m in dense], (20, 30))
    index = torch.tensor([5, 0, 0, 3])
    picked = cropped[index]
    assert picked.crops[1] is cropped.crops[0]
    assert torch.equal(picked.tensor, torch.from_numpy(dense)[index])
    keep = torch.tensor([True, False, True, False, False, True])
    assert torch.equal(cropped[keep].tensor, torch.from_numpy(dense)[keep])
    assert torch.equal(CroppedBitMasks.cat([cropped[:2], cropped[2:]]).tensor, cropped.tensor)
    with pytest.raises(ValueError, match="belongs to a"):
        CroppedBitMasks([MaskCrop.from_array(dense[0]), MaskCrop.empty((5, 5))], (20, 30))


def test_mask_crop_from_polygons_equals_full_rasterisation():
    from project.structures import polygons_to_bitmask

    polygons = [np.array([3.2, 4.7, 40.1, 8.3, 22.5, 30.9]), np.array([-5.0, -5.0, 10.0, -5.0, 10.0, 6.0, -5.0, 6.0])]
    crop = MaskCrop.from_polygons(polygons, (32, 48))
    assert np.array_equal(crop.to_array(), polygons_to_bitmask(polygons, 32, 48))


TRANSFORMS = {
    "resize_up": lambda h, w: T.ResizeTransform(h, w, int(h * 1.7), int(w * 1.37)),
    "resize_down": lambda h, w: T.ResizeTransform(h, w, h // 3, w // 2),
    "hflip": lambda h, w: T.HFlipTransform(w),
    "vflip": lambda h, w: T.VFlipTransform(h),
    "crop": lambda h, w: T.CropTransform(5, 7, w - 20, h - 9, w, h),
    "crop_pad": lambda h, w: T.TransformList(
        [T.CropTransform(10, 3, 20, 30, w, h), T.PadTransform(0, 0, 15, 6, 20, 30)]
    ),
    "chain": lambda h, w: T.TransformList(
        [
            T.ResizeTransform(h, w, 2 * h + 1, 2 * w - 3),
            T.HFlipTransform(2 * w - 3),
            T.VFlipTransform(2 * h + 1),
            T.CropTransform(4, 9, 2 * w - 20, 2 * h - 30, 2 * w - 3, 2 * h + 1),
        ]
    ),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_resampled_crops_equal_transformed_full_masks(name):
    height, width = 40, 56
    transform = TRANSFORMS[name](height, width)
    transforms = transform if isinstance(transform, T.TransformList) else T.TransformList([transform])
    resampler = T.MaskCropResampler(transforms, (height, width))
    rng = np.random.default_rng(4)
    for mask in random_masks(rng, 12, height, width):
        expected = transforms.apply_segmentation(mask.astype(np.uint8)) != 0
        got = resampler(MaskCrop.from_array(mask))
        assert got.image_size == expected.shape
        assert np.array_equal(got.to_array(), expected)


def test_resampler_falls_back_to_full_masks_for_other_transforms():
    class Transpose(T.Transform):
        def apply_image(self, img):
            return np.ascontiguousarray(np.swapaxes(img, 0, 1))

        def apply_coords(self, coords):
            return coords[:, ::-1]

    mask = np.zeros((10, 20), dtype=bool)
    mask[2:4, 5:15] = True
    got = T.MaskCropResampler(T.TransformList([Transpose()]), (10, 20))(MaskCrop.from_array(mask))
    assert np.array_equal(got.to_array(), mask.T)


def test_bitmasks_from_no_polygons_and_from_a_plain_list_of_polygons():
    assert BitMasks.from_polygon_masks([], 7, 9).tensor.shape == (0, 7, 9)
    square = [np.array([1.0, 1.0, 5.0, 1.0, 5.0, 4.0, 1.0, 4.0])]
    from_list = BitMasks.from_polygon_masks([square], 6, 8)
    assert torch.equal(from_list.tensor, BitMasks.from_polygon_masks(PolygonMasks([square]), 6, 8).tensor)
    assert from_list.get_bounding_boxes().tensor.tolist() == [[1.0, 1.0, 5.0, 4.0]]
