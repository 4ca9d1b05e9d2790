"""Activations: one record per backbone stage and FPN level, with statistics that match the
tensors, and flags for a stage made to produce NaN, zeros or huge values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from inspection_fixtures import demo_input, demo_predictor, shared_inspection
from torch import nn

from project.inspection import InspectionOptions, inspect_model
from project.inspection.activations import (
    ActivationRecorder,
    backbone_stages,
    first_non_finite,
    reduce_activation,
)
from project.inspection.capture import HookSet

ACTIVATIONS_ONLY = InspectionOptions(steps=("activations",), montage_channels=4)
STAGES = ["bottom_up.stem", "bottom_up.res2", "bottom_up.res3", "bottom_up.res4", "bottom_up.res5"]


def test_one_record_per_stage_and_level_in_execution_order(data_root):
    predictor, _, inspection = shared_inspection(data_root)
    records = inspection.activations
    assert [r.name for r in records] == STAGES + ["p2", "p3", "p4", "p5", "p6"]
    assert [r.kind for r in records] == ["stage"] * 5 + ["level"] * 5
    features = inspection.capture.features
    for record in records[5:]:
        x = features[record.name]
        assert record.shape == tuple(x.shape)
        assert math.isclose(record.mean, float(x.mean()), rel_tol=1e-4, abs_tol=1e-6)
        assert record.channels.shape == (16, *x.shape[2:])
        assert np.array_equal(record.channels, x[0, record.channel_indices].numpy())
    assert not any(r.flags for r in records)
    assert first_non_finite(records) is None


def test_a_nan_weight_in_one_stage_is_flagged_where_it_starts(data_root):
    predictor = demo_predictor(data_root)
    with torch.no_grad():
        predictor.model.backbone.bottom_up.res3[0].conv1.weight[0, 0, 0, 0] = float("nan")
    inspection = inspect_model(predictor.model, demo_input(predictor, data_root), ACTIVATIONS_ONLY)
    flagged = {r.name: r.flags for r in inspection.activations if r.flags}
    assert "bottom_up.stem" not in flagged and "bottom_up.res2" not in flagged
    assert "non-finite" in flagged["bottom_up.res3"] and "non-finite" in flagged["p2"]
    assert first_non_finite(inspection.activations).name == "bottom_up.res3"
    res3 = next(r for r in inspection.activations if r.name == "bottom_up.res3")
    assert res3.num_nan > 0


@pytest.mark.parametrize(
    "change, flag",
    [(lambda y: y * float("nan"), "non-finite"), (lambda y: y * 0, "dead"), (lambda y: y * 1e6, "exploding")],
    ids=["nan", "zeros", "huge"],
)
def test_a_stage_changed_by_a_forward_hook_is_flagged(data_root, change, flag):
    predictor = demo_predictor(data_root)
    stage = predictor.model.backbone.bottom_up.res4
    handle = stage.register_forward_hook(lambda module, args, output: change(output))
    try:
        inspection = inspect_model(predictor.model, demo_input(predictor, data_root), ACTIVATIONS_ONLY)
    finally:
        handle.remove()
    flagged = {r.name: r.flags for r in inspection.activations if r.flags}
    assert flag in flagged["bottom_up.res4"]
    assert "bottom_up.res3" not in flagged


def test_statistics_of_a_tensor_with_nan_inf_and_dead_channels():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5) - 50
    x[:, 1] = 0
    x[0, 2, 0, 0] = float("nan")
    x[1, 2, 0, 0] = float("inf")
    record = reduce_activation("stage", "stage", 0, x, channels=2)
    finite = x[torch.isfinite(x)].double()
    assert record.num_nan == 1 and record.num_inf == 1
    assert math.isclose(record.mean, float(finite.mean()), rel_tol=1e-6)
    assert math.isclose(record.std, float(finite.std(unbiased=False)), rel_tol=1e-6)
    assert record.min == float(finite.min()) and record.max == float(finite.max())
    assert record.zero_fraction == 41 / 120  # channel 1, and the value 0 of the ramp
    assert record.dead_channel_fraction == pytest.approx(1 / 3)
    assert record.channel_indices[0] != 1 and len(record.channel_indices) == 2


class NestedBackbone(nn.Module):
    """A backbone without the FPN wrapper: its own children are the stages."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.blocks = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1)])
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        y = self.blocks[0](self.stem(x))
        return {"out": self.head(y), "mid": y * 2}


def test_stages_of_a_plain_backbone_and_its_output_dict():
    backbone = NestedBackbone()
    assert [name for name, _ in backbone_stages(backbone)] == ["stem", "head"]
    recorder = ActivationRecorder(backbone, {"blocks.0": backbone.blocks[0]}, channels=3)
    with HookSet() as hooks, torch.no_grad():
        for module, hook in recorder.hooks():
            hooks.add(module, hook)
        backbone(torch.rand(1, 3, 8, 8))
    names = [(r.name, r.kind, r.also) for r in recorder.records]
    assert names == [("stem", "stage", []), ("blocks.0", "stage", []), ("head", "stage", ["out"]), ("mid", "level", [])]
    assert recorder.records[0].channels.shape == (3, 8, 8)
