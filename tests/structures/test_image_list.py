"""``ImageList.from_tensors``: padding by hand, Detectron2's ``padding_constraints``, and traces
that follow the input sizes."""

from __future__ import annotations

import pytest
import torch

from project.structures import ImageList


def test_images_are_padded_bottom_right_to_a_multiple_of_the_divisor():
    images = [torch.ones(3, 5, 7), 2 * torch.ones(3, 9, 4)]
    batch = ImageList.from_tensors(images, size_divisibility=4, pad_value=-1.0)
    assert batch.tensor.shape == (2, 3, 12, 8) and batch.image_sizes == [(5, 7), (9, 4)]
    assert all(isinstance(side, int) for size in batch.image_sizes for side in size)
    assert torch.equal(batch[0], images[0]) and torch.equal(batch[1], images[1])
    assert (batch.tensor[0, :, 5:] == -1).all() and (batch.tensor[1, :, :, 4:] == -1).all()


@pytest.mark.parametrize(
    "divisor,constraints,expected",
    [
        (0, {"square_size": 16}, (16, 16)),
        (32, {"square_size": 16}, (32, 32)),
        (32, {"square_size": 10, "size_divisibility": 8}, (16, 16)),
    ],
)
def test_padding_constraints_set_a_square_size_and_override_the_divisor(divisor, constraints, expected):
    batch = ImageList.from_tensors([torch.ones(3, 5, 7)], size_divisibility=divisor, padding_constraints=constraints)
    assert tuple(batch.tensor.shape[-2:]) == expected


def test_a_trace_pads_inputs_of_other_sizes():
    def pad(images):
        batch = ImageList.from_tensors(images, 4)
        return batch.tensor, batch.image_sizes

    traced = torch.jit.trace(pad, ([torch.ones(3, 8, 8), torch.ones(3, 6, 5)],))
    tensor, sizes = traced([torch.ones(3, 13, 9), torch.ones(3, 2, 3)])
    assert tensor.shape == (2, 3, 16, 12) and [s.tolist() for s in sizes] == [[13, 9], [2, 3]]
