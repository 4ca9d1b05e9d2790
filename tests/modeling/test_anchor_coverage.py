"""Anchor coverage: feature grids, best-anchor IoUs and the tools/anchor_coverage.py report."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from torchvision.ops import box_iou
from training_fixtures import register_entry, write_tiny_coco

from project.config.compose import default_cfg
from project.layers import ShapeSpec
from project.modeling import build_backbone
from project.modeling.anchor_coverage import feature_grid_sizes, match_boxes_to_anchors, summarize_coverage
from project.modeling.anchor_generator import DefaultAnchorGenerator


def anchor_generator(sizes, ratios, strides):
    cfg = default_cfg()
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = sizes
    cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = ratios
    return DefaultAnchorGenerator(cfg, [ShapeSpec(stride=s) for s in strides])


def test_feature_grid_sizes_are_the_backbone_output_sizes_of_the_padded_image():
    cfg = default_cfg()
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    backbone = build_backbone(cfg).eval()
    height, width = 203, 301
    div = backbone.size_divisibility
    padded = torch.zeros(1, 3, -(-height // div) * div, -(-width // div) * div)
    with torch.no_grad():
        features = backbone(padded)
    names = cfg.MODEL.RPN.IN_FEATURES
    strides = [backbone.output_shape()[n].stride for n in names]
    expected = [tuple(features[n].shape[-2:]) for n in names]
    assert feature_grid_sizes((height, width), strides, div) == expected
    assert feature_grid_sizes((height, width), [4], 0) == [(51, 76)]


def test_best_iou_and_positives_equal_a_brute_force_over_all_anchors():
    generator = anchor_generator([[16], [40]], [[0.5, 1.0, 2.0]], [8, 16])
    grids = [(6, 7), (3, 4)]
    boxes = torch.tensor(
        [[8.0, 8.0, 24.0, 24.0], [0.0, 0.0, 4.0, 4.0], [10.0, 5.0, 50.0, 45.0], [3.0, 7.0, 30.0, 19.0]]
    )
    best, positives = match_boxes_to_anchors(generator, grids, boxes, fg_iou_threshold=0.7, chunk=3)

    all_anchors = []
    for (rows, cols), stride, size in zip(grids, [8, 16], [16, 40]):
        for y in range(rows):
            for x in range(cols):
                for ratio in (0.5, 1.0, 2.0):
                    w = (size * size / ratio) ** 0.5
                    h = ratio * w
                    all_anchors.append([x * stride - w / 2, y * stride - h / 2, x * stride + w / 2, y * stride + h / 2])
    iou = box_iou(boxes, torch.tensor(all_anchors))
    torch.testing.assert_close(best, iou.max(dim=1).values)
    assert positives.tolist() == (iou >= 0.7).sum(dim=1).tolist()
    # A box that is an anchor; a 4-px box inside a 16-px square anchor: 16 / 256.
    assert best[0].item() == pytest.approx(1.0)
    assert best[1].item() == pytest.approx(16 / 256)


def test_summary_fractions_median_and_sizes():
    best = torch.tensor([0.8, 0.6, 0.3, 0.75])
    summary = summarize_coverage(best, torch.tensor([2, 0, 0, 1]), torch.tensor([10.0, 20.0, 30.0, 40.0]), 0.7)
    assert summary["num_boxes"] == 4
    assert summary["fraction_with_fg_anchor"] == pytest.approx(0.5)
    assert summary["fraction_with_anchor_iou_0.5"] == pytest.approx(0.75)
    assert summary["median_best_iou"] == pytest.approx(0.675)
    assert summary["mean_fg_anchors_per_box"] == pytest.approx(0.75)
    assert summary["box_size_percentiles"]["p50"] == pytest.approx(25.0)
    with pytest.raises(ValueError, match="no ground-truth boxes"):
        summarize_coverage(torch.zeros(0), torch.zeros(0), torch.zeros(0), 0.7)


def load_tool():
    spec = importlib.util.spec_from_file_location("anchor_coverage_tool", REPO / "tools" / "anchor_coverage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_reports_every_box_of_the_dataset_and_ranks_anchor_sizes(tmp_path):
    json_file, image_root = write_tiny_coco(tmp_path, num_images=6, seed=3)
    data = json.loads(Path(json_file).read_text())
    data["annotations"][0]["iscrowd"] = 1
    Path(json_file).write_text(json.dumps(data))
    non_crowd = data["annotations"][1:]
    tool = load_tool()

    def report(size):
        return tool.main(
            [
                f"DATASETS.REGISTER=[{register_entry('anchor_cov_tiny', json_file, image_root)}]",
                "DATASETS.TRAIN=[anchor_cov_tiny]",
                "MODEL.RESNETS.DEPTH=18",
                "MODEL.RESNETS.RES2_OUT_CHANNELS=64",
                f"MODEL.ANCHOR_GENERATOR.SIZES=[[{size}]]",
                "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS=[[1.0]]",
                "INPUT.MIN_SIZE_TEST=96",
                "INPUT.MAX_SIZE_TEST=96",
            ]
        )

    fitting, oversized = report(20), report(64)
    assert fitting["num_images"] == 6
    assert fitting["num_boxes"] == len(non_crowd)
    assert fitting["crowd_boxes_left_out"] == 1
    sizes = [np.sqrt(a["bbox"][2] * a["bbox"][3]) for a in non_crowd]
    assert fitting["box_size_percentiles"]["p50"] == pytest.approx(np.percentile(sizes, 50), abs=0.05)
    # The disks are 17-29 px across: 20-px anchors fit them, 64-px anchors do not.
    assert fitting["median_best_iou"] > 0.5
    assert oversized["median_best_iou"] < 0.25
    assert fitting["fraction_with_anchor_iou_0.5"] > oversized["fraction_with_anchor_iou_0.5"]
