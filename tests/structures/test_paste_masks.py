"""``paste_masks_in_image``: which image pixels a fixed-size mask covers once pasted into its box.

Convention (docstring): the mask's cells span the box exactly and are sampled at pixel centres,
so pixel (x, y) belongs to box (x0, y0, x1, y1) when x0 < x + 0.5 < x1 and y0 < y + 0.5 < y1.
"""

import numpy as np
import pytest
import torch

from project.structures import paste_masks_in_image
from project.structures.cropped_masks import paste_masks_as_crops

M = 28


def box_pixels(box, height, width) -> np.ndarray:
    """(height, width) bool: pixels whose centre lies strictly inside ``box``."""
    x0, y0, x1, y1 = box
    cx = np.arange(width) + 0.5
    cy = np.arange(height) + 0.5
    inside_x = (cx > x0) & (cx < x1)
    inside_y = (cy > y0) & (cy < y1)
    return inside_y[:, None] & inside_x[None, :]


def paste(masks, boxes, image_shape, threshold=0.5) -> torch.Tensor:
    return paste_masks_in_image(
        torch.as_tensor(masks, dtype=torch.float32),
        torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        image_shape,
        threshold,
    )


def test_box_pixels_helper_counts_integer_boxes_by_hand():
    """Box (2, 1, 5, 3) covers columns 2..4 and rows 1..2: 3 x 2 = 6 pixels."""
    expected = np.zeros((6, 8), dtype=bool)
    expected[1:3, 2:5] = True
    assert np.array_equal(box_pixels((2, 1, 5, 3), 6, 8), expected)


@pytest.mark.parametrize(
    "box",
    [
        (3, 5, 13, 12),  # smaller than the mask
        (0, 0, 1, 1),  # a single pixel
        (7, 2, 8, 30),  # one pixel wide
        (1, 2, 60, 47),  # larger than the mask in both directions
        (0, 0, 64, 48),  # the whole image
    ],
)
def test_constant_one_mask_fills_exactly_the_box(box):
    """Boxes up to ~64 px: beyond, the zero padding outside the mask's cells dims the corners."""
    height, width = 48, 64
    out = paste(np.ones((1, M, M)), [box], (height, width))
    expected = box_pixels(box, height, width)
    assert expected.sum() == (box[2] - box[0]) * (box[3] - box[1])
    assert np.array_equal(out[0].numpy(), expected)


def test_all_zero_mask_pastes_to_nothing():
    out = paste(np.zeros((1, M, M)), [(3, 5, 13, 12)], (20, 30))
    assert not out.any()


def test_threshold_decides_whether_a_constant_mask_is_kept():
    box = (3, 5, 13, 12)
    masks = np.full((1, M, M), 0.3)
    assert not paste(masks, [box], (20, 30), threshold=0.5).any()
    assert np.array_equal(paste(masks, [box], (20, 30), threshold=0.25)[0].numpy(), box_pixels(box, 20, 30))


@pytest.mark.parametrize(
    "box, rows, cols",
    [
        ((-4, -6, 10, 8), (0, 8), (0, 10)),  # over the top-left corner
        ((15, 12, 40, 30), (12, 20), (15, 20)),  # over the bottom-right corner
        ((-10, 3, 35, 6), (3, 6), (0, 20)),  # wider than the image
    ],
)
def test_box_partly_outside_the_image_is_clipped(box, rows, cols):
    out = paste(np.ones((1, M, M)), [box], (20, 20))
    expected = np.zeros((20, 20), dtype=bool)
    expected[rows[0] : rows[1], cols[0] : cols[1]] = True
    assert np.array_equal(out[0].numpy(), expected)


def test_box_entirely_outside_the_image_pastes_to_nothing():
    out = paste(np.ones((2, M, M)), [(25, 25, 30, 30), (-9, -9, -2, -2)], (20, 20))
    assert out.shape == (2, 20, 20)
    assert not out.any()


def test_several_masks_give_one_mask_per_box_in_order():
    boxes = [(0, 0, 5, 5), (10, 2, 18, 9), (4, 12, 16, 20)]
    masks = np.stack([np.ones((M, M)), np.zeros((M, M)), np.ones((M, M))])
    out = paste(masks, boxes, (24, 20))
    assert out.shape == (3, 24, 20)
    assert np.array_equal(out[0].numpy(), box_pixels(boxes[0], 24, 20))
    assert not out[1].any()
    assert np.array_equal(out[2].numpy(), box_pixels(boxes[2], 24, 20))


def test_output_shape_and_dtype():
    out = paste(np.ones((2, M, M)), [(0, 0, 4, 4), (1, 1, 3, 3)], (9, 11))
    assert out.shape == (2, 9, 11)
    assert out.dtype == torch.bool


def test_negative_threshold_keeps_probabilities_as_uint8():
    masks = np.full((1, M, M), 0.5)
    box = (2, 3, 19, 11)
    out = paste(masks, [box], (16, 24), threshold=-1)
    assert out.dtype == torch.uint8
    inside = box_pixels(box, 16, 24)
    assert (out[0].numpy()[inside] == 127).all()
    assert not out[0].numpy()[~inside].any()


def test_no_masks_give_an_empty_bool_tensor():
    out = paste_masks_in_image(torch.zeros(0, M, M), torch.zeros(0, 4), (9, 11))
    assert out.shape == (0, 9, 11)
    assert out.dtype == torch.bool


def test_other_mask_resolutions_also_fill_the_box():
    box = (2, 3, 19, 11)
    for size in (7, 14, 56):
        out = paste(np.ones((1, size, size)), [box], (16, 24))
        assert np.array_equal(out[0].numpy(), box_pixels(box, 16, 24)), size


@pytest.mark.parametrize("box", [(3, 2, 20, 12), (0, 4, 10, 9), (5, 0, 45, 30)])
def test_left_half_mask_ends_at_the_box_centre(box):
    """Left half 1, right half 0: every box row is on from x0 up to the centre, within one pixel."""
    height, width = 32, 48
    mask = np.zeros((1, M, M))
    mask[0, :, : M // 2] = 1.0
    out = paste(mask, [box], (height, width))[0].numpy()
    x0, y0, x1, y1 = box
    centre = (x0 + x1) / 2
    assert not out[:y0].any() and not out[y1:].any()
    for row in out[y0:y1]:
        on = np.flatnonzero(row)
        assert on.size > 0
        assert on[0] == x0
        assert np.array_equal(on, np.arange(x0, on[-1] + 1))  # one contiguous run
        assert abs((on[-1] + 1) - centre) <= 1.0  # right edge of the last pixel on


def test_pasting_as_crops_gives_the_full_image_masks_bit_for_bit():
    """Random boxes, inside, across and outside the image, random probabilities and thresholds."""
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        n = int(torch.randint(0, 6, (1,), generator=g))
        height, width = (int(v) for v in torch.randint(1, 70, (2,), generator=g))
        masks = torch.rand(n, M, M, generator=g)
        corner = torch.rand(n, 2, generator=g) * torch.tensor([1.4 * width, 1.4 * height]) - torch.tensor(
            [0.2 * width, 0.2 * height]
        )
        size = torch.rand(n, 2, generator=g) * torch.tensor([width, height]) * 0.8 + 0.01
        boxes = torch.cat([corner, corner + size], dim=1)
        threshold = float(torch.rand(1, generator=g))
        dense = paste_masks_in_image(masks, boxes, (height, width), threshold)
        cropped = paste_masks_as_crops(masks, boxes, (height, width), threshold)
        assert len(cropped) == n and cropped.image_size == (height, width)
        assert torch.equal(cropped.tensor, dense)


def test_crops_cover_only_the_boxes():
    boxes = torch.tensor([[10.2, 20.5, 30.0, 25.0], [50, 50, 60, 60.0]])
    first, outside = paste_masks_as_crops(torch.ones(2, M, M), boxes, (40, 45)).crops
    # Rows 19..25 and columns 9..30: the box rounded out to whole pixels and one pixel more.
    assert (first.x0, first.y0, first.mask.shape) == (9, 19, (7, 22))
    assert outside.mask.size == 0


# Hand-written pixel sets. A box's coordinates are continuous and pixel (x, y) is the unit square
# [x, x + 1) x [y, y + 1) with its centre at (x + 0.5, y + 0.5), so the box (x0, y0, x1, y1) covers
# columns x with x0 < x + 0.5 < x1 and rows y with y0 < y + 0.5 < y1: ``mask[rows, columns]``.
# Pasting samples the mask bilinearly at those centres, mask cell j spanning the box's
# [x0 + j w / M, x0 + (j + 1) w / M); a pixel whose centre lies a distance d inside the box edge
# but within half a cell of it gets a constant-1 mask's value 0.5 + d M / w (zero padding outside).


def expected_mask(height, width, rows, columns) -> np.ndarray:
    out = np.zeros((height, width), dtype=bool)
    out[rows[0] : rows[1], columns[0] : columns[1]] = True
    return out


def assert_same_pixels(out: np.ndarray, expected: np.ndarray) -> None:
    """Equal masks, or a message naming the (row, column) pixels that differ."""
    wrong_on = np.argwhere(out & ~expected).tolist()
    wrong_off = np.argwhere(expected & ~out).tolist()
    assert not wrong_on and not wrong_off, f"on but outside: {wrong_on[:8]}; off but inside: {wrong_off[:8]}"


@pytest.mark.parametrize(
    "box, rows, columns",
    [
        # x in (10.3, 29.6): centres 10.5 .. 29.5 -> columns 10..29 (9.5 and 30.5 fall outside);
        # y in (20.8, 49.2): centres 21.5 .. 48.5 -> rows 21..48 (20.5 and 49.5 fall outside).
        # Thinnest margins: column 10, d = 0.2 -> 0.5 + 0.2 * 28 / 19.3 = 0.79; column 29,
        # d = 0.1 -> 0.65; rows 21 and 48, d = 0.7 -> a whole half cell inside, 1.0.
        ((10.3, 20.8, 29.6, 49.2), (21, 49), (10, 30)),
        # x in (10.7, 30.4): columns 11..29; y in (20.2, 49.9): rows 20..49.
        ((10.7, 20.2, 30.4, 49.9), (20, 50), (11, 30)),
    ],
)
def test_constant_one_mask_covers_the_pixels_whose_centres_lie_in_the_box(box, rows, columns):
    height, width = 64, 48
    out = paste(np.ones((1, M, M)), [box], (height, width))[0].numpy()
    assert_same_pixels(out, expected_mask(height, width, rows, columns))


def test_integer_box_fills_exactly_its_pixels():
    """Columns 10..29 (centres 10.5 .. 29.5), rows 20..49: 20 x 30 = 600 pixels."""
    out = paste(np.ones((1, M, M)), [(10, 20, 30, 50)], (64, 48))[0].numpy()
    assert out.sum() == 20 * 30
    assert out[20:50, 10:30].all()
    assert not out[:20].any() and not out[50:].any() and not out[:, :10].any() and not out[:, 30:].any()


def test_fractional_box_across_the_image_border():
    """(-5.5, 40.3, 12.2, 70) in a 50 x 60 (w x h) image: columns from 0 up to 11 (11.5 < 12.2 <
    12.5), rows from 40 (40.5 > 40.3) down to the last, 59."""
    out = paste(np.ones((1, M, M)), [(-5.5, 40.3, 12.2, 70.0)], (60, 50))[0].numpy()
    assert_same_pixels(out, expected_mask(60, 50, (40, 60), (0, 12)))


def test_a_corner_pixel_inside_the_box_can_fall_below_the_threshold():
    """The edge weights multiply at a corner (as in Detectron2's pasting): in (10.45, 20.45,
    30.45, 50.45) pixel (10, 20) has its centre 0.05 inside both edges, so it gets
    (0.5 + 0.05 * 28 / 20) * (0.5 + 0.05 * 28 / 30) = 0.57 * 0.547 = 0.31 < 0.5 and is left out,
    while the rest of row 20 (0.547) and column 10 (0.57) stay in."""
    out = paste(np.ones((1, M, M)), [(10.45, 20.45, 30.45, 50.45)], (64, 48))[0].numpy()
    expected = expected_mask(64, 48, (20, 50), (10, 30))
    expected[20, 10] = False
    assert_same_pixels(out, expected)


@pytest.mark.parametrize(
    "box, last_on",
    [
        # Width 20, centre x = 20: column 19 samples the mask at cell coordinate
        # (19.5 - 10) * 28 / 20 - 0.5 = 12.8 (value 1), column 20 at 14.2 (value 0).
        ((10, 20, 30, 50), 19),
        # Width 28: one pixel per cell, the 14 ones land on columns 3..16 unchanged.
        ((3, 2, 31, 12), 16),
        # Centre x = 19.9: column 19 at (19.5 - 10.2) * 28 / 19.4 - 0.5 = 12.9 (1), column 20 at 14.4 (0).
        ((10.2, 20, 29.6, 50), 19),
    ],
)
def test_left_half_mask_switches_off_at_a_hand_computed_column(box, last_on):
    height, width = 64, 48
    mask = np.zeros((1, M, M))
    mask[0, :, : M // 2] = 1.0
    out = paste(mask, [box], (height, width))[0].numpy()
    first_column = int(np.floor(box[0] + 0.5))  # first centre right of x0
    assert_same_pixels(out, expected_mask(height, width, (box[1], box[3]), (first_column, last_on + 1)))


def test_top_half_mask_switches_off_at_the_box_centre_row():
    """Box (10, 20, 30, 50), height 30, centre y = 35: row 34 samples cell coordinate
    (34.5 - 20) * 28 / 30 - 0.5 = 13.03 (value 0.97), row 35 at 13.97 (value 0.03)."""
    mask = np.zeros((1, M, M))
    mask[0, : M // 2, :] = 1.0
    out = paste(mask, [(10, 20, 30, 50)], (64, 48))[0].numpy()
    assert_same_pixels(out, expected_mask(64, 48, (20, 35), (10, 30)))
