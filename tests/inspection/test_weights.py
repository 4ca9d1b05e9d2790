"""Weights: one record per convolution and linear layer with exact statistics; a zeroed layer
is flagged constant, NaN and huge weights are flagged too, and nothing else is."""

from __future__ import annotations

import json

import numpy as np
import torch
from inspection_fixtures import demo_input, demo_predictor, shared_inspection
from torch import nn

from project.inspection import InspectionOptions, inspect_model, write_report
from project.inspection.weights import HISTOGRAM_SAMPLE, weight_layers, weight_record


def test_every_conv_and_linear_layer_is_recorded_and_none_is_flagged(data_root):
    predictor, _, inspection = shared_inspection(data_root)
    names = [r.name for r in inspection.weights]
    kinds = (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)
    expected = [n for n, m in predictor.model.named_modules() if isinstance(m, kinds)]
    assert names == expected and len(names) == 39
    assert "roi_heads.mask_head.deconv" in names and "roi_heads.box_predictor.cls_score" in names
    assert not any(r.flags for r in inspection.weights)
    fc1 = next(r for r in inspection.weights if r.name == "roi_heads.box_head.fc1")
    w = predictor.model.roi_heads.box_head.fc1.weight.detach().double()
    assert fc1.shape == (256, 3136) and fc1.min == float(w.min()) and fc1.max == float(w.max())
    assert abs(fc1.std - float(w.std(unbiased=False))) < 1e-6
    step = -(-w.numel() // HISTOGRAM_SAMPLE)  # fc1 is larger than the sample: every step-th value
    assert fc1.histogram.sum() == len(range(0, w.numel(), step)) and len(fc1.edges) == 41
    conv = next(r for r in inspection.weights if r.name == "roi_heads.mask_head.mask_fcn1")
    assert conv.histogram.sum() == predictor.model.roi_heads.mask_head.mask_fcn1.weight.numel()


def test_a_zeroed_layer_is_flagged_in_the_report(data_root, tmp_path):
    predictor = demo_predictor(data_root)
    with torch.no_grad():
        predictor.model.roi_heads.box_head.fc2.weight.zero_()
    options = InspectionOptions(steps=("weights",))
    inspection = inspect_model(predictor.model, demo_input(predictor, data_root), options)
    report = write_report(inspection, tmp_path)
    flagged = json.loads(report.json_path.read_text())["steps"]["weights"]["flagged"]
    assert flagged == {"roi_heads.box_head.fc2": ["constant"]}
    assert report.files["weights"] == ["6_weights/page_01.png"]


def test_nan_and_huge_weights_are_flagged():
    layer = nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        layer.weight[0, 0, 0, 0] = float("nan")
        layer.weight[1, 0, 0, 0] = 5e3
    record = weight_record("conv", layer)
    assert record.flags == ["non-finite", "overflowing"]
    assert record.num_nan == 1 and record.max == 5e3 and record.histogram.sum() == layer.weight.numel() - 1
    single = nn.Linear(1, 1)
    assert weight_record("one", single).flags == []  # one value is not "constant"


def test_large_layers_are_histogrammed_on_a_sample():
    layer = nn.Linear(1024, HISTOGRAM_SAMPLE // 256)
    record = weight_record("big", layer)
    assert layer.weight.numel() > HISTOGRAM_SAMPLE >= record.histogram.sum() > HISTOGRAM_SAMPLE // 2
    assert record.min == float(layer.weight.detach().min()) and np.isclose(record.edges[-1], record.max)


def test_weight_layers_lists_only_layers_with_weights():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 1))
    assert [name for name, _ in weight_layers(model)] == ["0", "4"]
