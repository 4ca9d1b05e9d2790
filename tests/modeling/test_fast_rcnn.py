"""``FastRCNNOutputLayers.losses`` on a hand-built batch whose losses are worked out by hand, and
``fast_rcnn_inference`` against a reference written here with ``torchvision.ops.batched_nms``
(scores (R, K + 1) with the background column last, class-specific boxes (R, 4K))."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from project.config import default_cfg
from project.layers import ShapeSpec
from project.modeling.box_regression import Box2BoxTransform
from project.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, fast_rcnn_inference
from project.structures import Boxes, Instances

K = 3  # foreground classes 0, 1, 2; background is class index 3, the last logit
BG = K
GARBAGE = 9.0  # deltas no term of the box loss may read: background rows, other classes' slots
LN2 = math.log(2.0)


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------


def hand_built_proposals():
    """Image 1: three RoIs (classes 0, 2, background); image 2: two (class 1, background).

    Targets with weights (10, 10, 5, 5), i.e. dx = 10 (x' - x) / w, dw = 5 log(w' / w):
      RoI 0: proposal == gt (0, 0, 10, 10)                      -> (0, 0, 0, 0)
      RoI 1: proposal (10, 10, 30, 30): centre (20, 20), 20 x 20;
             gt (12, 10, 32, 50): centre (22, 30), 20 x 40       -> (10*2/20, 10*10/20, 5 log 1, 5 log 2)
                                                                  = (1, 5, 0, 5 ln 2)
      RoI 3: proposal (0, 0, 20, 40): centre (10, 20), 20 x 40;
             gt (10, 0, 20, 40): centre (15, 20), 10 x 40        -> (10*5/20, 0, 5 log(1/2), 0)
                                                                  = (2.5, 0, -5 ln 2, 0)
    Background RoIs 2 and 4 carry some gt box that must not matter.
    """
    image1 = Instances(
        (100, 100),
        proposal_boxes=Boxes(torch.tensor([[0.0, 0, 10, 10], [10, 10, 30, 30], [40, 40, 60, 60]])),
        gt_boxes=Boxes(torch.tensor([[0.0, 0, 10, 10], [12, 10, 32, 50], [0, 0, 10, 10]])),
        gt_classes=torch.tensor([0, 2, BG]),
    )
    image2 = Instances(
        (100, 100),
        proposal_boxes=Boxes(torch.tensor([[0.0, 0, 20, 40], [50, 50, 70, 90]])),
        gt_boxes=Boxes(torch.tensor([[10.0, 0, 20, 40], [10, 0, 20, 40]])),
        gt_classes=torch.tensor([1, BG]),
    )
    return [image1, image2]


LOGITS = torch.tensor(
    [
        [2.0, 0.0, 0.0, 0.0],  # gt 0:  exp = e^2, 1, 1, 1       -> CE = ln(e^2 + 3) - 2
        [0.0, 0.0, math.log(3.0), 0.0],  # gt 2: exp = 1, 1, 3, 1 -> p = 3/6, CE = ln 2
        [0.0, 0.0, 0.0, 0.0],  # gt background: uniform over 4  -> CE = ln 4
        [0.0, math.log(5.0), 0.0, 0.0],  # gt 1: exp = 1, 5, 1, 1 -> p = 5/8, CE = ln(8/5)
        [LN2, 0.0, 0.0, LN2],  # gt background: exp = 2, 1, 1, 2 -> p = 2/6, CE = ln 3
    ]
)
EXPECTED_LOSS_CLS = (math.log(math.e**2 + 3) - 2 + LN2 + math.log(4) + math.log(8 / 5) + math.log(3)) / 5

# Predicted deltas of each foreground RoI for its own gt class (minus the target, per component):
#   RoI 0 (class 0): ( 0.1, -0.2,  0.05, 0.0 ) - (0, 0, 0, 0)           -> 0.1, 0.2, 0.05, 0
#   RoI 1 (class 2): ( 1.5,  5.0,  0.0,  3.0 ) - (1, 5, 0, 5 ln 2)      -> 0.5, 0, 0, 5 ln 2 - 3 (= 0.4657)
#   RoI 3 (class 1): ( 2.0,  0.0, -3.0, 0.25) - (2.5, 0, -5 ln 2, 0)    -> 0.5, 0, 5 ln 2 - 3, 0.25
FOREGROUND_DELTAS = {0: (0, [0.1, -0.2, 0.05, 0.0]), 1: (2, [1.5, 5.0, 0.0, 3.0]), 3: (1, [2.0, 0.0, -3.0, 0.25])}
ABS_ERRORS = [0.1, 0.2, 0.05, 0.0, 0.5, 0.0, 0.0, 5 * LN2 - 3, 0.5, 0.0, 5 * LN2 - 3, 0.25]
NUM_ROIS = 5  # the box loss is divided by all sampled RoIs, background included, not by the 3 foreground


def class_specific_deltas() -> torch.Tensor:
    deltas = torch.full((NUM_ROIS, 4 * K), GARBAGE)
    for roi, (cls, values) in FOREGROUND_DELTAS.items():
        deltas[roi, 4 * cls : 4 * cls + 4] = torch.tensor(values)
    return deltas


def class_agnostic_deltas() -> torch.Tensor:
    deltas = torch.full((NUM_ROIS, 4), GARBAGE)
    for roi, (_, values) in FOREGROUND_DELTAS.items():
        deltas[roi] = torch.tensor(values)
    return deltas


def output_layers(**kwargs) -> FastRCNNOutputLayers:
    return FastRCNNOutputLayers(8, box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)), num_classes=K, **kwargs)


def test_the_default_box_loss_is_l1_on_weights_10_10_5_5():
    cfg = default_cfg()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = K
    layers = FastRCNNOutputLayers(cfg, ShapeSpec(channels=8))
    assert layers.box2box_transform.weights == (10.0, 10.0, 5.0, 5.0)
    assert (layers.box_reg_loss_type, layers.smooth_l1_beta) == ("smooth_l1", 0.0)
    losses = layers.losses((LOGITS, class_specific_deltas()), hand_built_proposals())
    assert losses["loss_cls"].item() == pytest.approx(EXPECTED_LOSS_CLS, rel=1e-6)
    # beta 0: plain L1, the sum of the absolute errors over the 3 foreground RoIs / 5 RoIs
    #   (0.35 + 0.5 + (5 ln 2 - 3) + 0.75 + (5 ln 2 - 3)) / 5 = (10 ln 2 - 4.4) / 5 = 0.50629
    assert losses["loss_box_reg"].item() == pytest.approx((10 * LN2 - 4.4) / 5, rel=1e-5)


@pytest.mark.parametrize("deltas", [class_specific_deltas, class_agnostic_deltas], ids=["specific", "agnostic"])
def test_l1_box_loss_and_cross_entropy_by_hand(deltas):
    losses = output_layers(cls_agnostic_bbox_reg=deltas is class_agnostic_deltas).losses(
        (LOGITS, deltas()), hand_built_proposals()
    )
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    assert losses["loss_cls"].item() == pytest.approx(EXPECTED_LOSS_CLS, rel=1e-6)
    # (0.34072 + 0.69315 + 1.38629 + 0.47000 + 1.09861) / 5 = 3.98877 / 5
    assert EXPECTED_LOSS_CLS == pytest.approx(0.797762, abs=1e-6)
    assert losses["loss_box_reg"].item() == pytest.approx(sum(ABS_ERRORS) / NUM_ROIS, rel=1e-5)
    assert sum(ABS_ERRORS) / NUM_ROIS == pytest.approx(0.506294, abs=1e-6)


def test_smooth_l1_box_loss_by_hand():
    """beta 0.3: errors below it cost 0.5 x^2 / 0.3, the others |x| - 0.15."""
    beta = 0.3
    quadratic = [0.1, 0.2, 0.05, 0.0, 0.0, 0.0, 0.0, 0.25]  # the 8 errors below 0.3
    linear = [0.5, 5 * LN2 - 3, 0.5, 5 * LN2 - 3]  # 0.5, 0.4657, 0.5, 0.4657
    assert sorted(quadratic + linear) == sorted(ABS_ERRORS)
    expected = (sum(0.5 * x * x / beta for x in quadratic) + sum(x - 0.5 * beta for x in linear)) / NUM_ROIS
    # (0.5 * (0.01 + 0.04 + 0.0025 + 0.0625) / 0.3 + (1.93147 - 0.6)) / 5 = (0.19167 + 1.33147) / 5
    assert expected == pytest.approx(0.304628, abs=1e-6)
    losses = output_layers(smooth_l1_beta=beta).losses((LOGITS, class_specific_deltas()), hand_built_proposals())
    assert losses["loss_box_reg"].item() == pytest.approx(expected, rel=1e-5)
    assert losses["loss_cls"].item() == pytest.approx(EXPECTED_LOSS_CLS, rel=1e-6)


def test_exact_deltas_cost_nothing_and_garbage_outside_the_gt_class_is_not_read():
    deltas = class_specific_deltas()
    deltas[1, 8:12] = torch.tensor([1.0, 5.0, 0.0, 5 * LN2])
    deltas[3, 4:8] = torch.tensor([2.5, 0.0, -5 * LN2, 0.0])
    deltas[0, 0:4] = 0.0
    losses = output_layers().losses((LOGITS, deltas), hand_built_proposals())
    assert losses["loss_box_reg"].item() == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------------------------------------
# inference
# ---------------------------------------------------------------------------------------------


def reference_inference(boxes, scores, image_shape, score_thresh, nms_thresh, topk):
    """Written for this test: drop the background (last) column, threshold, take each
    candidate's own class box clipped to the image, per-class NMS, by decreasing score, top-k."""
    num_rois, num_classes = scores.shape[0], scores.shape[1] - 1
    height, width = image_shape
    per_class = boxes.reshape(num_rois, num_classes, 4).clone()
    per_class[..., 0::2] = per_class[..., 0::2].clamp(0, width)
    per_class[..., 1::2] = per_class[..., 1::2].clamp(0, height)
    rois, classes, cand_boxes, cand_scores = [], [], [], []
    for r in range(num_rois):
        for c in range(num_classes):
            if scores[r, c] > score_thresh:
                rois.append(r)
                classes.append(c)
                cand_boxes.append(per_class[r, c])
                cand_scores.append(scores[r, c])
    if not rois:
        return torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    rois, classes = torch.tensor(rois), torch.tensor(classes)
    cand_boxes, cand_scores = torch.stack(cand_boxes), torch.stack(cand_scores)
    keep = torchvision.ops.batched_nms(cand_boxes, cand_scores, classes, nms_thresh)
    keep = keep[torch.sort(cand_scores[keep], descending=True, stable=True).indices]
    if topk >= 0:
        keep = keep[:topk]
    return cand_boxes[keep], cand_scores[keep], classes[keep], rois[keep]


def assert_matches_reference(detections, rois, boxes, scores, image_shape, score_thresh, nms_thresh, topk):
    ref_boxes, ref_scores, ref_classes, ref_rois = reference_inference(
        boxes, scores, image_shape, score_thresh, nms_thresh, topk
    )
    assert detections.image_size == image_shape
    assert torch.equal(detections.pred_boxes.tensor, ref_boxes)
    assert torch.equal(detections.scores, ref_scores)
    assert torch.equal(detections.pred_classes, ref_classes)
    assert torch.equal(rois, ref_rois)


def random_case(generator, num_rois, image_shape, spill):
    """Probabilities (R, K + 1) from random logits, background last; class-specific boxes
    (R, 4K) jittered around 4 centres so that NMS has work, each side 0.1 to 0.6 of the image's
    plus ``spill`` times it, so that larger ``spill`` sends more boxes across the borders."""
    height, width = image_shape
    probs = torch.softmax(torch.randn(num_rois, K + 1, generator=generator) * 2, dim=1)
    centres = torch.rand(4, 2, generator=generator) * torch.tensor([width, height])
    centre = centres[torch.randint(0, 4, (num_rois, K), generator=generator)]
    centre = centre + torch.randn(num_rois, K, 2, generator=generator) * 3
    size = (torch.rand(num_rois, K, 2, generator=generator) * 0.5 + 0.1 + spill) * torch.tensor([width, height])
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=2).reshape(num_rois, 4 * K)
    return boxes, probs


def test_background_is_the_last_column_by_hand():
    """RoI 0 scores class 0 at 0.7 (background 0.1); RoI 1 is background at 0.8. Taking column 0
    as background would instead report RoI 1 as class 1 at 0.8 and drop RoI 0."""
    scores = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    boxes = torch.tensor([[1.0, 2, 11, 12, 3, 4, 13, 14], [20, 20, 30, 30, 21, 21, 31, 31]])
    (detections,), (rois,) = fast_rcnn_inference([boxes], [scores], [(40, 40)], 0.5, 0.5, 100)
    assert detections.pred_classes.tolist() == [0]
    assert detections.scores.tolist() == [pytest.approx(0.7)]
    assert detections.pred_boxes.tensor.tolist() == [[1.0, 2.0, 11.0, 12.0]]
    assert rois.tolist() == [0]


def test_nms_is_per_class_and_boxes_are_clipped_by_hand():
    """One RoI with the same box for both classes (0.45 and 0.35) survives as two detections;
    a second RoI, of class 0 at 0.4, is suppressed: in a 40 x 24 (w x h) image its box
    (-5, 2, 45, 34) and the first's (-5, 2, 45, 30) both clip to (0, 2, 40, 24), IoU 1."""
    scores = torch.tensor([[0.45, 0.35, 0.2], [0.4, 0.1, 0.5]])
    same = [-5.0, 2, 45, 30]
    boxes = torch.tensor([same + same, [-5.0, 2, 45, 34, 0, 0, 1, 1]])
    (detections,), (rois,) = fast_rcnn_inference([boxes], [scores], [(24, 40)], 0.3, 0.5, 100)
    assert detections.pred_classes.tolist() == [0, 1]
    assert detections.scores.tolist() == [pytest.approx(0.45), pytest.approx(0.35)]
    assert detections.pred_boxes.tensor.tolist() == [[0.0, 2.0, 40.0, 24.0]] * 2
    assert rois.tolist() == [0, 0]


@pytest.mark.parametrize("seed", range(4))
def test_matches_per_class_batched_nms_with_background_last(seed):
    g = torch.Generator().manual_seed(seed)
    image_shapes = [(60, 80), (45, 30)]
    cases = [random_case(g, 40, shape, spill) for shape, spill in zip(image_shapes, (0.3, 0.0))]
    boxes, scores = [c[0] for c in cases], [c[1] for c in cases]
    score_thresh, nms_thresh, topk = 0.05, 0.5, 10
    detections, rois = fast_rcnn_inference(boxes, scores, image_shapes, score_thresh, nms_thresh, topk)
    assert len(detections) == len(rois) == 2
    for i, shape in enumerate(image_shapes):
        assert_matches_reference(detections[i], rois[i], boxes[i], scores[i], shape, score_thresh, nms_thresh, topk)

    # The case exercises what it claims: NMS suppresses, top-k cuts, clipping changes boxes, and
    # reading column 0 as the background would give other detections.
    ref_boxes, ref_scores, ref_classes, ref_rois = reference_inference(
        boxes[0], scores[0], image_shapes[0], score_thresh, nms_thresh, -1
    )
    candidates = int((scores[0][:, :K] > score_thresh).sum())
    assert topk < len(ref_scores) < candidates
    unclipped = boxes[0].reshape(-1, K, 4)[ref_rois[:topk], ref_classes[:topk]]
    assert not torch.equal(ref_boxes[:topk], unclipped)
    background_first = torch.cat([scores[0][:, 1:], scores[0][:, :1]], dim=1)  # column 0 moved last
    misread = reference_inference(boxes[0], background_first, image_shapes[0], score_thresh, nms_thresh, topk)
    assert not torch.equal(misread[1], ref_scores[:topk])


def test_no_limit_and_no_candidates():
    g = torch.Generator().manual_seed(7)
    boxes, scores = random_case(g, 30, (50, 50), 0.1)
    (detections,), (rois,) = fast_rcnn_inference([boxes], [scores], [(50, 50)], 0.05, 0.5, -1)
    assert_matches_reference(detections, rois, boxes, scores, (50, 50), 0.05, 0.5, -1)
    (detections,), (rois,) = fast_rcnn_inference([boxes], [scores], [(50, 50)], 1.0, 0.5, 100)
    assert len(detections) == 0 and len(rois) == 0
