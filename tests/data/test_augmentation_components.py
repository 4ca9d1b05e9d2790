"""Augmentations, transforms, annotation helpers and the dataset mapper from plain arguments,
without a config."""

from __future__ import annotations

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from PIL import Image, ImageOps

from project.config.compose import default_cfg
from project.data import DatasetMapper
from project.data import detection_utils as utils
from project.data import transforms as T
from project.structures import BitMasks, BoxMode


def test_get_transform_inputs_come_from_its_signature():
    class SeesBoxes(T.Augmentation):
        def get_transform(self, image, boxes):
            return T.HFlipTransform(image.shape[1]) if len(boxes) else T.NoOpTransform()

    class SeesOne(T.Augmentation):
        def get_transform(self, anything):
            return T.VFlipTransform(anything.shape[0])

    aug_input = T.AugInput(np.zeros((4, 6, 3), np.uint8), boxes=np.array([[0.0, 0.0, 2.0, 2.0]]))
    transforms = T.AugmentationList([SeesBoxes(), SeesOne()])(aug_input)
    assert [type(t).__name__ for t in transforms.transforms] == ["HFlipTransform", "VFlipTransform"]
    assert aug_input.boxes.tolist() == [[4.0, 2.0, 6.0, 4.0]]

    class SeesDepth(T.Augmentation):
        def get_transform(self, image, depth):
            return T.NoOpTransform()

    with pytest.raises(AttributeError, match="depth"):
        SeesDepth()(T.AugInput(np.zeros((4, 6, 3), np.uint8)))


def test_random_apply_and_fixed_transforms():
    image = np.arange(24, dtype=np.uint8).reshape(4, 6, 1)
    flip = T.HFlipTransform(6)
    assert isinstance(T.RandomApply(flip, prob=0.0)(T.AugInput(image)), T.NoOpTransform)
    assert T.RandomApply(flip, prob=1.0)(T.AugInput(image)) is flip
    out, transforms = T.apply_augmentations([flip, T.Resize((2, 3))], image)
    assert out.shape == (2, 3, 1) and len(transforms.transforms) == 2
    with pytest.raises(ValueError):
        T.RandomApply(flip, prob=1.5)
    assert repr(T.Resize((2, 3))) == "Resize(shape=(2, 3))"


def test_resizes_accept_pillow_constants():
    image = np.zeros((10, 20, 3), np.uint8)
    assert T.Resize(5, interp=Image.NEAREST).get_transform(image).interp == "nearest"
    np.random.seed(0)
    shapes = {T.RandomResize([(4, 8), (6, 12)]).get_transform(image).new_h for _ in range(20)}
    assert shapes == {4, 6}
    with pytest.raises(ValueError, match="interp"):
        T.ResizeTransform(10, 20, 5, 10, interp="lanczos")


def test_photometric_augmentations_keep_the_geometry():
    image = np.random.RandomState(0).randint(0, 255, (8, 8, 3)).astype(np.float32)
    for aug in (T.RandomSaturation(0.5, 1.5), T.RandomLighting(25.0)):
        tfm = aug.get_transform(image)
        assert tfm.apply_image(image).shape == image.shape
        assert np.array_equal(tfm.apply_coords(np.array([[1.0, 2.0]])), [[1.0, 2.0]])
    assert np.allclose(
        T.RandomSaturation(0.0, 0.0).get_transform(image).apply_image(image)[..., 0], image.dot([0.299, 0.587, 0.114])
    )
    with pytest.raises(ValueError, match="3-channel"):
        T.RandomLighting(1.0).get_transform(image[..., :1])


def test_colour_transforms_change_only_pixels():
    image = np.full((3, 4, 3), 10, np.uint8)
    assert (T.ColorTransform(lambda x: x * 2).apply_image(image) == 20).all()
    assert (T.PILColorTransform(ImageOps.invert).apply_image(image) == 245).all()
    assert np.array_equal(T.ColorTransform(np.sqrt).apply_segmentation(image), image)
    with pytest.raises(ValueError, match="callable"):
        T.ColorTransform(3)


def test_extent_transform_cuts_and_scales_a_rectangle():
    image = np.zeros((10, 10), np.uint8)
    image[0:5, 0:5] = 7
    tfm = T.ExtentTransform(src_rect=(0, 0, 5, 5), output_size=(10, 10), interp="nearest")
    assert (tfm.apply_image(image) == 7).all()
    assert np.allclose(tfm.apply_coords(np.array([[5.0, 2.5]])), [[10.0, 5.0]])
    beyond = T.ExtentTransform(src_rect=(-5, 0, 5, 10), output_size=(10, 10), interp="nearest")
    assert (beyond.apply_segmentation(image)[:, :5] == 0).all()
    np.random.seed(0)
    out = T.RandomExtent(scale_range=(0.5, 0.5), shift_range=(0, 0)).get_transform(np.zeros((10, 20, 3)))
    assert out.output_size == (5, 10) and np.allclose(out.src_rect, (5, 2.5, 15, 7.5))


def test_crop_around_an_instance_contains_its_centre():
    instance = {"bbox": [30, 10, 10, 20], "bbox_mode": BoxMode.XYWH_ABS}  # centre (x, y) = (35, 20)
    np.random.seed(0)
    for _ in range(30):
        crop = utils.gen_crop_transform_with_instance((8, 12), (40, 60), instance)
        assert (crop.h, crop.w) == (8, 12)
        assert crop.x0 <= 35 <= crop.x0 + 12 and crop.y0 <= 20 <= crop.y0 + 8
        assert 0 <= crop.x0 <= 48 and 0 <= crop.y0 <= 32
    with pytest.raises(ValueError, match="does not fit"):
        utils.gen_crop_transform_with_instance((50, 12), (40, 60), instance)


def test_rle_masks_transform_without_the_input_size():
    mask = np.zeros((20, 30), np.uint8)
    mask[2:6, 3:9] = 1
    rle = mask_util.encode(np.asfortranarray(mask))
    anno = {"bbox": [3, 2, 6, 4], "bbox_mode": BoxMode.XYWH_ABS, "segmentation": rle, "category_id": 0}
    moved = utils.transform_instance_annotations(anno, [T.HFlipTransform(30)], (20, 30))
    assert np.array_equal(moved["segmentation"], mask[:, ::-1]) and moved["bbox"].tolist() == [21, 2, 27, 6]
    instances = utils.annotations_to_instances([moved], (20, 30), mask_format="bitmask")
    assert isinstance(instances.gt_masks, BitMasks) and instances.gt_masks.tensor[0].sum() == 24


def _photo(tmp_path) -> dict:
    image = np.zeros((30, 40, 3), np.uint8)
    image[5:15, 10:30] = 180
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    polygon = [[10.0, 5.0, 30.0, 5.0, 30.0, 15.0, 10.0, 15.0]]
    anno = {"bbox": [10, 5, 20, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "segmentation": polygon}
    return {"file_name": str(tmp_path / "photo.png"), "height": 30, "width": 40, "annotations": [anno]}


def test_dataset_mapper_from_keywords_equals_the_one_from_the_config(tmp_path):
    cfg = default_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = [60]
    from_config = DatasetMapper(cfg, is_train=True)
    plain = DatasetMapper(
        is_train=True,
        augmentations=[T.ResizeShortestEdge([60], cfg.INPUT.MAX_SIZE_TRAIN, "choice"), T.RandomFlip()],
        image_format=cfg.INPUT.FORMAT,
        use_instance_mask=cfg.MODEL.MASK_ON,
        instance_mask_format=cfg.INPUT.MASK_FORMAT,
    )
    assert repr(plain.augmentations) == repr(from_config.augmentations)
    dataset_dict = _photo(tmp_path)
    for seed in range(3):
        np.random.seed(seed)
        a = from_config(dataset_dict)
        np.random.seed(seed)
        b = plain(dataset_dict)
        assert torch.equal(a["image"], b["image"])
        assert torch.equal(a["instances"].gt_boxes.tensor, b["instances"].gt_boxes.tensor)
    with pytest.raises(ValueError, match="recompute_boxes"):
        DatasetMapper(is_train=True, augmentations=[], recompute_boxes=True)


def test_rotation_turns_image_and_points_together():
    image = np.zeros((20, 40), np.uint8)
    image[2:4, 30:34] = 255  # a spot near the top right corner
    tfm = T.RotationTransform(20, 40, 90)  # counter-clockwise: top right goes to top left
    out = tfm.apply_segmentation(image)
    assert out.shape == (40, 20) and (tfm.bound_h, tfm.bound_w) == (40, 20)
    ys, xs = np.nonzero(out)
    centre = tfm.apply_coords(np.array([[32.0, 3.0]]))[0]
    assert np.allclose(centre, [3.0, 8.0]) and np.allclose([xs.mean() + 0.5, ys.mean() + 0.5], centre)
    back = tfm.inverse()
    assert np.array_equal(back.apply_segmentation(out), image)
    assert np.allclose(back.apply_coords(centre[None]), [[32.0, 3.0]])
    with pytest.raises(NotImplementedError):
        T.RotationTransform(20, 40, 30, expand=False).inverse()
    np.random.seed(0)
    assert isinstance(T.RandomRotation([360, 360]).get_transform(image), T.NoOpTransform)
    turned = T.RandomRotation([10, 20], expand=False, center=[0.0, 0.0]).get_transform(image)
    assert 10 <= turned.angle <= 20 and turned.center == (0.0, 0.0) and (turned.bound_h, turned.bound_w) == (20, 40)
