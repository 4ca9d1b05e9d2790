"""Helpers of the tools/ tests: a tool script imported as a module, and the pictures and
ground-truth masks the drawing tools are checked against."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_util

from project.data import DatasetCatalog, MetadataCatalog


def load_tool(path: Path):
    """The tools/ script at ``path``, imported as a module (its ``__main__`` block not run)."""
    spec = importlib.util.spec_from_file_location(f"{path.stem}_tool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(path: Path, *arguments: str) -> subprocess.CompletedProcess:
    """The tools/ script at ``path`` run as a command from the repository root, output captured."""
    return subprocess.run(
        [sys.executable, str(path), *arguments], cwd=path.parents[1], capture_output=True, text=True, timeout=300
    )


def unregister(name: str) -> None:
    DatasetCatalog.pop(name, None)
    MetadataCatalog.pop(name, None)


def read_rgb(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image[:, :, ::-1]


def gt_masks(coco: dict, image: dict) -> np.ndarray:
    """(N, H, W) bool masks of the image's annotations, decoded by pycocotools."""
    height, width = image["height"], image["width"]
    masks = []
    for ann in coco["annotations"]:
        if ann["image_id"] != image["id"]:
            continue
        segm = ann["segmentation"]
        rle = mask_util.merge(mask_util.frPyObjects(segm, height, width)) if isinstance(segm, list) else segm
        if isinstance(rle["counts"], str):
            rle = dict(rle, counts=rle["counts"].encode("ascii"))
        masks.append(mask_util.decode(rle).astype(bool))
    return np.stack(masks)


def inside_and_outside(masks: np.ndarray, border: int = 2):
    """Pixels well inside some mask, and pixels well away from every mask."""
    union = masks.any(axis=0).astype(np.uint8)
    kernel = np.ones((2 * border + 1, 2 * border + 1), np.uint8)
    inside = cv2.erode(union, kernel).astype(bool)
    outside = ~cv2.dilate(union, kernel).astype(bool)
    return inside, outside
