"""``Boxes``, ``BoxMode`` and the pairwise overlap functions, against hand-computed values and
torchvision's independent box operations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_area, box_iou

from project.structures import Boxes, BoxMode, pairwise_intersection, pairwise_ioa, pairwise_iou


def random_boxes(n: int, seed: int, size: float = 100.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    corners = torch.rand(n, 2, generator=g) * size
    sides = torch.rand(n, 2, generator=g) * size / 2 + 0.5
    return torch.cat([corners, corners + sides], dim=1)


def test_pairwise_iou_equals_torchvision_box_iou():
    a, b = random_boxes(30, seed=0), random_boxes(20, seed=1)
    torch.testing.assert_close(pairwise_iou(Boxes(a), Boxes(b)), box_iou(a, b))


def test_pairwise_intersection_and_ioa_by_hand():
    a = Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]]))
    b = Boxes(torch.tensor([[5.0, 5.0, 15.0, 25.0], [20.0, 20.0, 30.0, 30.0], [2.0, 3.0, 4.0, 7.0]]))
    # Overlaps: 5 x 5, none, and the third box lies inside the first (2 x 4).
    assert pairwise_intersection(a, b).tolist() == [[25.0, 0.0, 8.0]]
    assert pairwise_ioa(a, b).tolist() == [[25.0 / 200.0, 0.0, 1.0]]
    assert pairwise_iou(a, b)[0].tolist() == pytest.approx([25.0 / 275.0, 0.0, 8.0 / 100.0])


def test_touching_and_degenerate_boxes_have_zero_iou_not_nan():
    a = Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0], [3.0, 3.0, 3.0, 3.0]]))  # the second has no area
    b = Boxes(torch.tensor([[10.0, 0.0, 20.0, 10.0], [3.0, 3.0, 3.0, 3.0]]))  # the first only touches
    iou = pairwise_iou(a, b)
    assert not torch.isnan(iou).any()
    assert iou.tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_empty_box_sets_give_empty_matrices():
    assert pairwise_iou(Boxes(torch.zeros(0, 4)), Boxes(random_boxes(3, seed=2))).shape == (0, 3)
    assert pairwise_iou(Boxes(random_boxes(3, seed=2)), Boxes([])).shape == (3, 0)


def test_area_clip_and_nonempty():
    boxes = Boxes(torch.tensor([[-5.0, 2.0, 30.0, 12.0], [8.0, 8.0, 9.0, 50.0], [15.0, 1.0, 40.0, 2.0]]))
    torch.testing.assert_close(boxes.area(), box_area(boxes.tensor))
    boxes.clip((20, 25))  # (height, width)
    assert boxes.tensor.tolist() == [[0.0, 2.0, 25.0, 12.0], [8.0, 8.0, 9.0, 20.0], [15.0, 1.0, 25.0, 2.0]]
    assert boxes.nonempty().tolist() == [True, True, True]
    assert boxes.nonempty(threshold=1.0).tolist() == [True, False, False]


def test_centers_scale_and_inside_box():
    boxes = Boxes(torch.tensor([[0.0, 0.0, 10.0, 20.0], [-2.0, 4.0, 6.0, 8.0]]))
    assert boxes.get_centers().tolist() == [[5.0, 10.0], [2.0, 6.0]]
    assert boxes.inside_box((30, 30)).tolist() == [True, False]
    assert boxes.inside_box((30, 30), boundary_threshold=2).tolist() == [True, True]
    boxes.scale(2.0, 0.5)
    assert boxes.tensor.tolist() == [[0.0, 0.0, 20.0, 10.0], [-4.0, 2.0, 12.0, 4.0]]


def test_indexing_cat_and_construction():
    tensor = random_boxes(5, seed=3)
    boxes = Boxes(tensor)
    assert len(boxes) == 5 and boxes[1].tensor.shape == (1, 4)
    assert torch.equal(boxes[torch.tensor([True, False, True, False, False])].tensor, tensor[[0, 2]])
    assert torch.equal(Boxes.cat([boxes[:2], boxes[2:]]).tensor, tensor)
    assert Boxes.cat([]).tensor.shape == (0, 4)
    assert Boxes([[1, 2, 3, 4]]).tensor.dtype == torch.float32
    with pytest.raises(ValueError):
        Boxes(torch.zeros(3, 5))


def test_box_mode_conversion_round_trips_and_keeps_the_container_type():
    xywh = [10.0, 20.0, 5.0, 8.0]
    xyxy = BoxMode.convert(xywh, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
    assert xyxy == [10.0, 20.0, 15.0, 28.0] and isinstance(xyxy, list)
    assert BoxMode.convert(tuple(xyxy), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS) == tuple(xywh)
    array = np.array([xywh, [0.0, 0.0, 1.0, 1.0]])
    converted = BoxMode.convert(array, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
    assert isinstance(converted, np.ndarray) and converted.tolist() == [[10.0, 20.0, 15.0, 28.0], [0.0, 0.0, 1.0, 1.0]]
    assert array.tolist()[0] == xywh  # the input is not modified
    tensor = torch.tensor([xyxy])
    assert torch.equal(BoxMode.convert(BoxMode.convert(tensor, 0, 1), 1, 0), tensor)


def test_rotated_box_encloses_by_hand_and_xywh_gets_angle_zero():
    # A 30 x 20 box centred at (50, 50): unrotated, then turned a quarter, then a square turned 45 degrees.
    rotated = np.array([[50.0, 50.0, 30.0, 20.0, 0.0], [50.0, 50.0, 30.0, 20.0, 90.0], [0.0, 0.0, 2.0, 2.0, 45.0]])
    enclosing = BoxMode.convert(rotated, BoxMode.XYWHA_ABS, BoxMode.XYXY_ABS)
    half_diagonal = np.sqrt(2.0)
    expected = [[35, 40, 65, 60], [40, 35, 60, 65], [-half_diagonal, -half_diagonal, half_diagonal, half_diagonal]]
    np.testing.assert_allclose(enclosing, expected, atol=1e-12)
    assert BoxMode.convert((10, 20, 4, 6), BoxMode.XYWH_ABS, BoxMode.XYWHA_ABS) == (12.0, 23.0, 4.0, 6.0, 0.0)
    as_float32 = BoxMode.convert(torch.tensor([[10.0, 20.0, 4.0, 6.0]]), BoxMode.XYWH_ABS, BoxMode.XYWHA_ABS)
    assert as_float32.dtype == torch.float32 and as_float32.tolist() == [[12.0, 23.0, 4.0, 6.0, 0.0]]


@pytest.mark.parametrize(
    "from_mode,to_mode",
    [(BoxMode.XYXY_REL, BoxMode.XYXY_ABS), (BoxMode.XYXY_ABS, BoxMode.XYWH_REL), (BoxMode.XYXY_ABS, BoxMode.XYWHA_ABS)],
)
def test_unsupported_conversions_raise(from_mode, to_mode):
    with pytest.raises(NotImplementedError, match=f"{from_mode.name} to {to_mode.name}"):
        BoxMode.convert([0.0, 0.0, 1.0, 1.0], from_mode, to_mode)


def test_single_box_with_the_wrong_number_of_values_raises():
    with pytest.raises(ValueError, match="XYWHA_ABS box needs 5 numbers"):
        BoxMode.convert([0.0, 0.0, 1.0, 1.0], BoxMode.XYWHA_ABS, BoxMode.XYXY_ABS)
