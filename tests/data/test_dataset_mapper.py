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
from project.data.bad_input import KIND_CORRUPT_IMAGE, BadAnnotationError
from project.data.detection_utils import (
    UINT16_PERCENTILES,
    UnusableImageError,
    convert_image_to_model_format,
    read_image,
    scale_to_uint8,
)
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
    assert np.array_equal(scale_to_uint8(np.full((3, 3), 700, np.uint16)), np.zeros((3, 3), np.uint8))


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


@pytest.fixture(scope="module")
def photo():
    """An 8-bit colour image using only part of the 0..255 range, as most photographs do, so a
    contrast stretch would change it."""
    return np.random.default_rng(3).integers(30, 200, (48, 64, 3)).astype(np.uint8)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64])
def test_signed_integer_copies_of_an_eight_bit_image_are_taken_unchanged(photo, dtype):
    assert np.array_equal(scale_to_uint8(photo.astype(dtype)), photo)
    assert np.array_equal(scale_to_uint8((photo // 2).astype(np.int8)), photo // 2)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
def test_unsigned_sixteen_bit_data_is_stretched_even_when_dim(photo, dtype):
    """A dim exposure of a 12- or 16-bit camera may hold only values below 256: still sensor data."""
    dim = photo.astype(dtype)
    low, high = np.percentile(dim.astype(np.float64), UINT16_PERCENTILES)
    expected = np.clip((dim - low) * 255.0 / (high - low) + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(scale_to_uint8(dim), expected)
    assert not np.array_equal(expected, photo)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_copies_on_either_scale_give_back_the_eight_bit_image(photo, dtype):
    assert np.array_equal(scale_to_uint8(photo.astype(dtype)), photo)  # 0-255 values
    assert np.array_equal(scale_to_uint8(photo.astype(dtype) / dtype(255)), photo)  # 0-1 intensities
    assert np.array_equal(scale_to_uint8(photo / 255.0), photo)


def test_floats_are_rounded_and_other_ranges_stretched_like_sixteen_bit_images():
    assert scale_to_uint8(np.array([[12.4, 12.6, 254.5, 0.0]], np.float32)).tolist() == [[12, 13, 254, 0]]
    assert scale_to_uint8(np.array([[0.0, 0.5, 1.0]])).tolist() == [[0, 128, 255]]
    deep = np.random.default_rng(0).integers(1000, 3000, (20, 30)).astype(np.uint16)
    assert np.array_equal(scale_to_uint8(deep.astype(np.float32)), scale_to_uint8(deep))
    signed = np.linspace(-1.0, 1.0, 600).reshape(20, 30)  # e.g. an image normalised to mean 0
    stretched = scale_to_uint8(signed)
    assert stretched.min() == 0 and stretched.max() == 255 and (np.diff(stretched.ravel().astype(int)) >= 0).all()


def test_bool_images_are_black_and_white():
    assert scale_to_uint8(np.array([[True, False]])).tolist() == [[255, 0]]


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_rejected_with_count_and_place(photo, bad_value):
    image = photo.astype(np.float32)
    image[4, 5, 1] = bad_value
    image[7, 2, :] = bad_value  # one pixel, three values
    with pytest.raises(UnusableImageError) as info:
        convert_image_to_model_format(image, "BGR", source="image 3")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message.startswith("image 3: 2 of 3072 pixels") and "NaN or infinite" in message
    assert "row 4, column 5" in message and "nan_to_num" in message


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 0, 3), np.uint8), "has no pixels (shape (0, 0, 3))"),
        (np.zeros((5, 0), np.float32), "has no pixels (shape (5, 0))"),
        (np.full((4, 4), "a"), "pixel values of type <U1"),
        (np.zeros((4, 4), np.complex64), "pixel values of type complex64"),
    ],
)
def test_empty_and_non_numeric_images_are_rejected(bad, message):
    with pytest.raises(UnusableImageError, match="^image 0: ") as info:
        convert_image_to_model_format(bad, "BGR", source="image 0")
    assert message in str(info.value)


def test_files_follow_the_same_contract_as_arrays(tmp_path, photo):
    """Float TIFFs (0-1 or 0-255) read as the 8-bit image; 16-bit PNGs are stretched as arrays of
    their type are."""
    files = {
        "unit.tif": (photo / 255.0).astype(np.float32),
        "levels.tif": photo.astype(np.float64),
        "levels16.png": photo.astype(np.uint16),
        "grey16.png": photo[:, :, 0].astype(np.uint16),
    }
    for name, image in files.items():
        assert cv2.imwrite(str(tmp_path / name), image)
        decoded = cv2.imdecode(np.fromfile(str(tmp_path / name), np.uint8), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
        assert decoded.dtype == image.dtype  # the file really holds floats or 16 bits
    for name in ("unit.tif", "levels.tif"):
        assert np.array_equal(read_image(str(tmp_path / name), "BGR"), photo), name
        assert np.array_equal(read_image(str(tmp_path / name), "RGB"), photo[:, :, ::-1]), name
    assert np.array_equal(read_image(str(tmp_path / "levels16.png"), "BGR"), scale_to_uint8(files["levels16.png"]))
    assert np.array_equal(read_image(str(tmp_path / "grey16.png"), "L")[:, :, 0], scale_to_uint8(files["grey16.png"]))
    mapper = DatasetMapper(is_train=False, augmentations=[])
    for name in ("unit.tif", "levels.tif"):
        mapped = mapper({"file_name": str(tmp_path / name), "image_id": 1})["image"]
        assert torch.equal(mapped, torch.from_numpy(photo.transpose(2, 0, 1).copy())), name


def test_a_float_tiff_with_nan_is_bad_input_named_and_counted(tmp_path, photo):
    image = photo.astype(np.float32)
    image[10, 20] = np.nan
    path = str(tmp_path / "nan.tif")
    cv2.imwrite(path, image)
    with pytest.raises(BadAnnotationError) as info:
        read_image(path)
    assert info.value.file == path and info.value.kind == KIND_CORRUPT_IMAGE
    assert "1 of 3072 pixels" in str(info.value) and "row 10, column 20" in str(info.value)
    record = {"file_name": path, "height": 48, "width": 64, "image_id": 1, "annotations": []}
    skipping = DatasetMapper(is_train=True, augmentations=[], on_bad_annotation="skip")
    assert skipping(record) is None
    assert skipping._bad_input.counts == {KIND_CORRUPT_IMAGE: 1}
    with pytest.raises(BadAnnotationError, match="NaN or infinite"):
        DatasetMapper(is_train=False, augmentations=[])(record)


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
    kinds = [type(a).__name__ for a in mapper.augmentations.augs]
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
    kinds = [type(a).__name__ for a in DatasetMapper(cfg, is_train=True).augmentations.augs]
    assert kinds[:2] == ["ResizeScale", "FixedSizeCrop"]
    assert [type(a).__name__ for a in DatasetMapper(cfg, is_train=False).augmentations.augs] == ["ResizeShortestEdge"]


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
