"""Colour assignment: the palette repeats with its size and its entries differ; class colours
come from ``thing_colors`` only when it names every class."""

from __future__ import annotations

import numpy as np

from project.visualization.colors import PALETTE, PALETTE_SIZE, class_colors, palette_colors


def test_palette_entries_differ_and_repeat_with_the_palette_size():
    assert PALETTE.shape == (PALETTE_SIZE, 3) and PALETTE.dtype == np.uint8
    assert len({tuple(c) for c in PALETTE}) == PALETTE_SIZE
    np.testing.assert_array_equal(palette_colors([3, 3 + PALETTE_SIZE, 3 + 2 * PALETTE_SIZE]), PALETTE[[3, 3, 3]])


def test_class_colors_use_thing_colors_when_every_class_has_one():
    thing_colors = [[255, 0, 0], [0, 128.4, 0], [0, 0, 300]]
    np.testing.assert_array_equal(
        class_colors([2, 0, 1, 0], thing_colors), [[0, 0, 255], [255, 0, 0], [0, 128, 0], [255, 0, 0]]
    )
    np.testing.assert_array_equal(class_colors([0, 3], thing_colors), palette_colors([0, 3]))
    np.testing.assert_array_equal(class_colors([1, 1]), palette_colors([1, 1]))
