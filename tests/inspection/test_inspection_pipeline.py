"""``inspect_model`` end to end: on the demo model and a real DSB2018 image every step is
filled, the output is the model's own, and a model built around a backbone a user registers
is inspected too."""

from __future__ import annotations

import pytest
import torch
from conftest import require_dataset
from inspection_fixtures import demo_predictor, model_output, shared_inspection
from torch import nn

from project.config import get_cfg
from project.data.detection_utils import build_augmentation
from project.inspection import ALL_STEPS, InspectionOptions, input_from_file, inspect_model
from project.layers import ShapeSpec
from project.modeling import build_model
from project.modeling.backbone import Backbone
from project.modeling.registry import BACKBONE_REGISTRY


def test_every_step_is_filled_and_the_output_is_the_models(data_root):
    predictor, inspection_input, inspection = shared_inspection(data_root)
    assert inspection.skipped == {}
    assert inspection.anchors is not None and inspection.anchors.labels is not None
    assert inspection.proposals is not None and inspection.boxes is not None and inspection.masks is not None
    assert inspection.activations and inspection.weights
    expected = model_output(predictor, inspection_input)
    found = inspection.capture.output
    assert len(expected) > 0
    assert torch.equal(found.pred_boxes.tensor, expected.pred_boxes.tensor)
    assert torch.equal(found.scores, expected.scores)
    assert torch.equal(found.pred_classes, expected.pred_classes)
    assert torch.equal(found.pred_masks, expected.pred_masks)
    assert set(inspection.seconds) >= {"model", "anchors", "proposals", "boxes", "masks", "weights"}


def test_an_image_without_annotations_skips_only_the_anchor_labels(data_root):
    predictor, _, _ = shared_inspection(data_root)
    path = require_dataset(data_root, "dsb2018") / "val" / "b6c9b58de0388891.png"
    inspection_input = input_from_file(str(path), predictor.augmentations, predictor.input_format)
    options = InspectionOptions(top_n=5, steps=("anchors", "proposals", "boxes"))
    inspection = inspect_model(predictor.model, inspection_input, options)
    assert set(inspection.skipped) == {"anchor_labels"}
    assert inspection.anchors.labels is None and len(inspection.anchors.top.index) == 5
    assert inspection.proposals.recall_after is None
    assert inspection.masks is None and inspection.weights == [] and inspection.activations == []


def test_options_are_checked():
    with pytest.raises(ValueError, match="unknown inspection step"):
        InspectionOptions(steps=("anchors", "gradients"))
    with pytest.raises(ValueError, match="top_n"):
        InspectionOptions(top_n=0)
    assert InspectionOptions().steps == ALL_STEPS


def test_the_model_keeps_its_mode_and_no_hook_stays(data_root):
    predictor = demo_predictor(data_root)
    _, inspection_input, _ = shared_inspection(data_root)
    predictor.model.train()
    inspect_model(predictor.model, inspection_input, InspectionOptions(steps=("activations",)))
    assert predictor.model.training
    assert all(not m._forward_hooks for m in predictor.model.modules())


class TwoStageBackbone(Backbone):
    """A backbone a user might register: two plain conv stages, outputs named "a" and "b"."""

    def __init__(self, cfg, input_shape: ShapeSpec):
        super().__init__()
        self.first = nn.Sequential(nn.Conv2d(input_shape.channels, 16, 3, stride=4, padding=1), nn.ReLU())
        self.second = nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())
        self._out_features = ["a", "b"]
        self._out_feature_channels = {"a": 16, "b": 16}
        self._out_feature_strides = {"a": 4, "b": 8}

    @property
    def size_divisibility(self) -> int:
        return 8

    def forward(self, x):
        a = self.first(x)
        return {"a": a, "b": self.second(a)}


@pytest.fixture
def registered_backbone():
    name = "InspectionTestTwoStageBackbone"

    def build(cfg, input_shape):
        return TwoStageBackbone(cfg, input_shape)

    build.__name__ = name
    BACKBONE_REGISTRY.register(build)
    yield name
    BACKBONE_REGISTRY._obj_map.pop(name)


def test_a_model_around_a_registered_backbone_is_inspected(registered_backbone, data_root, tmp_path):
    cfg = get_cfg(
        [
            "MODEL.DEVICE=cpu",
            f"MODEL.BACKBONE.NAME={registered_backbone}",
            "MODEL.RPN.IN_FEATURES=[a,b]",
            "MODEL.ANCHOR_GENERATOR.SIZES=[[16],[32]]",
            "MODEL.ROI_HEADS.IN_FEATURES=[a,b]",
            "INPUT.MIN_SIZE_TEST=128",
            "INPUT.MAX_SIZE_TEST=128",
        ]
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    path = require_dataset(data_root, "dsb2018") / "val" / "b6c9b58de0388891.png"
    inspection_input = input_from_file(str(path), build_augmentation(cfg, False), cfg.INPUT.FORMAT)
    inspection = inspect_model(model, inspection_input, InspectionOptions(top_n=3))
    names = [r.name for r in inspection.activations]
    assert names == ["first", "second"]
    # The stages' outputs are the output dict's own tensors: recorded once, under both names.
    assert [r.also for r in inspection.activations] == [["a"], ["b"]]
    assert inspection.anchors is not None and len(inspection.anchors.level_sizes) == 2
    assert inspection.skipped == {"anchor_labels": inspection.skipped["anchor_labels"]}
    with torch.no_grad():
        expected = model([inspection_input.model_input])[0]["instances"]
    assert torch.equal(inspection.capture.output.pred_boxes.tensor, expected.pred_boxes.tensor)
