"""DatasetMapper: reading images of any depth and channel layout, the model input it produces,
the mapper registry, and memory on the densest DSB2018 image."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest
import torch
from conftest import require_dataset

from project.config.compose import default_cfg
from project.data import MAPPER_REGISTRY, DatasetMapper, build_mapper, load_coco_json
from project.data import transforms as T
from project.data.detection_utils import UINT16_PERCENTILES, read_image, scale_to_uint8
from project.structures import BoxMode, CroppedBitMasks, PolygonMasks


def test_sixteen_bit_images_are_stretched_between_percentiles(tmp_path):
    rng = np.random.default_rng(0)
    grey16 = rng.integers(1000, 3000, (64, 80)).astype(np.uint16)
    grey16[0, 0] = 65535  # a hot pixel
    cv2.imwrite(str(tmp_path / "g16.png"), grey16)
    image = read_image(str(tmp_path / "g16.png"), "BGR")
    assert image.shape == (64, 80, 3) and image.dtype == np.uint8
    assert (image[:, :, 0] == image[:, :, 1]).all() and (image[:, :, 1] == image[:, :, 2]).all()
    low, high = np.percentile(grey16.astype(np.float32), UINT16_PERCENTILES)
    expected = np.clip((grey16 - low) * 255.0 / (high - low) + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(image[:, :, 0], expected)
    assert image[0, 0, 0] == 255 and image.min() == 0 and np.median(image) > 100  # hot pixel ignored
    assert np.array_equal(scale_to_uint8(np.full((3, 3), 7, np.uint16)), np.zeros((3, 3), np.uint8))


def test_colour_sixteen_bit_keeps_the_channel_balance(tmp_path):
    colour16 = np.zeros((10, 12, 3), np.uint16)
    colour16[..., 0], colour16[..., 1], colour16[..., 2] = 1000, 2000, 4000
    colour16[0, 0] = 0
    cv2.imwrite(str(tmp_path / "c16.png"), colour16)
    image = read_image(str(tmp_path / "c16.png"), "BGR").astype(int)
    b, g, r = image[5, 5]
    assert b < g < r and abs((g - b) - (r - g) / 2) <= 2  # one linear map for all channels


def test_grey_rgba_and_formats(tmp_path):
    rng = np.random.default_rng(1)
    bgra = rng.integers(0, 255, (20, 30, 4)).astype(np.uint8)
    grey = rng.integers(0, 255, (20, 30)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    assert np.array_equal(read_image(str(tmp_path / "rgba.png"), "BGR"), bgra[:, :, :3])
    assert np.array_equal(read_image(str(tmp_path / "rgba.png"), "RGB"), bgra[:, :, 2::-1])
    assert np.array_equal(read_image(str(tmp_path / "grey.png"), "BGR"), np.repeat(grey[:, :, None], 3, axis=2))
    assert np.array_equal(read_image(str(tmp_path / "grey.png"), "L"), grey[:, :, None])
    assert np.array_equal(
        read_image(str(tmp_path / "rgba.png"), "L"), cv2.cvtColor(bgra[:, :, :3], cv2.COLOR_BGR2GRAY)[:, :, None]
    )


@pytest.fixture
def dataset_dict(tmp_path):
    image = np.zeros((50, 70, 3), np.uint8)
    image[10:20, 10:30] = 200
    cv2.imwrite(str(tmp_path / "img.png"), image)
    polygon = [[10.0, 10.0, 30.0, 10.0, 30.0, 20.0, 10.0, 20.0]]
    annotations = [
        {
            "bbox": [10, 10, 20, 10],
            "bbox_mode": BoxMode.XYWH_ABS,
            "category_id": 2,
            "segmentation": polygon,
            "iscrowd": 0,
        },
        {
            "bbox": [40, 30, 60, 45],
            "bbox_mode": BoxMode.XYXY_ABS,
            "category_id": 1,
            "segmentation": [[40.0, 30.0, 60.0, 30.0, 60.0, 45.0]],
            "iscrowd": 0,
        },
        {
            "bbox": [0, 0, 5, 5],
            "bbox_mode": BoxMode.XYWH_ABS,
            "category_id": 0,
            "segmentation": [[0, 0, 5, 0, 5, 5]],
            "iscrowd": 1,
        },
    ]
    return {
        "file_name": str(tmp_path / "img.png"),
        "height": 50,
        "width": 70,
        "image_id": 9,
        "annotations": annotations,
    }


def test_training_output_is_the_model_input_format(dataset_dict):
    cfg = default_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = [100]
    cfg.INPUT.RANDOM_FLIP = "none"
    mapper = DatasetMapper(cfg, is_train=True)
    out = mapper(dataset_dict)
    assert (out["file_name"], out["image_id"], out["height"], out["width"]) == (dataset_dict["file_name"], 9, 50, 70)
    assert "annotations" not in out and "annotations" in dataset_dict  # the input is left alone
    assert out["image"].dtype == torch.uint8 and tuple(out["image"].shape) == (3, 100, 140)
    instances = out["instances"]
    assert instances.image_size == (100, 140)
    assert instances.gt_classes.dtype == torch.int64 and instances.gt_classes.tolist() == [2, 1]  # crowd dropped
    assert torch.equal(instances.gt_boxes.tensor, torch.tensor([[20.0, 20.0, 60.0, 40.0], [80.0, 60.0, 120.0, 90.0]]))
    assert isinstance(instances.gt_masks, PolygonMasks)
    cfg.INPUT.MASK_FORMAT = "bitmask"
    masks = DatasetMapper(cfg, is_train=True)(dataset_dict)["instances"].gt_masks
    assert isinstance(masks, CroppedBitMasks) and masks.tensor.shape == (2, 100, 140)
    assert masks.tensor[0, 20:40, 20:60].all() and masks.tensor[0].sum() == 20 * 40


def test_inference_output_has_no_annotations(dataset_dict):
    cfg = default_cfg()
    cfg.INPUT.MIN_SIZE_TEST = 25
    out = DatasetMapper(cfg, is_train=False)(dataset_dict)
    assert "instances" not in out and "annotations" not in out
    assert tuple(out["image"].shape) == (3, 25, 35) and (out["height"], out["width"]) == (50, 70)


def test_instances_emptied_by_a_crop_are_dropped_and_counted(dataset_dict):
    mapper = DatasetMapper(
        is_train=True, augmentations=[T.RandomCrop("absolute", (25, 35))], use_instance_mask=True, recompute_boxes=True
    )
    np.random.seed(0)
    kept = [len(mapper(dataset_dict)["instances"]) for _ in range(20)]
    assert mapper.num_images == 20
    assert mapper.num_empty_instances_dropped == sum(2 - k for k in kept) > 0


def test_masks_required_by_the_polygon_format_are_explained(dataset_dict):
    rle_dict = dict(
        dataset_dict,
        annotations=[dict(dataset_dict["annotations"][0], segmentation={"size": [50, 70], "counts": "PPPP0"})],
    )
    mapper = DatasetMapper(is_train=True, augmentations=[], use_instance_mask=True, on_bad_annotation="error")
    with pytest.raises(ValueError, match="set INPUT.MASK_FORMAT=bitmask"):
        mapper(rle_dict)


def test_the_config_chooses_the_mapper_from_the_registry():
    cfg = default_cfg()
    assert type(build_mapper(cfg, True)) is DatasetMapper

    @MAPPER_REGISTRY.register()
    class EchoMapper:
        def __init__(self, cfg, is_train):
            self.is_train = is_train

        def __call__(self, dataset_dict):
            return dataset_dict

    try:
        cfg.INPUT.MAPPER_NAME = "EchoMapper"
        mapper = build_mapper(cfg, False)
        assert isinstance(mapper, EchoMapper) and mapper.is_train is False
    finally:
        MAPPER_REGISTRY._obj_map.pop("EchoMapper")


def test_augmentations_from_the_config():
    cfg = default_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = [640, 800]
    cfg.INPUT.RANDOM_FLIP = "both"
    cfg.INPUT.BRIGHTNESS = [0.8, 1.2]
    cfg.INPUT.CONTRAST = [0.7, 1.3]
    cfg.INPUT.CROP.ENABLED = True
    mapper = DatasetMapper(cfg, is_train=True)
    kinds = [type(a).__name__ for a in mapper.augmentations.augmentations]
    assert kinds == [
        "RandomCrop",
        "ResizeShortestEdge",
        "RandomFlip",
        "RandomFlip",
        "RandomBrightness",
        "RandomContrast",
    ]
    assert mapper.recompute_boxes
    cfg.INPUT.LARGE_SCALE_JITTER.ENABLED = True
    cfg.INPUT.CROP.ENABLED = False
    kinds = [type(a).__name__ for a in DatasetMapper(cfg, is_train=True).augmentations.augmentations]
    assert kinds[:2] == ["ResizeScale", "FixedSizeCrop"]
    assert [type(a).__name__ for a in DatasetMapper(cfg, is_train=False).augmentations.augmentations] == [
        "ResizeShortestEdge"
    ]


def test_densest_dsb2018_image_at_1024_px_stays_small(data_root):
    root = require_dataset(data_root, "dsb2018")
    dicts = load_coco_json(str(root / "annotations_train.json"), str(root / "train"))
    dense = max(dicts, key=lambda d: len(d["annotations"]))
    assert len(dense["annotations"]) == 375
    cfg = default_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = [1024]
    cfg.INPUT.MAX_SIZE_TRAIN = 4096  # shortest edge really 1024: a 1024 x 2160 image
    cfg.INPUT.MASK_FORMAT = "bitmask"
    mapper = DatasetMapper(cfg, is_train=True)
    tracemalloc.start()
    try:
        out = mapper(dense)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    instances = out["instances"]
    assert tuple(out["image"].shape[1:]) == (1024, 2160) and len(instances) == 375
    dense_bytes = len(instances) * 1024 * 2160  # what one bool (N, H, W) array would take
    assert dense_bytes > 800e6
    assert peak < 300e6, f"peak {peak / 1e6:.0f} MB"
    assert sum(c.mask.nbytes for c in instances.gt_masks.crops) < 20e6
