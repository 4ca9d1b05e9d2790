"""``Box2BoxTransform`` encode/decode and ``box_regression_loss``, against hand-worked values."""

import math

import numpy as np
import pytest
import torch

from project.modeling.box_regression import SCALE_CLAMP, Box2BoxTransform, box_regression_loss

WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (2.0, 0.5, 3.0, 1.5)]


def decode_reference(deltas, box, weights):
    """Plain-arithmetic decoding of one (dx, dy, dw, dh) against one XYXY box."""
    wx, wy, ww, wh = weights
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = x0 + w / 2, y0 + h / 2
    dx, dy, dw, dh = deltas
    cx, cy = cx + dx / wx * w, cy + dy / wy * h
    w, h = w * math.exp(dw / ww), h * math.exp(dh / wh)
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def random_boxes(gen: torch.Generator, n: int) -> torch.Tensor:
    """Sides in [20, 200): any two differ by under 10x, well inside the default scale clamp."""
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 400
    wh = 20 + torch.rand(n, 2, generator=gen, dtype=torch.float64) * 180
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_apply_deltas_inverts_get_deltas(weights):
    gen = torch.Generator().manual_seed(0)
    src, tgt = random_boxes(gen, 64), random_boxes(gen, 64)
    transform = Box2BoxTransform(weights)
    decoded = transform.apply_deltas(transform.get_deltas(src, tgt), src)
    # Decoding runs in float32 whatever the input dtype, hence the tolerance.
    torch.testing.assert_close(decoded.double(), tgt, atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_zero_deltas_return_the_source_boxes(weights):
    src = torch.tensor([[0.0, 0.0, 10.0, 20.0], [3.5, 7.0, 50.0, 9.0]])
    out = Box2BoxTransform(weights).apply_deltas(torch.zeros(2, 4), src)
    torch.testing.assert_close(out, src)


def test_get_deltas_of_identical_boxes_are_zero():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0], [3.5, 7.0, 50.0, 9.0]])
    deltas = Box2BoxTransform((10.0, 10.0, 5.0, 5.0)).get_deltas(boxes, boxes)
    torch.testing.assert_close(deltas, torch.zeros(2, 4))


def test_dx_of_one_tenth_moves_the_centre_one_pixel_in_a_ten_pixel_box():
    src = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    out = Box2BoxTransform((1.0, 1.0, 1.0, 1.0)).apply_deltas(torch.tensor([[0.1, 0.0, 0.0, 0.0]]), src)
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0, 11.0, 20.0]]))


def test_weights_divide_the_deltas_before_decoding():
    """With wx=10, dx=1 is the same move as dx=0.1 unweighted; with wh=5, dh=5*log(2) doubles h."""
    src = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    deltas = torch.tensor([[1.0, 0.0, 0.0, 5 * math.log(2.0)]])
    out = Box2BoxTransform((10.0, 10.0, 5.0, 5.0)).apply_deltas(deltas, src)
    # centre (6, 10), size 10 x 40
    torch.testing.assert_close(out, torch.tensor([[1.0, -10.0, 11.0, 30.0]]))


def test_get_deltas_hand_computed():
    src = torch.tensor([[0.0, 0.0, 10.0, 20.0], [0.0, 0.0, 10.0, 20.0]])
    tgt = torch.tensor([[1.0, 0.0, 11.0, 20.0], [-5.0, 5.0, 15.0, 15.0]])
    deltas = Box2BoxTransform((1.0, 1.0, 1.0, 1.0)).get_deltas(src, tgt)
    # second: centre unchanged (5, 10); width 10 -> 20, height 20 -> 10
    expected = torch.tensor([[0.1, 0.0, 0.0, 0.0], [0.0, 0.0, math.log(2.0), math.log(0.5)]])
    torch.testing.assert_close(deltas, expected)


def test_per_class_deltas_decode_into_matching_column_groups():
    """(N, 4k) deltas give (N, 4k) boxes; columns 4j:4j+4 belong to class j."""
    weights = (10.0, 10.0, 5.0, 5.0)
    src = torch.tensor([[0.0, 0.0, 10.0, 20.0], [4.0, 6.0, 36.0, 14.0]])
    per_class = [
        [0.0, 0.0, 0.0, 0.0],
        [1.0, -2.0, 0.0, 0.0],
        [0.0, 0.0, 5 * math.log(2.0), -5 * math.log(2.0)],
    ]
    deltas = torch.tensor([sum(per_class, []), sum(reversed(per_class), [])])
    out = Box2BoxTransform(weights).apply_deltas(deltas, src)
    assert out.shape == (2, 12)
    for row in range(2):
        for j in range(3):
            d = deltas[row, 4 * j : 4 * j + 4].tolist()
            expected = torch.tensor(decode_reference(d, src[row].tolist(), weights))
            torch.testing.assert_close(out[row, 4 * j : 4 * j + 4], expected)


def test_large_dw_and_dh_are_clamped_to_the_scale_clamp():
    """A box grows at most exp(scale_clamp) times, about its unchanged centre."""
    src = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    out = Box2BoxTransform((1.0, 1.0, 1.0, 1.0)).apply_deltas(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), src)
    size = 16 * 1000 / 16  # default clamp: log(1000 / 16)
    assert math.isclose(SCALE_CLAMP, math.log(1000 / 16))
    torch.testing.assert_close(out, torch.tensor([[8 - size / 2, 8 - size / 2, 8 + size / 2, 8 + size / 2]]))


def test_custom_scale_clamp_applies_after_the_weights():
    """ww=5: dw=50 means 10 before clamping; clamp log(2) caps the growth at 2x."""
    src = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    transform = Box2BoxTransform((1.0, 1.0, 5.0, 5.0), scale_clamp=math.log(2.0))
    out = transform.apply_deltas(torch.tensor([[0.0, 0.0, 50.0, 5 * math.log(1.5)]]), src)
    # width 10 -> 20 (clamped), height 10 -> 15 (below the clamp)
    torch.testing.assert_close(out, torch.tensor([[-5.0, -2.5, 15.0, 12.5]]))


def hand_loss_inputs():
    anchors = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 10.0, 20.0],
        ]
    )
    gt = torch.tensor(
        [
            [1.0, 2.0, 11.0, 12.0],  # target deltas (0.1, 0.2, 0, 0)
            [0.0, 0.0, 10.0, 10.0],  # target deltas (0, 0, 0, 0)
            [0.0, 0.0, 20.0, 20.0],  # target deltas (0.5, 0, log 2, 0)
        ]
    )
    pred = torch.tensor(
        [
            [0.3, 0.0, 0.1, -0.2],
            [50.0, 50.0, 50.0, 50.0],
            [0.5, 0.25, 0.0, 0.0],
        ]
    )
    return anchors, gt, pred


def test_smooth_l1_loss_with_zero_beta_is_l1_sum_over_foreground_rows():
    anchors, gt, pred = hand_loss_inputs()
    fg = torch.tensor([True, False, True])
    loss = box_regression_loss(anchors, Box2BoxTransform((1.0, 1.0, 1.0, 1.0)), pred, gt, fg, "smooth_l1", 0.0)
    # row 0: |0.3-0.1| + |0-0.2| + |0.1-0| + |-0.2-0| = 0.7 ; row 2: 0 + 0.25 + log 2 + 0
    expected = 0.7 + 0.25 + math.log(2.0)
    assert loss.shape == ()
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_smooth_l1_loss_without_mask_sums_every_row():
    anchors, gt, pred = hand_loss_inputs()
    loss = box_regression_loss(anchors, Box2BoxTransform((1.0, 1.0, 1.0, 1.0)), pred, gt, None, "smooth_l1", 0.0)
    expected = 0.7 + 200.0 + 0.25 + math.log(2.0)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_smooth_l1_loss_accepts_anchors_as_a_list_of_levels():
    anchors, gt, pred = hand_loss_inputs()
    fg = torch.tensor([True, False, True])
    loss = box_regression_loss(
        [anchors[:1], anchors[1:]], Box2BoxTransform((1.0, 1.0, 1.0, 1.0)), pred, gt, fg, "smooth_l1", 0.0
    )
    assert math.isclose(loss.item(), 0.7 + 0.25 + math.log(2.0), rel_tol=1e-6)


def test_smooth_l1_loss_is_zero_for_exact_predictions():
    anchors, gt, _ = hand_loss_inputs()
    exact = torch.tensor(
        [[0.1, 0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.5, 0.0, math.log(2.0), 0.0]], dtype=torch.float32
    )
    loss = box_regression_loss(anchors, Box2BoxTransform((1.0, 1.0, 1.0, 1.0)), exact, gt, None, "smooth_l1", 0.0)
    assert abs(loss.item()) < 1e-6


def test_unknown_loss_type_raises():
    anchors, gt, pred = hand_loss_inputs()
    with pytest.raises(ValueError):
        box_regression_loss(anchors, Box2BoxTransform((1.0, 1.0, 1.0, 1.0)), pred, gt, None, "l2")


def test_decode_reference_is_consistent_with_hand_example():
    """Sanity check of the test's own reference decoder against the one-pixel example."""
    assert np.allclose(decode_reference([0.1, 0, 0, 0], [0, 0, 10, 20], (1, 1, 1, 1)), [1, 0, 11, 20])
