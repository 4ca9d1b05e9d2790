"""Inputs: an image or a dataset entry prepared as the predictor prepares images, and the
ground truth in both frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import require_dataset
from inspection_fixtures import dsb2018_record
from pycocotools import mask as mask_util

from project.data import BadAnnotationError
from project.data.transforms import ResizeShortestEdge
from project.inspection import input_from_dataset_dict, input_from_file, input_from_image

AUGMENTATIONS = [ResizeShortestEdge(288, 512)]


def test_a_dataset_entry_gives_the_resized_image_and_ground_truth_in_both_frames(data_root):
    record = dsb2018_record(data_root)
    found = input_from_dataset_dict(record, AUGMENTATIONS, "BGR")
    image = cv2.imread(record["file_name"])
    assert found.original_size == (360, 360) and found.input_size == (288, 288)
    assert found.model_input["image"].dtype == torch.uint8 and found.model_input["image"].shape == (3, 288, 288)
    assert np.array_equal(found.image_rgb, image[:, :, ::-1])
    assert np.array_equal(found.input_image_rgb(), found.model_input["image"].numpy().transpose(1, 2, 0)[:, :, ::-1])
    gt = found.ground_truth
    annotations = record["annotations"]
    assert len(gt) == len(gt.boxes) == len(annotations) == 18
    xywh = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32)
    assert torch.allclose(gt.boxes[:, :2], xywh[:, :2]) and torch.allclose(gt.boxes[:, 2:], xywh[:, :2] + xywh[:, 2:])
    assert torch.allclose(gt.input_instances.gt_boxes.tensor, gt.boxes * 0.8, atol=1e-4)
    for crop, annotation in zip(gt.masks, annotations):
        assert np.array_equal(crop.to_array(), mask_util.decode(annotation["segmentation"]).astype(bool))


def test_crowd_annotations_are_left_out(data_root):
    record = dict(dsb2018_record(data_root))
    record["annotations"] = [dict(a, iscrowd=1) if i < 3 else a for i, a in enumerate(record["annotations"])]
    found = input_from_dataset_dict(record, AUGMENTATIONS, "RGB")
    assert len(found.ground_truth) == 15 and len(found.ground_truth.masks) == 15
    assert np.array_equal(found.input_image_rgb(), found.model_input["image"].numpy().transpose(1, 2, 0))


def test_an_image_file_has_no_ground_truth(data_root):
    path = require_dataset(data_root, "pennfudan") / "PNGImages" / "FudanPed00001.png"
    found = input_from_file(str(path), AUGMENTATIONS, "BGR")
    image = cv2.imread(str(path))
    assert found.ground_truth is None and found.source == str(path)
    assert found.original_size == image.shape[:2] and min(found.input_size) == 288
    assert np.array_equal(found.image_rgb, image[:, :, ::-1])


def test_grey_images_are_drawn_in_colour():
    grey = np.arange(64 * 48, dtype=np.uint8).reshape(64, 48)
    found = input_from_image(grey, [], "L")
    assert found.model_input["image"].shape == (1, 64, 48)
    assert found.image_rgb.shape == (64, 48, 3) and np.array_equal(found.image_rgb[:, :, 1], grey)


def test_a_missing_file_is_reported_by_name(tmp_path):
    with pytest.raises(BadAnnotationError, match="does not exist"):
        input_from_file(str(tmp_path / "absent.png"), AUGMENTATIONS, "BGR")
