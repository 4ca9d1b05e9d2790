"""Peak memory of evaluating one large image (10000 x 10000 by default) that gets 100 detections,
with the predicted masks kept as crops around their boxes (what ``inference_on_dataset`` asks
the model for when ``COCOEvaluator`` is the evaluator) and as full-image (N, H, W) masks
(Detectron2's form, which an evaluator that does not accept crops still gets).

    python -m benchmarks.benchmark_large_image [--size 10000] [--detections 100]
        [--dense-detections 10] [--box-scale 1] [--arms crop,dense]

The image is generated (bright ellipses on a dark background, with matching ground truth) and
written as JPEG into a temporary folder, registered as a COCO dataset, read by the test data
loader and evaluated by ``COCOEvaluator`` through ``inference_on_dataset``, as ``train_net.py
--eval-only`` does. The model is the demo ResNet-18-FPN Mask R-CNN with seeded random weights,
run at Detectron2's test size (shorter side 800) and forced to detect: its box classifier calls
every proposal an object and NMS keeps overlapping boxes, so exactly ``--detections`` come out.
``--box-scale`` enlarges every box about its centre (through the box regression bias), to see
how memory grows with object size.

Each arm runs in its own process, so that its peak resident memory (``ru_maxrss``) is its own.
Full-image masks take ``detections x size^2`` bytes (10 GB for 100 on 10000 x 10000): on a
machine with less memory to spare, give the dense arm fewer detections with
``--dense-detections`` and scale up. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
import torch

from benchmarks.common import peak_rss_mb

DATASET_NAME = "benchmark_large_image"


def write_image(folder: Path, size: int, num_objects: int = 150, seed: int = 0) -> Path:
    """A ``size`` x ``size`` JPEG of bright ellipses (radii 1-3% of the side) on a dark, slightly
    noisy background, and its COCO ground truth (one category, polygons); returns the JSON path."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 30, dtype=np.uint8)
    annotations = []
    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    for k in range(num_objects):
        rx, ry = rng.uniform(0.01, 0.03, 2) * size
        cx, cy = rng.uniform(0.05, 0.95, 2) * size
        polygon = np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)
        cv2.fillPoly(image, [np.round(polygon).astype(np.int32)], (200, 220, 210))
        x0, y0 = polygon.min(axis=0)
        x1, y1 = polygon.max(axis=0)
        annotations.append(
            {
                "id": k + 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": [polygon.reshape(-1).round(2).tolist()],
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                "area": float(np.pi * rx * ry),
                "iscrowd": 0,
            }
        )
    cv2.imwrite(str(folder / "large.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    coco = {
        "images": [{"id": 1, "file_name": "large.jpg", "height": size, "width": size}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "object"}],
    }
    json_file = folder / "large.json"
    json_file.write_text(json.dumps(coco))
    return json_file


def forced_model(detections: int, box_scale: float):
    """The demo Mask R-CNN (seeded random weights, one class) made to return ``detections``
    boxes, each its proposal scaled by ``box_scale`` about the centre, and masks with edges."""
    from project.config import get_cfg
    from project.modeling import build_model

    cfg = get_cfg(
        [
            "model=mask_rcnn_R_18_FPN_demo",
            "MODEL.DEVICE=cpu",
            "MODEL.ROI_HEADS.NUM_CLASSES=1",
            "MODEL.ROI_HEADS.NMS_THRESH_TEST=1.0",
            "INPUT.MIN_SIZE_TEST=800",  # Detectron2's test size (the demo's 0 would keep 10000 px)
            "INPUT.MAX_SIZE_TEST=1333",
            f"TEST.DETECTIONS_PER_IMAGE={detections}",
            "DATALOADER.NUM_WORKERS=0",
        ]
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    heads = model.roi_heads
    with torch.no_grad():
        heads.box_predictor.cls_score.weight.zero_()
        heads.box_predictor.cls_score.bias.copy_(torch.tensor([4.0, 0.0]))  # object, background
        bbox_pred = heads.box_predictor.bbox_pred
        bbox_pred.weight.zero_()
        bbox_pred.bias.zero_()
        # Deltas (dx, dy, dw, dh) are divided by the weights (10, 10, 5, 5): dw = log(scale).
        bbox_pred.bias[2::4] = heads.box_predictor.box2box_transform.weights[2] * math.log(box_scale)
        bbox_pred.bias[3::4] = heads.box_predictor.box2box_transform.weights[3] * math.log(box_scale)
        heads.mask_head.predictor.weight.normal_(0, 0.2, generator=torch.Generator().manual_seed(1))
    return model, cfg


def measure_arm(arm: str, json_file: Path, detections: int, box_scale: float) -> Dict[str, Any]:
    """Evaluate the image with masks as crops ("crop") or full-image ("dense"); this process's
    peak memory before and after, and what the masks handed to the evaluator held."""
    from project.data import build_detection_test_loader, register_coco_instances
    from project.evaluation import COCOEvaluator, DatasetEvaluator, inference_on_dataset
    from project.structures import CroppedBitMasks

    class MaskBytes(DatasetEvaluator):
        """Records the bytes held by the ``pred_masks`` it is given; ``accepts_cropped_masks``
        decides which form the model returns."""

        def __init__(self, accepts_cropped_masks: bool):
            self.accepts_cropped_masks = accepts_cropped_masks
            self.record: Dict[str, Any] = {}

        def process(self, inputs, outputs):
            masks = outputs[0]["instances"].pred_masks
            if isinstance(masks, CroppedBitMasks):
                held = sum(crop.mask.nbytes for crop in masks.crops)
            else:
                held = masks.numel() * masks.element_size()
            self.record = {
                "detections": len(masks),
                "mask_type": type(masks).__name__,
                "mask_mb": round(held / 2**20, 1),
            }

        def evaluate(self):
            return {}

    register_coco_instances(DATASET_NAME, {}, str(json_file), str(json_file.parent))
    model, cfg = forced_model(detections, box_scale)
    loader = build_detection_test_loader(cfg, DATASET_NAME)
    recorder = MaskBytes(accepts_cropped_masks=arm == "crop")
    with tempfile.TemporaryDirectory() as output_dir:
        evaluator = COCOEvaluator(DATASET_NAME, output_dir=output_dir, tasks=("segm",), use_fast_impl=False)
        setup_peak = peak_rss_mb()
        start = time.perf_counter()
        results = inference_on_dataset(model, loader, [evaluator, recorder])
        seconds = time.perf_counter() - start
    return {
        "arm": arm,
        **recorder.record,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_before_inference_mb": round(setup_peak, 1),
        "seconds": round(seconds, 2),
        "segm_AP": results["segm"]["AP"],
    }


def run_arm_in_child(arm: str, json_file: Path, detections: int, box_scale: float) -> Dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.benchmark_large_image",
        "--child-arm",
        arm,
        "--json-file",
        str(json_file),
        "--detections",
        str(detections),
        "--box-scale",
        str(box_scale),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"arm": arm, "detections": detections, "failed": f"exit status {done.returncode}: {done.stderr[-2000:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10000, help="side of the square image, in pixels")
    parser.add_argument("--detections", type=int, default=100, help="detections per image")
    parser.add_argument("--dense-detections", type=int, help="detections in the dense arm (default: --detections)")
    parser.add_argument("--box-scale", type=float, default=1.0, help="enlarge every detected box by this factor")
    parser.add_argument("--arms", default="crop,dense", help="comma-separated: crop, dense")
    parser.add_argument("--child-arm", help=argparse.SUPPRESS)
    parser.add_argument("--json-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_arm:
        print(json.dumps(measure_arm(args.child_arm, args.json_file, args.detections, args.box_scale)))
        return
    arms = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(arms) - {"crop", "dense"})
    if unknown:
        parser.error(f"--arms: unknown {unknown}; choose from crop, dense")
    with tempfile.TemporaryDirectory() as folder:
        json_file = write_image(Path(folder), args.size)
        report: Dict[str, Any] = {
            "image": f"{args.size}x{args.size}",
            "box_scale": args.box_scale,
            "full_image_mask_mb": round(args.size**2 / 2**20, 1),
        }
        for arm in arms:
            detections = args.dense_detections if arm == "dense" and args.dense_detections else args.detections
            report[arm] = run_arm_in_child(arm, json_file, detections, args.box_scale)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
