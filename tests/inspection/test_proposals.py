"""Proposals: the set after NMS is the RPN's output, the set before it holds every proposal that
survived NMS, and recall is the fraction of ground-truth boxes some proposal finds."""

from __future__ import annotations

import torch
from inspection_fixtures import shared_inspection
from torchvision.ops import box_iou

from project.inspection.proposals import candidates_before_nms, recall
from project.structures import Boxes


def test_after_nms_is_the_rpns_output_and_before_nms_contains_it(data_root):
    predictor, inspection_input, inspection = shared_inspection(data_root)
    step = inspection.proposals
    rpn = predictor.model.proposal_generator
    assert torch.equal(step.after_nms.boxes, inspection.capture.proposals.proposal_boxes.tensor)
    assert len(step.after_nms) == rpn.post_nms_topk[False] < len(step.before_nms)
    assert len(step.before_nms) <= rpn.pre_nms_topk[False] * len(inspection.anchors.level_sizes)
    # Every proposal is one of the candidates, with the same logit (NMS only removes).
    same = (step.after_nms.boxes[:, None, :] == step.before_nms.boxes[None, :, :]).all(dim=2)
    assert same.any(dim=1).all()
    found = same.float().argmax(dim=1)
    assert torch.equal(step.before_nms.logits[found], step.after_nms.logits)
    assert (step.before_nms.logits[:-1] >= step.before_nms.logits[1:]).all()
    assert step.settings["nms_thresh"] == rpn.nms_thresh


def test_recall_is_the_share_of_ground_truth_found(data_root):
    _, inspection_input, inspection = shared_inspection(data_root)
    step = inspection.proposals
    gt = inspection_input.ground_truth.input_instances.gt_boxes.tensor
    for boxes, found in ((step.before_nms.boxes, step.recall_before), (step.after_nms.boxes, step.recall_after)):
        best = box_iou(gt, boxes).max(dim=1).values
        assert found == {"iou_0.5": float((best >= 0.5).float().mean()), "iou_0.7": float((best >= 0.7).float().mean())}
    assert step.recall_before["iou_0.5"] >= step.recall_after["iou_0.5"]


def test_recall_without_boxes_or_ground_truth():
    gt = Boxes(torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]))
    assert recall(gt, torch.zeros(0, 4)) == {"iou_0.5": 0.0, "iou_0.7": 0.0}
    assert recall(gt, torch.tensor([[0.0, 0, 10, 12]]))["iou_0.5"] == 0.5
    nan = recall(Boxes(torch.zeros(0, 4)), torch.tensor([[0.0, 0, 1, 1]]))["iou_0.5"]
    assert nan != nan


def test_candidates_drop_small_and_non_finite_boxes():
    class Identity:
        def apply_deltas(self, deltas, boxes):
            return boxes + deltas

    anchors = [Boxes(torch.tensor([[0.0, 0, 10, 10], [0, 0, 1, 1], [5, 5, 20, 20], [0, 0, 30, 30]]))]
    logits = [torch.tensor([0.5, 3.0, 2.0, float("nan")])]
    deltas = [torch.zeros(4, 4)]
    found = candidates_before_nms(anchors, logits, deltas, Identity(), (16, 16), pre_nms_topk=3, min_box_size=2)
    # The top 3, as the RPN's top-k ranks them: NaN first (then dropped), the 1-pixel box (too
    # small) and the box clipped to the image.
    assert found.boxes.tolist() == [[5.0, 5.0, 16.0, 16.0]]
    assert found.logits.tolist() == [2.0] and found.levels.tolist() == [0]
    found = candidates_before_nms(anchors, logits, deltas, Identity(), (16, 16), pre_nms_topk=4, min_box_size=0)
    assert found.boxes.tolist() == [[0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 16.0, 16.0], [0.0, 0.0, 10.0, 10.0]]
