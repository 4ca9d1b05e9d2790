"""project.tiling.preview: a large image reduced by a whole factor equals the block means of its
pixels, whether read window by window or from a pyramid level, and masks and boxes land on the
same reduced pixels as the objects."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
import torch

from project.structures import Boxes, CroppedBitMasks, Instances, MaskCrop
from project.tiling import preview
from project.tiling.preview import read_reduced, reduce_instances, reduced_size, reduction_factor
from project.tiling.readers import ArrayLargeImage, open_large_image

RNG = np.random.default_rng(0)


def block_means(array: np.ndarray, factor: int) -> np.ndarray:
    """Each output pixel the mean of the pixels of its factor x factor block (fewer at the
    bottom and right edges), as float."""
    height, width = reduced_size(*array.shape[:2], factor)
    out = np.zeros((height, width) + array.shape[2:])
    for r in range(height):
        for c in range(width):
            out[r, c] = array[r * factor : (r + 1) * factor, c * factor : (c + 1) * factor].mean(axis=(0, 1))
    return out


@pytest.mark.parametrize(
    "height, width, max_pixels, max_side, expected",
    [
        (900, 1200, 1_080_000, None, 1),  # fits exactly
        (900, 1200, 500_000, None, 2),
        (20_000, 20_000, 64_000_000, None, 3),  # 6667 x 6667 = 44 megapixels
        (1001, 1001, 250_000, None, 3),  # 501 x 501 = 251,001 pixels: one more than 2 allows
        (10, 200_000, 64_000_000, 65_535, 4),  # too long for a JPEG, not too many pixels
    ],
)
def test_reduction_factor_is_the_smallest_that_fits(height, width, max_pixels, max_side, expected):
    factor = reduction_factor(height, width, max_pixels, max_side)
    assert factor == expected

    def fits(f):
        rows, cols = reduced_size(height, width, f)
        return rows * cols <= max_pixels and (max_side is None or max(rows, cols) <= max_side)

    assert fits(factor) and (factor == 1 or not fits(factor - 1))


@pytest.mark.parametrize("shape, dtype", [((37, 53, 3), np.uint8), ((41, 30), np.uint16), ((29, 31, 4), np.float32)])
@pytest.mark.parametrize("factor", [1, 2, 4, 5])
def test_reduced_pixels_are_block_means_across_window_borders(shape, dtype, factor, monkeypatch):
    monkeypatch.setattr(preview, "_WINDOW_PIXELS", 12)  # many windows, some not a multiple of the factor
    high = 1.0 if dtype == np.float32 else np.iinfo(dtype).max
    array = (RNG.random(shape) * high).astype(dtype)
    reduced = read_reduced(ArrayLargeImage(array), factor)
    assert reduced.dtype == array.dtype and reduced.shape == reduced_size(*shape[:2], factor) + shape[2:]
    tolerance = 1e-5 if dtype == np.float32 else 1  # integer results are rounded
    np.testing.assert_allclose(reduced.astype(float), block_means(array, factor), atol=tolerance)


@pytest.mark.parametrize("rounding", [math.ceil, math.floor])
def test_a_pyramid_level_is_read_instead_of_full_resolution_when_the_factor_allows(tmp_path, rounding, monkeypatch):
    image = RNG.integers(0, 256, (301, 501, 3), dtype=np.uint8)
    coarse = np.ascontiguousarray(image[::2, ::2][: rounding(301 / 2), : rounding(501 / 2)])
    coarse = coarse // 2  # darker, so the test sees which level was read
    path = tmp_path / "pyramid.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, tile=(64, 64), photometric="rgb", subifds=1)
        tif.write(coarse, tile=(64, 64), photometric="rgb", subfiletype=1)
    with open_large_image(str(path)) as large:
        assert large.levels == [(301, 501), coarse.shape[:2]]
        levels_read = []
        read = large.read_region
        monkeypatch.setattr(
            large, "read_region", lambda *a, level=0: levels_read.append(level) or read(*a, level=level)
        )
        reduced = read_reduced(large, 4)
        assert set(levels_read) == {1}, "factor 4 is level 1 reduced by 2"
        assert reduced.shape == (76, 126, 3)  # ceil(301 / 4), ceil(501 / 4)
        expected = block_means(coarse, 2)
        rows, cols = expected.shape[:2]
        np.testing.assert_allclose(reduced[:rows, :cols], expected, atol=1)
        # a level rounded down lacks the last partial block: its last row and column are repeated
        np.testing.assert_array_equal(reduced[rows:], np.repeat(reduced[rows - 1 : rows], 76 - rows, axis=0))
        np.testing.assert_array_equal(reduced[:, cols:], np.repeat(reduced[:, cols - 1 : cols], 126 - cols, axis=1))
        levels_read.clear()
        read_reduced(large, 3)
        assert set(levels_read) == {0}, "3 is not a multiple of level 1's 2"


def test_reduced_masks_and_boxes_fall_on_the_reduced_objects():
    height, width, factor = 97, 130, 4
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - 40) ** 2 + (xx - 61) ** 2 <= 15**2
    speck = np.zeros((height, width), dtype=bool)
    speck[90, 127] = True  # one pixel
    edge = np.zeros((height, width), dtype=bool)
    edge[96, 100:] = True  # the last row: blocks of one row there, fully covered,
    edge[88:, 120:] = True  # beside whole blocks
    masks = [MaskCrop.from_array(m) for m in (disc, speck, edge)]
    instances = Instances((height, width))
    instances.pred_boxes = Boxes(
        torch.tensor([[46.0, 25.0, 77.0, 56.0], [127.0, 90.0, 128.0, 91.0], [100, 88, 130, 97]])
    )
    instances.scores = torch.tensor([0.9, 0.4, 0.3])
    instances.pred_masks = CroppedBitMasks(masks, (height, width))

    reduced = reduce_instances(instances, factor)
    size = reduced_size(height, width, factor)
    assert reduced.image_size == size and torch.equal(reduced.scores, instances.scores)
    torch.testing.assert_close(reduced.pred_boxes.tensor, instances.pred_boxes.tensor / factor)
    disc_reduced, speck_reduced, edge_reduced = (crop.to_array() for crop in reduced.pred_masks.crops)
    np.testing.assert_array_equal(disc_reduced, block_means(disc.astype(float), factor) >= 0.5)
    assert np.argwhere(speck_reduced).tolist() == [[90 // factor, 127 // factor]], "a speck keeps its pixel"
    np.testing.assert_array_equal(edge_reduced, block_means(edge.astype(float), factor) >= 0.5)
    assert edge_reduced[-1, 25:].all(), "blocks cut by the image's edge count only their pixels"
