"""Anchors: the labels the inspection reports are the RPN's own matching for the image, and the
top anchors are those of highest objectness, refined by the RPN's deltas."""

from __future__ import annotations

import json

import torch
from inspection_fixtures import demo_input, demo_predictor, dsb2018_record, shared_inspection

from project.data import DatasetMapper
from project.data.detection_utils import build_augmentation
from project.inspection import InspectionOptions, inspect_model, write_report
from project.inspection.anchors import IGNORED, NEGATIVE, POSITIVE, label_anchors
from project.modeling.matcher import Matcher
from project.structures import Boxes, pairwise_iou


def rpn_labels_computed_independently(predictor, record):
    """The RPN's labelling of this image's anchors before sampling, as ``label_and_sample_anchors``
    does it: the training mapper's gt boxes (at the test size), the RPN's anchors of the image's
    feature maps, its ``anchor_matcher``, and its boundary rule."""
    cfg = predictor.cfg
    mapper = DatasetMapper(
        True,
        augmentations=build_augmentation(cfg, False),
        image_format=cfg.INPUT.FORMAT,
        use_instance_mask=True,
        instance_mask_format="bitmask",
    )
    mapped = mapper(record)
    model, rpn = predictor.model, predictor.model.proposal_generator
    with torch.no_grad():
        images = model.preprocess_image([mapped])
        features = model.backbone(images.tensor)
        anchors = Boxes.cat(rpn.anchor_generator([features[f] for f in rpn.in_features]))
    gt = mapped["instances"]
    matched, labels = rpn.anchor_matcher(pairwise_iou(gt.gt_boxes, anchors))
    if rpn.anchor_boundary_thresh >= 0:
        labels[~anchors.inside_box(gt.image_size, rpn.anchor_boundary_thresh)] = -1
    return labels, matched, len(gt)


def test_positive_anchors_are_the_rpns_own_matching(data_root, tmp_path):
    predictor, _, inspection = shared_inspection(data_root)
    labels, matched, num_gt = rpn_labels_computed_independently(predictor, dsb2018_record(data_root))
    report = write_report(inspection, tmp_path, None)
    table = json.loads(report.json_path.read_text())["steps"]["anchors"]
    assert table["num_positive"] == int((labels == 1).sum()) > 0
    assert table["num_negative"] == int((labels == 0).sum()) > 0
    assert table["num_ignored"] == int((labels == -1).sum())
    assert table["num_gt"] == num_gt == 18
    per_gt = torch.bincount(matched[labels == 1], minlength=num_gt)
    assert table["positives_per_gt"] == per_gt.tolist()
    assert table["gt_with_positive_anchor"] == int((per_gt > 0).sum())
    assert table["matcher"]["iou_thresholds"] == [0.3, 0.7]
    assert torch.equal(inspection.anchors.labels.labels, labels.to(torch.int8))


def test_anchors_crossing_the_border_are_ignored_as_the_rpn_ignores_them(data_root):
    predictor = demo_predictor(data_root, "MODEL.RPN.BOUNDARY_THRESH=0")
    labels, _, _ = rpn_labels_computed_independently(predictor, dsb2018_record(data_root))
    inspection = inspect_model(predictor.model, demo_input(predictor, data_root), InspectionOptions(steps=("anchors",)))
    found = inspection.anchors.labels
    assert found.boundary_thresh == 0.0
    assert torch.equal(found.labels, labels.to(torch.int8))
    outside = ~Boxes(inspection.anchors.anchors).inside_box((288, 288), 0)
    assert outside.any() and (found.labels[outside] == IGNORED).all()


def test_top_anchors_have_the_highest_logits_and_the_rpns_refinement(data_root):
    predictor, _, inspection = shared_inspection(data_root)
    found, rpn = inspection.capture, predictor.model.proposal_generator
    top = inspection.anchors.top
    assert len(top.index) == 30
    logits = torch.cat([x[0].permute(1, 2, 0).reshape(-1) for x in found.objectness_logits])
    deltas = torch.cat([x[0].permute(1, 2, 0).reshape(-1, 4) for x in found.anchor_deltas])
    anchors = Boxes.cat(found.anchors).tensor
    assert torch.equal(top.logits, logits[top.index])
    assert float(top.logits[-1]) >= float(logits.topk(30).values[-1])
    assert torch.equal(top.anchors, anchors[top.index])
    assert torch.equal(top.refined, rpn.box2box_transform.apply_deltas(deltas[top.index], anchors[top.index]))
    sizes = inspection.anchors.level_sizes
    assert (top.level == torch.bucketize(top.index, torch.tensor(sizes).cumsum(0), right=True)).all()
    assert top.labels is not None and len(top.labels) == 30


def test_label_anchors_on_boxes_drawn_by_hand():
    anchors = [Boxes(torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 7], [20, 20, 30, 30], [-5, 0, 5, 10]]))]
    matcher = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    one = label_anchors(anchors, Boxes(torch.tensor([[0.0, 0, 10, 10]])), (64, 64), matcher)
    # IoU with the box: 1, 0.7, 0 and 1/3.
    assert one.labels.tolist() == [POSITIVE, POSITIVE, NEGATIVE, IGNORED]
    assert one.positives_per_gt.tolist() == [2] and one.gt_with_positive == 1
    gt = Boxes(torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 31]]))
    two = label_anchors(anchors, gt, (64, 64), matcher)
    assert two.labels.tolist() == [POSITIVE, POSITIVE, POSITIVE, IGNORED]
    assert two.positives_per_gt.tolist() == [2, 1] and two.gt_with_positive == 2
    # An image 8 pixels high: only the second anchor lies inside it.
    assert label_anchors(anchors, gt, (8, 64), matcher, boundary_thresh=0).labels.tolist() == [-1, 1, -1, -1]
    assert label_anchors(anchors, gt, (8, 64), matcher, boundary_thresh=3).labels.tolist() == [1, 1, -1, -1]
