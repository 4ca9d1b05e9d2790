"""Box refinement: each detection traced to its proposal and class-specific box, and the final
detections in the report exactly the model's."""

from __future__ import annotations

import json

import torch
from inspection_fixtures import model_output, shared_inspection

from project.inspection import write_report
from project.inspection.refinement import trace_output
from project.structures import Boxes, Instances


def test_final_detections_in_the_report_are_exactly_the_models(data_root, tmp_path):
    predictor, inspection_input, inspection = shared_inspection(data_root)
    expected = model_output(predictor, inspection_input)
    report = write_report(inspection, tmp_path)
    final = json.loads(report.json_path.read_text())["steps"]["boxes"]["final_detections"]
    assert len(final) == len(expected) > 0
    boxes = torch.tensor([row["box"] for row in final], dtype=torch.float32)
    assert torch.equal(boxes, expected.pred_boxes.tensor)
    assert torch.equal(torch.tensor([row["score"] for row in final], dtype=torch.float32), expected.scores)
    assert [row["class"] for row in final] == expected.pred_classes.tolist()


def test_each_detection_is_its_proposals_class_specific_box(data_root):
    predictor, _, inspection = shared_inspection(data_root)
    step = inspection.boxes
    predictor_head = predictor.model.roi_heads.box_predictor
    proposals = inspection.capture.roi_proposals
    decoded = predictor_head.predict_boxes(inspection.capture.box_predictions, [proposals])[0]
    probs = predictor_head.predict_probs(inspection.capture.box_predictions, [proposals])[0]
    assert step.roi_index is not None and len(step.roi_index) == len(step.detections) > 0
    for i, (roi, cls) in enumerate(zip(step.roi_index.tolist(), step.detections.pred_classes.tolist())):
        box = Boxes(decoded[roi, 4 * cls : 4 * cls + 4][None].clone())
        box.clip((288, 288))
        assert torch.equal(box.tensor[0], step.refined_boxes[i])
        assert float(probs[roi, cls]) == float(step.detections.scores[i])
    assert torch.equal(step.roi_boxes, proposals.proposal_boxes.tensor)
    assert step.num_candidates >= len(step.detections)
    assert step.settings["score_thresh"] == predictor_head.test_score_thresh
    assert torch.equal(step.output_index, torch.arange(len(step.output)))


def test_tracing_the_output_skips_boxes_that_vanish_when_rescaled():
    detections = Instances(
        (100, 100), pred_boxes=Boxes(torch.tensor([[10.0, 10, 20, 20], [200, 200, 210, 210], [0, 0, 50, 50]]))
    )
    output = Instances((50, 50), pred_boxes=Boxes(torch.tensor([[5.0, 5, 10, 10], [0, 0, 25, 25]])))
    assert trace_output(detections, output).tolist() == [0, 2]
    other = Instances((50, 50), pred_boxes=Boxes(torch.tensor([[5.0, 5, 10, 11], [0, 0, 25, 25]])))
    assert trace_output(detections, other) is None
