"""``Visualizer`` on real images: mask blending pixel for pixel against an independent numpy
computation, paint order, grey background, mask-only pictures, input dtypes, dataset dicts
(RLE, polygons, bitmasks) and ``VisImage``.

Expected pixels are computed here in float64 from the image and the ground truth decoded with
pycocotools, never copied from an output."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from conftest import require_dataset

from project.data import load_coco_json
from project.data.detection_utils import convert_image_to_model_format, read_image
from project.structures import Boxes, BoxMode, CroppedBitMasks, Instances, MaskCrop
from project.visualization import ColorMode, VisImage, Visualizer
from project.visualization.colors import palette_colors
from project.visualization.drawing import line_thickness
from project.visualization.labels import FONT, font_scale

# An H&E (colour) DSB2018 validation image with 68 nuclei: grey and colour differ on it.
COLOUR_IMAGE = "e49fc2b4f1f39d48.png"
PLAIN = {"boxes": False, "contours": False, "labels": False}


def blend(pixels, colors, alpha):
    """``floor((1 - alpha) * pixel + alpha * colour + 0.5)`` in float64."""
    values = (1 - alpha) * pixels.astype(np.float64) + alpha * np.asarray(colors, dtype=np.float64)
    return np.floor(values + 0.5).astype(np.uint8)


def coco_rasterise(polygons, height, width):
    return mask_util.decode(mask_util.merge(mask_util.frPyObjects(polygons, height, width))).astype(bool)


def tight_boxes(masks):
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.array(boxes, dtype=np.float64)


def owners(masks):
    """Per pixel: how many masks cover it, and the smallest covering mask (the one on top)."""
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    cover = masks.sum(axis=0)
    owner = np.where(masks, areas[:, None, None], np.iinfo(np.int64).max).argmin(axis=0)
    return cover, owner


def expected_blend(image, masks, colors, alpha):
    cover, owner = owners(masks)
    expected = image.copy()
    inside = cover > 0
    expected[inside] = blend(image[inside], np.asarray(colors)[owner[inside]], alpha)
    return expected, cover


def assert_blended(out, image, masks, colors, alpha):
    """Single-mask pixels blend their mask's colour, overlaps the smallest mask's, the rest is
    untouched."""
    expected, cover = expected_blend(image, masks, colors, alpha)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[cover == 1], expected[cover == 1], err_msg="pixels inside one mask")
    np.testing.assert_array_equal(out[cover >= 2], expected[cover >= 2], err_msg="pixels where masks overlap")
    np.testing.assert_array_equal(out[cover == 0], image[cover == 0], err_msg="pixels outside every mask")


@pytest.fixture(scope="module")
def nuclei(data_root):
    """The colour DSB image (RGB) and its ground-truth masks, plus one larger mask (a nucleus
    grown by 7 px, appended last) that overlaps it and its neighbours."""
    root = require_dataset(data_root, "dsb2018")
    coco = json.loads((root / "annotations_val.json").read_text())
    info = next(i for i in coco["images"] if i["file_name"] == COLOUR_IMAGE)
    annos = [a for a in coco["annotations"] if a["image_id"] == info["id"]]
    image = read_image(str(root / "val" / COLOUR_IMAGE), "RGB")
    masks = np.stack([mask_util.decode(a["segmentation"]).astype(bool) for a in annos])
    grown = cv2.dilate(masks[5].astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15)))
    masks = np.concatenate([masks, grown[None].astype(bool)])
    cover = masks.sum(axis=0)
    assert (cover >= 2).sum() > 50, "the grown mask should overlap nuclei"
    return image, masks


def predictions(masks, form):
    n, height, width = masks.shape
    if form == "tensor":
        pred_masks = torch.from_numpy(masks)
    else:
        pred_masks = CroppedBitMasks([MaskCrop.from_array(m) for m in masks], (height, width))
    return Instances(
        (height, width),
        pred_boxes=Boxes(torch.from_numpy(tight_boxes(masks)).float()),
        scores=torch.linspace(0.99, 0.5, n),
        pred_classes=torch.zeros(n, dtype=torch.int64),
        pred_masks=pred_masks,
    )


@pytest.mark.parametrize("form", ["tensor", "cropped"])
def test_predictions_blend_masks_in_palette_colours(nuclei, form):
    image, masks = nuclei
    out = Visualizer(image, **PLAIN).draw_instance_predictions(predictions(masks, form)).get_image()
    assert_blended(out, image, masks, palette_colors(range(len(masks))), 0.5)


@pytest.mark.parametrize("form", ["tensor", "cropped"])
def test_overlay_blends_assigned_colours_with_alpha(nuclei, form):
    image, masks = nuclei
    colors = np.random.default_rng(0).integers(0, 256, size=(len(masks), 3))
    pred_masks = predictions(masks, form).pred_masks
    vis = Visualizer(image, alpha=0.35, **PLAIN)
    out = vis.overlay_instances(masks=pred_masks, assigned_colors=colors).get_image()
    assert_blended(out, image, masks, colors, 0.35)


def test_overlap_shows_the_smaller_mask(nuclei):
    """The grown mask is last in index order, so only largest-first painting keeps the nucleus
    under it visible."""
    image, masks = nuclei
    colors = np.random.default_rng(1).integers(0, 256, size=(len(masks), 3))
    out = Visualizer(image, **PLAIN).overlay_instances(masks=masks, assigned_colors=colors).get_image()
    nucleus = masks[5] & masks[-1]
    np.testing.assert_array_equal(out[nucleus], blend(image[nucleus], colors[5], 0.5))
    ring = masks[-1] & (masks.sum(axis=0) == 1)
    np.testing.assert_array_equal(out[ring], blend(image[ring], colors[-1], 0.5))


def test_assigned_colours_between_0_and_1_are_scaled(nuclei):
    image, masks = nuclei
    colors = np.random.default_rng(2).integers(0, 256, size=(len(masks), 3))
    out = Visualizer(image, **PLAIN).overlay_instances(masks=masks, assigned_colors=colors / 255.0).get_image()
    assert_blended(out, image, masks, colors, 0.5)


def test_image_bw_greys_the_background_only(nuclei):
    image, masks = nuclei
    vis = Visualizer(image, instance_mode=ColorMode.IMAGE_BW, **PLAIN)
    out = vis.draw_instance_predictions(predictions(masks, "cropped")).get_image()
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    outside = ~masks.any(axis=0)
    assert (image[outside] != grey[outside][:, None]).any(axis=1).mean() > 0.5, "the image should be in colour"
    np.testing.assert_array_equal(out[outside], np.repeat(grey[outside][:, None], 3, axis=1))
    expected, cover = expected_blend(image, masks, palette_colors(range(len(masks))), 0.5)
    np.testing.assert_array_equal(out[cover > 0], expected[cover > 0], err_msg="masks blend the colour image")


def test_segmentation_mode_colours_by_class_from_thing_colors(nuclei):
    image, masks = nuclei
    inst = predictions(masks, "cropped")
    classes = np.arange(len(masks)) % 3
    inst.pred_classes = torch.from_numpy(classes)
    thing_colors = [[200, 30, 30], [30, 200, 30], [30, 30, 200]]
    vis = Visualizer(image, {"thing_colors": thing_colors}, instance_mode=ColorMode.SEGMENTATION, **PLAIN)
    out = vis.draw_instance_predictions(inst).get_image()
    assert_blended(out, image, masks, np.array(thing_colors)[classes], 0.5)


def test_mask_only_is_black_with_solid_masks(nuclei):
    image, masks = nuclei
    out = Visualizer(image, mask_only=True).draw_instance_predictions(predictions(masks, "cropped")).get_image()
    cover, owner = owners(masks)
    expected = np.where((cover > 0)[:, :, None], palette_colors(range(len(masks)))[owner], 0)
    np.testing.assert_array_equal(out, expected)


def test_defaults_draw_only_near_masks_boxes_and_labels(nuclei):
    """Boxes, contours and labels on: every pixel away from the masks, box outlines and the
    places a label may take is unchanged; box outlines and label pixels are drawn."""
    image, masks = nuclei
    masks = masks[:20]
    height, width = image.shape[:2]
    boxes = tight_boxes(masks).astype(int)
    drawn = Visualizer(image, {"thing_classes": ["nucleus"]}).draw_instance_predictions(predictions(masks, "cropped"))
    out = drawn.get_image()
    changed = (out != image).any(axis=2)

    outlines = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        outlines[y0, x0:x1] = outlines[y1 - 1, x0:x1] = True
        outlines[y0:y1, x0] = outlines[y0:y1, x1 - 1] = True
    reach = 2 * (line_thickness((height, width)) + 2) + 1
    near = cv2.dilate((masks.any(axis=0) | outlines).astype(np.uint8), np.ones((reach, reach), np.uint8)) > 0

    scale = font_scale((height, width))
    (text_w, text_h), baseline = cv2.getTextSize("nucleus 100%", FONT, scale, 2)
    label_w, label_h = text_w + 2 * text_h, 2 * (text_h + baseline)
    label_zone = np.zeros((height, width), dtype=bool)
    for x0, y0, _, y1 in boxes:
        label_zone[max(0, y0 - label_h) : y1 + label_h, max(0, min(x0, width - label_w)) : x0 + label_w] = True
    far = ~(near | label_zone)
    assert far.mean() > 0.2, "the test needs free image area"

    np.testing.assert_array_equal(out[far], image[far], err_msg="pixels far from everything drawn")
    assert changed[outlines].mean() > 0.95, "box outlines are drawn"
    assert changed[masks.any(axis=0)].mean() > 0.95, "masks are drawn"
    assert drawn.hidden_labels < len(masks)
    assert (changed & ~near).sum() > 20, "labels are drawn"


def grey_and_variants(image):
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    alpha = np.random.default_rng(3).integers(0, 256, size=grey.shape, dtype=np.uint8)
    return {
        "grey uint8": grey,
        "grey (H, W, 1)": grey[:, :, None],
        "grey uint16": grey.astype(np.uint16) * 257,
        "RGBA": np.dstack([image, alpha]),
    }


@pytest.mark.parametrize("kind", ["grey uint8", "grey (H, W, 1)", "grey uint16", "RGBA"])
def test_other_image_types_draw_on_the_model_format_image(nuclei, kind):
    image, masks = nuclei
    img = grey_and_variants(image)[kind]
    reference = convert_image_to_model_format(img, "RGB")
    if kind == "grey uint16":
        assert not np.array_equal(reference[:, :, 0], cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)), "16-bit is stretched"
    out = Visualizer(img, **PLAIN).draw_instance_predictions(predictions(masks, "cropped")).get_image()
    assert_blended(out, reference, masks, palette_colors(range(len(masks))), 0.5)


# Dataset dicts ------------------------------------------------------------------------------


def draw_dict_and_check(image, dic, masks):
    out = Visualizer(image, **PLAIN).draw_dataset_dict(dic).get_image()
    assert_blended(out, image, masks, palette_colors(range(len(masks))), 0.5)


def test_dataset_dict_with_rle(data_root):
    root = require_dataset(data_root, "dsb2018")
    dicts = load_coco_json(str(root / "annotations_val.json"), str(root / "val"))
    dic = next(d for d in dicts if d["file_name"].endswith(COLOUR_IMAGE))
    masks = np.stack([mask_util.decode(a["segmentation"]).astype(bool) for a in dic["annotations"]])
    draw_dict_and_check(read_image(dic["file_name"], "RGB"), dic, masks)


def test_dataset_dict_with_polygons(data_root):
    """Checked one pixel away from every mask edge: crops of COCO polygons differ from COCO's
    full-image rasterisation on a few edge pixels (see test_mask_crops)."""
    root = require_dataset(data_root, "coco_mini")
    (dic,) = load_coco_json(str(root / "annotations" / "instances_val2017.json"), str(root / "images" / "val2017"))
    h, w = dic["height"], dic["width"]
    assert all(isinstance(a["segmentation"], list) for a in dic["annotations"])
    masks = np.stack([coco_rasterise(a["segmentation"], h, w) for a in dic["annotations"]])
    assert (masks.sum(axis=0) >= 2).any(), "COCO objects overlap"
    image = read_image(dic["file_name"], "RGB")
    out = Visualizer(image, **PLAIN).draw_dataset_dict(dic).get_image()
    expected, _ = expected_blend(image, masks, palette_colors(range(len(masks))), 0.5)
    edges = np.zeros((h, w), dtype=bool)
    for m in masks.astype(np.uint8):
        edges |= cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    assert masks.any(axis=0)[~edges].sum() > 10000
    np.testing.assert_array_equal(out[~edges], expected[~edges])


def test_dataset_dict_with_bitmasks(data_root):
    root = require_dataset(data_root, "pennfudan")
    image = read_image(str(root / "PNGImages" / "FudanPed00001.png"), "RGB")
    ids = cv2.imread(str(root / "PedMasks" / "FudanPed00001_mask.png"), cv2.IMREAD_UNCHANGED)
    masks = np.stack([ids == k for k in np.unique(ids) if k != 0])
    annos = [
        {"bbox": box.tolist(), "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "segmentation": m.astype(np.uint8)}
        for box, m in zip(tight_boxes(masks), masks)
    ]
    dic = {"file_name": "FudanPed00001.png", "height": ids.shape[0], "width": ids.shape[1], "annotations": annos}
    draw_dict_and_check(image, dic, masks)


def test_dataset_dict_of_another_size_names_the_file(data_root):
    root = require_dataset(data_root, "dsb2018")
    dicts = load_coco_json(str(root / "annotations_val.json"), str(root / "val"))
    dic = next(d for d in dicts if d["file_name"].endswith(COLOUR_IMAGE))
    image = read_image(dic["file_name"], "RGB")
    with pytest.raises(ValueError, match=re.escape(dic["file_name"])):
        Visualizer(image).draw_dataset_dict({**dic, "height": dic["height"] + 1})


# VisImage ----------------------------------------------------------------------------------


def test_save_writes_the_picture_as_png(nuclei, tmp_path):
    image, masks = nuclei
    vis = Visualizer(image).overlay_instances(masks=masks)
    path = tmp_path / "picture.png"
    vis.save(str(path))
    on_disk = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(on_disk, vis.get_image()[:, :, ::-1])


@pytest.mark.parametrize("name", ["missing_folder/picture.png", "picture.unknown_extension"])
def test_save_to_an_unwritable_path_raises_oserror_naming_it(tmp_path, name):
    path = str(tmp_path / name)
    with pytest.raises(OSError, match=re.escape(path)):
        VisImage(np.zeros((8, 8, 3), dtype=np.uint8)).save(path)


def test_scale_resizes_the_picture(nuclei):
    image, masks = nuclei
    height, width = image.shape[:2]
    half = Visualizer(image, scale=0.5).overlay_instances(masks=masks).get_image()
    assert half.shape == (height // 2, width // 2, 3)
    full = Visualizer(image).overlay_instances(masks=masks).get_image()
    assert full.shape == image.shape
