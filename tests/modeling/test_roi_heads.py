"""Training-time proposal handling of ``StandardROIHeads``: ground truth added as proposals,
matching, and the foreground/background sample sizes, on hand-built boxes."""

from __future__ import annotations

import pytest
import torch

from project.config import get_cfg
from project.layers import ShapeSpec
from project.modeling.proposal_generator.proposal_utils import GT_OBJECTNESS_LOGIT, add_ground_truth_to_proposals
from project.modeling.roi_heads import StandardROIHeads
from project.structures import Boxes, Instances, pairwise_iou
from project.utils.events import EventStorage

NUM_CLASSES = 3
BATCH = 64
FRACTION = 0.25
GT_BOXES = torch.tensor([[10.0, 10.0, 60.0, 60.0], [100.0, 20.0, 180.0, 90.0]])
GT_CLASSES = torch.tensor([0, 2])


@pytest.fixture(scope="module")
def heads():
    cfg = get_cfg(
        [
            "model=mask_rcnn_R_50_FPN",
            "MODEL.DEVICE=cpu",
            f"MODEL.ROI_HEADS.NUM_CLASSES={NUM_CLASSES}",
            f"MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE={BATCH}",
            f"MODEL.ROI_HEADS.POSITIVE_FRACTION={FRACTION}",
        ]
    )
    shapes = {f"p{i}": ShapeSpec(channels=256, stride=2**i) for i in range(2, 6)}
    return StandardROIHeads(cfg, shapes).train()


def targets() -> Instances:
    return Instances((200, 200), gt_boxes=Boxes(GT_BOXES.clone()), gt_classes=GT_CLASSES.clone())


def proposals(num_near: int, num_far: int) -> Instances:
    """``num_near`` proposals that overlap a ground-truth box with IoU >= 0.5 (small shifts of
    it, alternating between the two) and ``num_far`` that overlap neither."""
    near = GT_BOXES[torch.arange(num_near) % 2] + torch.arange(num_near)[:, None] % 4
    far = torch.tensor([[0.0, 120.0, 40.0, 190.0]]) + torch.arange(num_far)[:, None] * torch.tensor([0.5, 0, 0.5, 0])
    boxes = torch.cat([near, far])
    return Instances((200, 200), proposal_boxes=Boxes(boxes), objectness_logits=torch.zeros(len(boxes)))


def test_ground_truth_joins_the_proposals_last_with_a_certain_logit():
    joined = add_ground_truth_to_proposals([targets()], [proposals(3, 5)])[0]
    assert len(joined) == 10
    assert torch.equal(joined.proposal_boxes.tensor[-2:], GT_BOXES)
    assert joined.objectness_logits[-2:].tolist() == [GT_OBJECTNESS_LOGIT] * 2
    as_boxes = add_ground_truth_to_proposals([Boxes(GT_BOXES)], [proposals(3, 5)])[0]
    assert torch.equal(as_boxes.proposal_boxes.tensor, joined.proposal_boxes.tensor)
    with pytest.raises(ValueError, match="2 images"):
        add_ground_truth_to_proposals([targets(), targets()], [proposals(3, 5)])


def test_sample_takes_the_positive_fraction_of_foreground_and_fills_with_background(heads):
    torch.manual_seed(0)
    with EventStorage(0) as storage:
        (sampled,) = heads.label_and_sample_proposals([proposals(40, 150)], [targets()])
    foreground = sampled.gt_classes < NUM_CLASSES
    assert len(sampled) == BATCH
    assert int(foreground.sum()) == int(BATCH * FRACTION)  # 42 candidates, 16 taken
    assert (sampled.gt_classes[~foreground] == NUM_CLASSES).all()
    assert storage.latest()["roi_head/num_fg_samples"][0] == BATCH * FRACTION
    assert storage.latest()["roi_head/num_bg_samples"][0] == BATCH * (1 - FRACTION)


def test_few_foreground_candidates_are_all_taken(heads):
    torch.manual_seed(0)
    (sampled,) = heads.label_and_sample_proposals([proposals(3, 150)], [targets()])
    foreground = sampled.gt_classes < NUM_CLASSES
    assert int(foreground.sum()) == 3 + 2  # the near proposals and the ground truth itself
    assert len(sampled) == BATCH


def test_foreground_samples_carry_the_class_and_box_of_their_best_ground_truth(heads):
    torch.manual_seed(0)
    (sampled,) = heads.label_and_sample_proposals([proposals(40, 150)], [targets()])
    foreground = sampled.gt_classes < NUM_CLASSES
    iou = pairwise_iou(Boxes(GT_BOXES), sampled.proposal_boxes[foreground])
    best = iou.argmax(dim=0)
    assert (iou.max(dim=0).values >= 0.5).all()
    assert torch.equal(sampled.gt_classes[foreground], GT_CLASSES[best])
    assert torch.equal(sampled.gt_boxes.tensor[foreground], GT_BOXES[best])


def test_an_image_without_ground_truth_samples_background_only(heads):
    torch.manual_seed(0)
    empty = Instances((200, 200), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0, dtype=torch.long))
    (sampled,) = heads.label_and_sample_proposals([proposals(0, 100)], [empty])
    assert len(sampled) == BATCH and (sampled.gt_classes == NUM_CLASSES).all()
