"""The model and image the inspection tests share: the demo model (ResNet-18-FPN) with weights
calibrated on a real DSB2018 image, so that it detects things, and that image with its
annotations. Built once per test process (the calibration takes a few seconds)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
import torch
from conftest import require_dataset, shared_data_root

from benchmarks.calibration import write_calibrated_detectron2_checkpoint
from project.config import get_cfg
from project.data import load_coco_json
from project.data.detection_utils import build_augmentation
from project.engine import DefaultPredictor
from project.inspection import InspectionInput, input_from_dataset_dict, inspect_model

# A 360 x 360 DSB2018 val image with 18 nuclei; tested at 288 (so the input frame differs).
DSB2018_IMAGE = "b6c9b58de0388891.png"
OVERRIDES = ("MODEL.DEVICE=cpu", "INPUT.MIN_SIZE_TEST=288", "INPUT.MAX_SIZE_TEST=512")


def dsb2018_record(data_root: Path, file_name: str = DSB2018_IMAGE) -> Dict[str, Any]:
    """The dataset dict of one DSB2018 val image (RLE masks), skipping the test without the data."""
    dsb2018 = require_dataset(data_root, "dsb2018")
    records = _val_records(str(dsb2018))
    matches = [r for r in records if Path(r["file_name"]).name == file_name]
    assert matches, file_name
    return matches[0]


@functools.cache
def _val_records(root: str) -> List[Dict[str, Any]]:
    return load_coco_json(str(Path(root) / "annotations_val.json"), str(Path(root) / "val"))


@functools.cache
def _calibrated_weights(data_root: str, overrides: Tuple[str, ...]) -> str:
    record = dsb2018_record(Path(data_root))
    cfg = get_cfg(list(overrides))
    inspection_input = input_from_dataset_dict(record, build_augmentation(cfg, False), cfg.INPUT.FORMAT)
    directory = tempfile.mkdtemp(prefix="inspection_tests_")
    atexit.register(shutil.rmtree, directory, True)
    path = str(Path(directory) / "calibrated_R18.pkl")
    write_calibrated_detectron2_checkpoint(cfg, [inspection_input.model_input["image"]], path, seed=0)
    return path


def demo_cfg(data_root: Path, *extra: str):
    """The demo config (ResNet-18-FPN, CPU, test size 288) with the calibrated weights and any
    ``extra`` overrides; calibrated once per process."""
    if not data_root.is_dir():
        pytest.skip(f"real data not found at {data_root}")
    weights = _calibrated_weights(str(data_root), OVERRIDES)
    return get_cfg([*OVERRIDES, f"MODEL.WEIGHTS={weights}", *extra])


def demo_predictor(data_root: Path, *extra: str) -> DefaultPredictor:
    """A fresh predictor (its own model, free to modify) of ``demo_cfg``."""
    return DefaultPredictor(demo_cfg(data_root, *extra))


def demo_input(predictor: DefaultPredictor, data_root: Path, file_name: str = DSB2018_IMAGE) -> InspectionInput:
    """The DSB2018 image with its annotations, prepared as ``predictor`` resizes."""
    record = dsb2018_record(data_root, file_name)
    return input_from_dataset_dict(record, predictor.augmentations, predictor.input_format)


@functools.cache
def _shared(data_root: str):
    predictor = demo_predictor(Path(data_root))
    inspection_input = demo_input(predictor, Path(data_root))
    return predictor, inspection_input, inspect_model(predictor.model, inspection_input)


def shared_inspection(data_root: Path):
    """(predictor, input, inspection) of the default inspection, computed once per process;
    tests must not modify them."""
    return _shared(str(data_root))


def model_output(predictor: DefaultPredictor, inspection_input: InspectionInput):
    """``model([input])`` in eval mode: the model's own result for the image."""
    with torch.no_grad():
        return predictor.model([inspection_input.model_input])[0]["instances"]


def colour_pixels(image: np.ndarray, colour) -> int:
    """How many pixels of an (H, W, 3) image have exactly ``colour``."""
    return int(np.all(image == np.asarray(colour, dtype=image.dtype), axis=2).sum())


__all__ = [
    "DSB2018_IMAGE",
    "colour_pixels",
    "demo_cfg",
    "demo_input",
    "demo_predictor",
    "dsb2018_record",
    "model_output",
    "shared_data_root",
    "shared_inspection",
]
