"""Per-object exports: the label image and the RGBA cut-outs."""

from __future__ import annotations

import numpy as np
import pytest

from project.structures import MaskCrop
from project.visualization.instance_export import box_window, cutout, instance_label_image, window_mask


def _disc(center, radius, size=(40, 50)):
    ys, xs = np.mgrid[: size[0], : size[1]]
    return (ys - center[0]) ** 2 + (xs - center[1]) ** 2 <= radius**2


def test_label_image_numbers_instances_from_1_and_the_smaller_mask_keeps_shared_pixels():
    big, small = _disc((20, 20), 12), _disc((20, 30), 5)
    labels = instance_label_image([MaskCrop.from_array(big), MaskCrop.from_array(small)], big.shape)
    assert labels.dtype == np.uint16
    assert np.array_equal(labels == 2, small)
    assert np.array_equal(labels == 1, big & ~small)
    assert np.array_equal(labels == 0, ~(big | small))


def test_label_image_refuses_more_instances_than_uint16_can_number():
    crops = [MaskCrop.empty((2, 2))] * 65535
    with pytest.raises(ValueError, match="65535 instances"):
        instance_label_image(crops, (2, 2))


def test_box_window_covers_every_pixel_the_box_touches_inside_the_image():
    assert box_window([2.5, 3.0, 7.2, 9.0], (40, 50)) == (2, 3, 8, 9)
    assert box_window([-4.0, -1.0, 60.0, 45.5], (40, 50)) == (0, 0, 50, 40)


def test_window_mask_is_the_mask_where_the_crop_reaches_and_empty_elsewhere():
    mask = _disc((20, 20), 6)
    crop = MaskCrop.from_array(mask)
    window = (10, 12, 35, 30)
    assert np.array_equal(window_mask(crop, window), mask[12:30, 10:35])


def test_cutout_is_opaque_exactly_on_the_mask_inside_the_box():
    rng = np.random.default_rng(0)
    image = rng.integers(1, 256, size=(40, 50, 3), dtype=np.uint8)
    mask = _disc((18, 22), 7)
    box = [14.2, 10.7, 30.0, 26.0]
    rgba = cutout(image, MaskCrop.from_array(mask), box)
    x0, y0, x1, y1 = box_window(box, mask.shape)
    inside = mask[y0:y1, x0:x1]
    assert rgba.shape == (y1 - y0, x1 - x0, 4)
    assert np.array_equal(rgba[..., 3], np.where(inside, 255, 0))
    assert np.array_equal(rgba[..., :3][inside], image[y0:y1, x0:x1][inside])
    assert not rgba[..., :3][~inside].any()
