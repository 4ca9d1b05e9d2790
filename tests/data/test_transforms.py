"""Every augmentation, run through the DatasetMapper on a drawn image whose shapes are known:
the instances' boxes and masks must land exactly where the image's shapes land."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from project.data import DatasetMapper
from project.data import transforms as T
from project.structures import BoxMode, MaskCrop, polygons_to_bitmask
from project.structures.rle import encode_mask

H, W = 100, 140
# BGR colours of the three shapes: a rectangle and a triangle (polygons), an ellipse (RLE).
COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255)], dtype=np.uint8)
RECTANGLE = [20.0, 30.0, 70.0, 30.0, 70.0, 60.0, 20.0, 60.0]
TRIANGLE = [35.0, 68.0, 95.0, 96.0, 8.0, 92.0]


def _ellipse() -> np.ndarray:
    y, x = np.mgrid[:H, :W]
    return ((x - 105) / 18.0) ** 2 + ((y - 40) / 25.0) ** 2 <= 1


def _annotation(mask: np.ndarray, category: int, segmentation) -> dict:
    x0, y0, x1, y1 = MaskCrop.from_array(mask).bounding_box()
    return {
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "bbox_mode": BoxMode.XYWH_ABS,
        "category_id": category,
        "segmentation": segmentation,
        "iscrowd": 0,
    }


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A dataset dict of the drawn image: shape k is painted in COLOURS[k] on black."""
    masks = [polygons_to_bitmask([RECTANGLE], H, W), _ellipse(), polygons_to_bitmask([TRIANGLE], H, W)]
    image = np.zeros((H, W, 3), dtype=np.uint8)
    for colour, mask in zip(COLOURS, masks):
        image[mask] = colour
    path = str(tmp_path_factory.mktemp("scene") / "scene.png")
    cv2.imwrite(path, image)
    annotations = [
        _annotation(masks[0], 0, [RECTANGLE]),
        _annotation(masks[1], 1, encode_mask(masks[1])),
        _annotation(masks[2], 2, [TRIANGLE]),
    ]
    return {"file_name": path, "height": H, "width": W, "image_id": 1, "annotations": annotations}


def regions(image: torch.Tensor, colours=COLOURS) -> np.ndarray:
    """(3, h, w) bool: where the mapped (C, h, w) image shows each shape's colour."""
    pixels = image.permute(1, 2, 0).numpy()
    return np.stack([(pixels == c).all(axis=2) for c in colours])


def border(region: np.ndarray) -> np.ndarray:
    """Pixels within one pixel of the region's edge, inside or outside (the image's edge
    counts as an edge)."""
    padded = np.pad(region, 1).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    return (cv2.dilate(padded, kernel) != cv2.erode(padded, kernel))[1:-1, 1:-1]


def differ_only_along_edges(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two masks of one shape disagree only on pixels next to an edge of either."""
    return not ((a ^ b) & ~border(a) & ~border(b)).any()


def tight_box(region: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = MaskCrop.from_array(region).bounding_box()
    return np.array([x0, y0, x1, y1], dtype=np.float32)


def mapped(
    scene: dict, augmentations, mask_format: str = "bitmask", seed: int = 0, recompute_boxes: bool = False
) -> dict:
    np.random.seed(seed)
    mapper = DatasetMapper(
        is_train=True,
        augmentations=augmentations,
        use_instance_mask=True,
        instance_mask_format=mask_format,
        recompute_boxes=recompute_boxes,
    )
    return mapper(scene)


# Augmentations that move pixels without blending them (nearest-neighbour resizing), each
# with whether boxes move by whole pixels (so a box equals its shape's pixel box) and whether
# it crops (then, as DatasetMapper.from_config does, boxes are recomputed from the masks).
GEOMETRIC = {
    "hflip": ([T.RandomFlip(1.0, horizontal=True)], True, False),
    "vflip": ([T.RandomFlip(1.0, horizontal=False, vertical=True)], True, False),
    "both_flips": ([T.RandomFlip(1.0), T.RandomFlip(1.0, horizontal=False, vertical=True)], True, False),
    "resize_x2": ([T.ResizeShortestEdge([200], 10_000, "choice", interp="nearest")], True, False),
    "resize_multiscale": ([T.ResizeShortestEdge([137, 163], 10_000, "choice", interp="nearest")], False, False),
    "shrink": ([T.ResizeShortestEdge([61], 10_000, "choice", interp="nearest")], False, False),
    "random_crop": ([T.RandomCrop("absolute", (60, 90))], True, True),
    "random_crop_relative_range": ([T.RandomCrop("relative_range", (0.5, 0.5))], True, True),
    "large_scale_jitter": (
        [T.ResizeScale(1.0, 2.0, 128, 128, interp="nearest"), T.FixedSizeCrop((128, 128))],
        True,
        True,
    ),
    "large_scale_jitter_pad": (
        [T.ResizeScale(0.3, 0.5, 256, 256, interp="nearest"), T.FixedSizeCrop((256, 256))],
        True,
        True,
    ),
    "crop_resize_flip": (
        [
            T.RandomCrop("absolute", (80, 120)),
            T.ResizeShortestEdge([160], 10_000, "choice", interp="nearest"),
            T.RandomFlip(1.0),
        ],
        True,
        True,
    ),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
@pytest.mark.parametrize("seed", [0, 1])
def test_bitmasks_and_boxes_move_with_the_image(scene, name, seed):
    augmentations, whole_pixels, crops = GEOMETRIC[name]
    out = mapped(scene, augmentations, seed=seed, recompute_boxes=crops)
    image_regions = regions(out["image"])
    instances = out["instances"]
    assert instances.image_size == tuple(out["image"].shape[1:])
    visible = [k for k in range(3) if image_regions[k].any()]
    assert instances.gt_classes.tolist() == visible  # empty instances dropped, others kept in order
    dense = instances.gt_masks.tensor.numpy()
    for row, k in enumerate(visible):
        box = instances.gt_boxes.tensor[row].numpy()
        expected_box = tight_box(image_regions[k])
        if k == 1:  # the RLE mask is resampled like the image: pixel for pixel
            assert np.array_equal(dense[row], image_regions[k]), "RLE mask differs from the image"
            if whole_pixels:
                np.testing.assert_allclose(box, expected_box, atol=1e-4)
            else:  # the box maps continuously; resampled pixels stay within half a pixel of it
                assert (expected_box[:2] >= box[:2] - 0.5).all() and (expected_box[2:] <= box[2:] + 0.5).all()
                np.testing.assert_allclose(box, expected_box, atol=2.0)
        else:  # polygons are moved, then rasterised: they may differ along their edges only
            assert differ_only_along_edges(dense[row], image_regions[k])
            np.testing.assert_allclose(box, tight_box(dense[row]), atol=1.5)


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
def test_polygons_move_with_the_image(scene, name):
    polygon_scene = dict(scene, annotations=[scene["annotations"][0], scene["annotations"][2]])
    augmentations, _, crops = GEOMETRIC[name]
    out = mapped(polygon_scene, augmentations, mask_format="polygon", seed=3, recompute_boxes=crops)
    image_regions = regions(out["image"])[[0, 2]]
    instances = out["instances"]
    h, w = out["image"].shape[1:]
    visible = [k for k in range(2) if image_regions[k].any()]
    assert instances.gt_classes.tolist() == [[0, 2][k] for k in visible]
    for row, k in enumerate(visible):
        raster = polygons_to_bitmask(instances.gt_masks.polygons[row], h, w)
        # Moved polygons, rasterised again, may differ from the resampled pixels along their
        # border only.
        assert differ_only_along_edges(raster, image_regions[k])


def test_bilinear_resize_keeps_masks_on_the_shapes(scene):
    out = mapped(scene, [T.ResizeShortestEdge([173], 10_000, "choice")])  # bilinear: edges blend
    image = out["image"].permute(1, 2, 0).numpy().astype(int)
    dense = out["instances"].gt_masks.tensor.numpy()
    kernel = np.ones((5, 5), np.uint8)  # bilinear blending reaches 2 pixels at this scale
    for k, mask in enumerate(dense):
        inside = cv2.erode(mask.astype(np.uint8), kernel).astype(bool)
        assert inside.sum() > 100
        assert (np.abs(image[inside] - COLOURS[k]).max(axis=1) <= 1).all()
        outside = ~cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
        assert not (np.abs(image[outside] - COLOURS[k]).max(axis=1) <= 1).any()


@pytest.mark.parametrize("augmentation", [T.RandomBrightness(0.5, 0.5), T.RandomContrast(0.5, 0.5)])
def test_photometric_augmentations_change_pixels_not_instances(scene, augmentation):
    plain = mapped(scene, [])
    changed = mapped(scene, [augmentation])
    image = changed["image"].numpy().astype(np.float32)
    original = plain["image"].numpy().astype(np.float32)
    if isinstance(augmentation, T.RandomBrightness):
        np.testing.assert_allclose(image, np.floor(original * 0.5), atol=1)
    else:
        mean = original.mean()
        np.testing.assert_allclose(image, np.floor(mean + 0.5 * (original - mean)), atol=1)
    assert torch.equal(changed["instances"].gt_boxes.tensor, plain["instances"].gt_boxes.tensor)
    assert torch.equal(changed["instances"].gt_masks.tensor, plain["instances"].gt_masks.tensor)


def test_resize_shortest_edge_output_shapes_and_sampling():
    assert T.ResizeShortestEdge.get_output_shape(480, 640, 800, 1333) == (800, 1067)
    assert T.ResizeShortestEdge.get_output_shape(100, 1000, 800, 1333) == (133, 1333)
    image = np.zeros((100, 150, 3), dtype=np.uint8)
    np.random.seed(0)
    choice = T.ResizeShortestEdge([64, 80, 96], 10_000, "choice")
    assert {choice.get_transform(image).new_h for _ in range(60)} == {64, 80, 96}
    ranged = T.ResizeShortestEdge([64, 70], 10_000, "range")
    assert {ranged.get_transform(image).new_h for _ in range(200)} == set(range(64, 71))
    assert isinstance(T.ResizeShortestEdge(0).get_transform(image), T.NoOpTransform)


def test_random_crop_sizes_follow_the_crop_type():
    np.random.seed(0)
    assert T.RandomCrop("relative", (0.5, 0.25)).get_crop_size((100, 140)) == (50, 35)
    assert T.RandomCrop("absolute", (30, 200)).get_crop_size((100, 140)) == (30, 140)
    for _ in range(50):
        h, w = T.RandomCrop("relative_range", (0.5, 0.8)).get_crop_size((100, 140))
        assert 50 <= h <= 100 and 112 <= w <= 140
        h, w = T.RandomCrop("absolute_range", (20, 60)).get_crop_size((100, 40))
        assert 20 <= h <= 60 and 20 <= w <= 40


def test_random_flip_happens_with_its_probability():
    np.random.seed(0)
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    flips = [isinstance(T.RandomFlip(0.3).get_transform(image), T.HFlipTransform) for _ in range(2000)]
    assert 0.25 < np.mean(flips) < 0.35
    with pytest.raises(ValueError, match="either"):
        T.RandomFlip(horizontal=True, vertical=True)


def test_crop_clips_polygons_to_the_window():
    crop = T.CropTransform(10, 10, 20, 20)
    (inside,) = crop.apply_polygons([np.array([[0.0, 0.0], [40.0, 0.0], [40.0, 40.0], [0.0, 40.0]])])
    assert np.allclose(sorted(map(tuple, inside)), [(0, 0), (0, 20), (20, 0), (20, 20)])
    assert crop.apply_polygons([np.array([[50.0, 50.0], [60.0, 50.0], [55.0, 60.0]])]) == []
