"""``capture``: one run of the model, each stage's inputs and outputs kept by forward hooks,
the model's own output unchanged."""

from __future__ import annotations

import torch
from inspection_fixtures import demo_predictor, model_output, shared_inspection
from torch import nn

from project.inspection.capture import HookSet, capture, component


def test_each_stage_is_captured_with_the_shapes_it_promises(data_root):
    predictor, inspection_input, inspection = shared_inspection(data_root)
    found = inspection.capture
    model = predictor.model
    assert found.input_size == (288, 288) == inspection_input.input_size
    assert sorted(found.features) == ["p2", "p3", "p4", "p5", "p6"]
    assert found.images.tensor.shape[-2:] == (288, 288)  # already a multiple of 32
    rpn = model.proposal_generator
    per_location = rpn.anchor_generator.num_anchors
    levels = [found.features[name] for name in rpn.in_features]
    assert [len(a) for a in found.anchors] == [f.shape[2] * f.shape[3] * a for f, a in zip(levels, per_location)]
    for feature, logits, deltas, a in zip(levels, found.objectness_logits, found.anchor_deltas, per_location):
        assert logits.shape == (1, a, *feature.shape[2:])
        assert deltas.shape == (1, 4 * a, *feature.shape[2:])
    assert len(found.proposals) == len(found.roi_proposals) == model.proposal_generator.post_nms_topk[False]
    scores, deltas = found.box_predictions
    num_classes = model.roi_heads.num_classes
    assert scores.shape == (len(found.roi_proposals), num_classes + 1)
    assert deltas.shape == (len(found.roi_proposals), 4 * num_classes)
    assert found.detections.pred_masks.shape[1:] == (1, 28, 28)
    assert found.detections.image_size == (288, 288) and found.output.image_size == (360, 360)
    assert found.notes == {}


def test_the_captured_proposals_are_the_rpns(data_root):
    predictor, inspection_input, inspection = shared_inspection(data_root)
    model = predictor.model
    with torch.no_grad():
        images = model.preprocess_image([inspection_input.model_input])
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features)
    found = inspection.capture.proposals
    assert torch.equal(found.proposal_boxes.tensor, proposals[0].proposal_boxes.tensor)
    assert torch.equal(found.objectness_logits, proposals[0].objectness_logits)


def test_a_model_without_the_usual_components_is_still_run(data_root):
    class Plain(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, inputs):
            return self.inner(inputs)

    predictor = demo_predictor(data_root)
    _, inspection_input, _ = shared_inspection(data_root)
    found = capture(Plain(predictor.model), inspection_input.model_input)
    assert len(found.output) == len(model_output(predictor, inspection_input))
    assert found.features is None and found.anchors is None and found.detections is None
    assert set(found.notes) >= {"features", "anchors", "proposals", "detections"}


def test_hooks_are_removed_even_when_the_model_fails():
    layer = nn.Linear(2, 2)
    try:
        with HookSet() as hooks:
            hooks.add(layer, lambda module, args, kwargs, output: None)
            assert len(layer._forward_hooks) == 1
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert len(layer._forward_hooks) == 0


def test_component_follows_dotted_paths(data_root):
    predictor, _, _ = shared_inspection(data_root)
    model = predictor.model
    assert component(model, "proposal_generator.rpn_head") is model.proposal_generator.rpn_head
    assert component(model, "roi_heads.keypoint_head") is None
    assert component(model, "pixel_mean") is None  # a buffer, not a module
