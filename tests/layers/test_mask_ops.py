"""Detectron2's ``layers.mask_ops`` names: padding masks, growing boxes, and the original
Detectron paste, against hand-computed values and the model's paste."""

from __future__ import annotations

import torch

from project.layers.mask_ops import pad_masks, paste_mask_in_image_old, paste_masks_in_image, scale_boxes
from project.structures import Boxes


def test_pad_masks_surrounds_with_zeros_and_reports_the_growth():
    masks = torch.ones(2, 4, 4)
    padded, scale = pad_masks(masks, 1)
    assert padded.shape == (2, 6, 6) and scale == 1.5
    assert padded[:, 1:5, 1:5].eq(1).all() and padded.sum() == masks.sum()
    unchanged, one = pad_masks(masks, 0)
    assert torch.equal(unchanged, masks) and one == 1.0


def test_scale_boxes_keeps_centres_and_scales_sides():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 1.0, 1.0]])
    assert scale_boxes(boxes, 1.5).tolist() == [[5.0, 10.0, 35.0, 70.0], [-0.25, -0.25, 1.25, 1.25]]


def test_old_paste_fills_the_truncated_box_and_clips_to_the_image():
    mask = torch.ones(28, 28)
    pasted = paste_mask_in_image_old(mask, torch.tensor([2.7, 1.2, 5.9, 3.5]), 6, 5, threshold=0.5)
    assert pasted.dtype == torch.uint8 and pasted.shape == (6, 5)
    # Truncated to x 2..5 and y 1..3 inclusive, then clipped to the image's 5 columns.
    expected = torch.zeros(6, 5, dtype=torch.uint8)
    expected[1:4, 2:5] = 1
    assert torch.equal(pasted, expected)


def test_paste_masks_in_image_takes_boxes_or_a_tensor():
    masks = torch.rand(3, 28, 28, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[2.0, 3.0, 20.0, 25.0], [0.0, 0.0, 40.0, 30.0], [10.5, 4.2, 12.0, 9.9]])
    from_tensor = paste_masks_in_image(masks, boxes, (32, 48))
    assert torch.equal(paste_masks_in_image(masks, Boxes(boxes), (32, 48)), from_tensor)
    assert from_tensor.shape == (3, 32, 48) and from_tensor.dtype == torch.bool
