"""Masks: per detection the mask head's M x M probabilities, and the pasted mask that the report
holds exactly as the model returns it."""

from __future__ import annotations

import json

import numpy as np
import torch
from inspection_fixtures import model_output, shared_inspection
from pycocotools import mask as mask_util

from project.inspection import write_report


def test_pasted_masks_in_the_report_are_the_models_pred_masks(data_root, tmp_path):
    predictor, inspection_input, inspection = shared_inspection(data_root)
    expected = model_output(predictor, inspection_input).pred_masks
    report = write_report(inspection, tmp_path)
    rows = json.loads(report.json_path.read_text())["steps"]["masks"]["instances"]
    assert len(rows) == 30 and len(expected) > 30
    for row in rows:
        pasted = mask_util.decode(row["pasted_rle"]).astype(bool)
        assert np.array_equal(pasted, expected[row["detection"]].numpy())
        assert row["pasted_area"] == int(expected[row["detection"]].sum())
    for view in inspection.masks.views:
        assert np.array_equal(view.pasted.to_array(), expected[view.output_index].numpy())


def test_probabilities_are_the_mask_heads_for_the_detection(data_root):
    _, _, inspection = shared_inspection(data_root)
    detections = inspection.capture.detections
    for view in inspection.masks.views:
        assert view.probabilities.shape == (28, 28)
        index = int(inspection.boxes.output_index[view.output_index])
        assert torch.equal(torch.from_numpy(view.probabilities), detections.pred_masks[index, 0])
        assert view.box.tolist() == inspection.capture.output.pred_boxes.tensor[view.output_index].tolist()


def test_ground_truth_shown_is_the_annotation_of_the_object_overlapped_most(data_root):
    _, inspection_input, inspection = shared_inspection(data_root)
    gt = inspection_input.ground_truth
    matched = [v for v in inspection.masks.views if v.gt_index is not None]
    assert matched, "some detection overlaps a nucleus"
    for view in matched:
        ious = torch.tensor([_box_iou(view.box, b.numpy()) for b in gt.boxes])
        assert view.gt_index == int(ious.argmax()) and abs(view.gt_box_iou - float(ious.max())) < 1e-5
        assert view.gt_mask is gt.masks[view.gt_index]
        inter = np.logical_and(view.pasted.to_array(), view.gt_mask.to_array()).sum()
        union = np.logical_or(view.pasted.to_array(), view.gt_mask.to_array()).sum()
        assert abs(view.mask_iou - inter / union) < 1e-9


def _box_iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
