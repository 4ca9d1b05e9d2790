#!/usr/bin/env python
"""How many ground-truth boxes of a dataset get an RPN foreground anchor under a config.

    python tools/anchor_coverage.py +experiment=finetune_dsb2018 --max-images 80
    python tools/anchor_coverage.py +experiment=finetune_dsb2018 \
        'MODEL.ANCHOR_GENERATOR.SIZES=[[32],[64],[128],[256],[512]]' \
        'MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS=[[0.5,1.0,2.0]]' --max-images 80

Positional arguments are config overrides, as for train_net.py. Each image is resized as at
test time (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST, or --short-edge), its non-crowd boxes are
compared with every anchor of the model's anchor generator, and one JSON object is printed:
the fraction of boxes whose best anchor reaches MODEL.RPN.IOU_THRESHOLDS[-1] (the RPN's
foreground threshold), the fraction reaching IoU 0.5, the median best IoU, foreground anchors
per box, and box-size percentiles in resized pixels. Runs on CPU in seconds per 100 images.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from project.config import get_cfg
from project.config.overrides import check_overrides
from project.data import DatasetCatalog, register_datasets_from_config
from project.data.transforms import ResizeShortestEdge, ResizeTransform
from project.modeling import build_backbone
from project.modeling.anchor_coverage import (
    feature_grid_sizes,
    match_boxes_to_anchors,
    summarize_coverage,
)
from project.modeling.anchor_generator import build_anchor_generator
from project.structures import Boxes, BoxMode


def resized_boxes(record: Dict, short_edge: int, max_size: int):
    """The record's resized (h, w), its non-crowd boxes (G, 4) XYXY at that size, and how many
    crowd boxes were left out."""
    height, width = record["height"], record["width"]
    new_h, new_w = ResizeShortestEdge.get_output_shape(height, width, short_edge, max_size)
    annotations = record.get("annotations", [])
    kept = [a for a in annotations if not a.get("iscrowd", 0)]
    boxes = np.array(
        [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in kept], dtype=np.float32
    ).reshape(-1, 4)
    resized = ResizeTransform(height, width, new_h, new_w).apply_box(boxes)  # as the mapper does
    return (new_h, new_w), torch.as_tensor(resized, dtype=torch.float32), len(annotations) - len(kept)


def main(argv: List[str]) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help="registered dataset name (default: the first of DATASETS.TRAIN)")
    parser.add_argument("--max-images", type=int, default=0, help="random sample of this many images (0: all)")
    parser.add_argument("--short-edge", type=int, default=0, help="shorter side to resize to (default: MIN_SIZE_TEST)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image sample")
    args, overrides = parser.parse_known_args(argv)
    check_overrides(overrides)
    cfg = get_cfg(overrides)
    register_datasets_from_config(cfg)
    name = args.dataset or cfg.DATASETS.TRAIN[0]
    records = DatasetCatalog.get(name)
    if args.max_images and args.max_images < len(records):
        records = random.Random(args.seed).sample(records, args.max_images)

    backbone = build_backbone(cfg)
    shapes = backbone.output_shape()
    anchor_generator = build_anchor_generator(cfg, [shapes[f] for f in cfg.MODEL.RPN.IN_FEATURES])
    strides = [shapes[f].stride for f in cfg.MODEL.RPN.IN_FEATURES]
    fg_threshold = float(cfg.MODEL.RPN.IOU_THRESHOLDS[-1])
    short_edge = args.short_edge or cfg.INPUT.MIN_SIZE_TEST

    best, positives, sizes, crowd = [], [], [], 0
    for record in records:
        image_size, boxes, num_crowd = resized_boxes(record, short_edge, cfg.INPUT.MAX_SIZE_TEST)
        crowd += num_crowd
        grid = feature_grid_sizes(image_size, strides, backbone.size_divisibility)
        record_best, record_positives = match_boxes_to_anchors(anchor_generator, grid, boxes, fg_threshold)
        best.append(record_best)
        positives.append(record_positives)
        sizes.append(Boxes(boxes).area().sqrt())
    summary = summarize_coverage(torch.cat(best), torch.cat(positives), torch.cat(sizes), fg_threshold)
    return {
        "dataset": name,
        "num_images": len(records),
        "crowd_boxes_left_out": crowd,
        "short_edge": short_edge,
        "anchor_sizes": OmegaConf.to_container(cfg.MODEL.ANCHOR_GENERATOR.SIZES),
        "aspect_ratios": OmegaConf.to_container(cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS),
        **summary,
    }


if __name__ == "__main__":
    try:
        report = main(sys.argv[1:])
    except (KeyError, ValueError, FileNotFoundError, HydraException, OmegaConfBaseException) as error:
        sys.exit(f"anchor_coverage: {error}")
    print(json.dumps(report, indent=2))
