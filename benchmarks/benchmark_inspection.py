"""What one inspection (``tools/inspect_model.py``: every step, pictures and tables written)
costs next to one prediction of the same model on the same image.

    python -m benchmarks.benchmark_inspection                      # R101-FPN, 800x1333, CPU
    python -m benchmarks.benchmark_inspection --size 400x667 --repeats 2

The image is the real COCO val2017 image of ``coco_mini`` with its 19 annotations, resized to
exactly --size (height x width) so that the model sees that size (INPUT.MIN_SIZE_TEST and
MAX_SIZE_TEST are set to it). Weights are calibrated on real images (no download), as for
``benchmark_inference``, so the model makes realistic numbers of detections. Timed, after one
untimed run of each: ``DefaultPredictor`` on the image, and the inspection from the dataset
entry (reading the image, ``inspect_model``, ``write_report``), alternately, --repeats times;
medians are reported with their ratio. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Tuple

import cv2
import numpy as np
import torch

from benchmarks.common import calibrated_detectron2_pkl, data_root
from project.data import load_coco_json
from project.engine import DefaultPredictor
from project.inspection import input_from_dataset_dict, inspect_model, write_report
from project.model_zoo import get_config


def _size(text: str) -> Tuple[int, int]:
    height, _, width = text.partition("x")
    return int(height), int(width)


def resized_entry(directory: Path, size: Tuple[int, int]) -> Dict[str, Any]:
    """The coco_mini val image resized to ``size`` (written under ``directory``) as a dataset
    dict, its boxes and polygons scaled with it."""
    root = data_root() / "coco_mini"
    record = load_coco_json(str(root / "annotations" / "instances_val2017.json"), str(root / "images" / "val2017"))[0]
    height, width = size
    sx, sy = width / record["width"], height / record["height"]
    image = cv2.resize(cv2.imread(record["file_name"]), (width, height), interpolation=cv2.INTER_LINEAR)
    path = directory / "image.png"
    cv2.imwrite(str(path), image)
    annotations = []
    for a in record["annotations"]:
        a = copy.deepcopy(a)
        x, y, w, h = a["bbox"]
        a["bbox"] = [x * sx, y * sy, w * sx, h * sy]
        if isinstance(a.get("segmentation"), list):
            a["segmentation"] = [
                (np.asarray(p, dtype=np.float64).reshape(-1, 2) * [sx, sy]).reshape(-1).tolist()
                for p in a["segmentation"]
            ]
        annotations.append(a)
    return dict(record, file_name=str(path), height=height, width=width, annotations=annotations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=_size, default=(800, 1333), help="image size HxW (default 800x1333)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (default 3)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", type=Path, default=Path("output/benchmarks/calibrated_R101_FPN.pkl"))
    args = parser.parse_args()

    weights = calibrated_detectron2_pkl(args.weights)
    height, width = args.size
    cfg = get_config(
        "mask_rcnn_R_101_FPN_3x",
        overrides=[
            f"MODEL.DEVICE={args.device}",
            f"MODEL.WEIGHTS={weights}",
            f"INPUT.MIN_SIZE_TEST={min(height, width)}",
            f"INPUT.MAX_SIZE_TEST={max(height, width)}",
        ],
    )
    predictor = DefaultPredictor(cfg)
    with tempfile.TemporaryDirectory() as directory:
        record = resized_entry(Path(directory), (height, width))
        image = cv2.imread(record["file_name"])

        def predict() -> None:
            predictor(image)

        def inspect() -> Dict[str, float]:
            inspection_input = input_from_dataset_dict(record, predictor.augmentations, predictor.input_format)
            inspection = inspect_model(predictor.model, inspection_input)
            report = write_report(inspection, Path(directory) / "report")
            return report.summary["seconds"]

        predict()
        breakdown = inspect()
        predictions, inspections = [], []
        for _ in range(args.repeats):
            began = time.perf_counter()
            predict()
            predictions.append(time.perf_counter() - began)
            began = time.perf_counter()
            breakdown = inspect()
            inspections.append(time.perf_counter() - began)
        detections = len(predictor(image)["instances"])

    predictor_s, inspection_s = statistics.median(predictions), statistics.median(inspections)
    print(
        json.dumps(
            {
                "model": "mask_rcnn_R_101_FPN_3x (calibrated weights)",
                "device": args.device,
                "image": f"coco_mini val2017 000000397133.jpg resized to {height}x{width}, 19 annotations",
                "model_input": [height, width],
                "torch_threads": torch.get_num_threads(),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "detections": detections,
                "predictor_seconds": round(predictor_s, 3),
                "inspection_seconds": round(inspection_s, 3),
                "ratio": round(inspection_s / predictor_s, 3),
                "predictor_runs": [round(t, 3) for t in predictions],
                "inspection_runs": [round(t, 3) for t in inspections],
                "inspection_breakdown_last_run": breakdown,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
