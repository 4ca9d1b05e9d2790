"""``VideoVisualizer``: colours follow real nuclei moved between frames, new objects get unused
colours, objects unseen for ``memory`` frames are forgotten, and matching takes the best IoU
first."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from conftest import require_dataset
from torchvision.ops import box_iou

from project.data.detection_utils import read_image
from project.structures import Boxes, Instances
from project.visualization.colors import PALETTE_SIZE
from project.visualization.video import VideoVisualizer

IMAGE = "e49fc2b4f1f39d48.png"  # an H&E DSB2018 validation image with 68 nuclei
SHIFT = 3


def frame(masks):
    """Predictions of one frame: the masks, their tight boxes, scores and class 0."""
    n, height, width = masks.shape
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return Instances(
        (height, width),
        pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
        scores=torch.linspace(0.9, 0.6, n),
        pred_classes=torch.zeros(n, dtype=torch.int64),
        pred_masks=torch.from_numpy(masks),
    )


def empty_frame(size):
    return Instances(
        size,
        pred_boxes=Boxes(torch.zeros(0, 4)),
        scores=torch.zeros(0),
        pred_classes=torch.zeros(0, dtype=torch.int64),
        pred_masks=torch.zeros((0,) + tuple(size), dtype=torch.bool),
    )


def iou_matrix(a, b):
    fa = a.reshape(len(a), -1).astype(np.float64)
    fb = b.reshape(len(b), -1).astype(np.float64)
    inter = fa @ fb.T
    return inter / (fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter)


@pytest.fixture(scope="module")
def moving(data_root):
    """The image, its nuclei (those that stay whole when moved), and the same nuclei moved
    ``SHIFT`` px to the right."""
    root = require_dataset(data_root, "dsb2018")
    coco = json.loads((root / "annotations_val.json").read_text())
    info = next(i for i in coco["images"] if i["file_name"] == IMAGE)
    masks = np.stack(
        [mask_util.decode(a["segmentation"]).astype(bool) for a in coco["annotations"] if a["image_id"] == info["id"]]
    )
    masks = masks[~masks[:, :, -SHIFT:].any(axis=(1, 2))]
    moved = np.zeros_like(masks)
    moved[:, :, SHIFT:] = masks[:, :, :-SHIFT]
    return read_image(str(root / "val" / IMAGE), "RGB"), masks, moved


def test_moved_objects_keep_their_colours(moving):
    """(30 nuclei, so that they and the new ones fit in the palette.)"""
    _, masks, moved = moving
    masks, moved = masks[:30], moved[:30]
    iou = iou_matrix(moved, masks)
    follows = np.diag(iou) >= 0.5
    assert follows.sum() > 15 and not follows.all(), "most nuclei overlap themselves after the move, some not"
    off_diagonal = iou[~np.eye(len(iou), dtype=bool)]
    assert off_diagonal.max() < 0.5, "no nucleus overlaps another one that much"

    video = VideoVisualizer()
    first = video.assign_colors(frame(masks))
    second = video.assign_colors(frame(moved))
    assert len(set(first)) == len(first)
    for i in range(len(masks)):
        if follows[i]:
            assert second[i] == first[i]
        else:
            assert second[i] not in first, "an object that moved too far is new"


def test_drawn_frames_show_each_object_in_its_colour(moving):
    image, masks, moved = moving
    video = VideoVisualizer(mask_only=True)
    first = video.draw_instance_predictions(image, frame(masks)).get_image()
    second = video.draw_instance_predictions(image, frame(moved)[torch.arange(len(moved) - 1, -1, -1)]).get_image()
    follows = np.diag(iou_matrix(moved, masks)) >= 0.5
    checked = 0
    for i in np.flatnonzero(follows):
        colour_before = np.unique(first[masks[i]], axis=0)
        colour_after = np.unique(second[moved[i]], axis=0)
        assert len(colour_before) == 1 and len(colour_after) == 1
        assert (colour_before == colour_after).all()
        checked += 1
    assert checked > 0.8 * len(masks)


def test_new_object_gets_a_colour_no_remembered_object_has(moving):
    _, masks, moved = moving
    background = ~(masks.any(axis=0) | moved.any(axis=0))
    distance = cv2.distanceTransform(background.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(distance.argmax(), distance.shape)
    assert distance[y, x] > 6
    new = cv2.circle(np.zeros(masks.shape[1:], np.uint8), (int(x), int(y)), 5, 1, -1) > 0

    video = VideoVisualizer()
    first = video.assign_colors(frame(masks))
    second = video.assign_colors(frame(np.concatenate([moved[:5], new[None]])))
    assert second[:5] == first[:5]
    assert second[5] not in first, "the colours of unmatched, still remembered objects are taken too"


def rectangles(size, *spans):
    masks = np.zeros((len(spans),) + size, dtype=bool)
    for m, (x0, y0, x1, y1) in zip(masks, spans):
        m[y0:y1, x0:x1] = True
    return masks


@pytest.mark.parametrize("absent", [1, 2, 3, 5])
def test_objects_unseen_for_memory_frames_are_forgotten(moving, absent):
    memory = 3
    _, masks, _ = moving
    obj = masks[:1]
    video = VideoVisualizer(memory=memory)
    (before,) = video.assign_colors(frame(obj))
    for _ in range(absent):
        assert video.assign_colors(empty_frame(obj.shape[1:])) == []
    (after,) = video.assign_colors(frame(obj))
    if absent < memory:
        assert after == before
    else:
        assert after != before


def test_matching_takes_the_highest_iou_first():
    """X overlaps A best of all (0.94), so X takes A's colour and Y takes B's, although Y comes
    first, prefers A (0.92 > 0.74), and Y-A + X-B would sum higher than X-A + Y-B."""
    size = (40, 200)
    a, b = (50, 5, 150, 35), (60, 5, 160, 35)
    x, y = (53, 5, 153, 35), (42, 5, 147, 35)
    previous = rectangles(size, a, b)
    current = rectangles(size, y, x)
    iou = iou_matrix(current, previous)  # rows Y, X; columns A, B
    assert iou[1, 0] == iou.max() and iou[0, 0] > iou[0, 1] >= 0.5
    assert iou[0, 0] + iou[1, 1] > iou[1, 0] + iou[0, 1]

    video = VideoVisualizer()
    color_a, color_b = video.assign_colors(frame(previous))
    color_y, color_x = video.assign_colors(frame(current))
    assert (color_x, color_y) == (color_a, color_b)


def test_boxes_alone_are_matched_by_box_iou(moving):
    _, masks, moved = moving
    before, after = frame(masks), frame(moved)
    before.remove("pred_masks")
    after.remove("pred_masks")
    video = VideoVisualizer()
    first = video.assign_colors(before)
    second = video.assign_colors(after)
    self_iou = box_iou(after.pred_boxes.tensor, before.pred_boxes.tensor).diagonal()
    kept = torch.nonzero(self_iou >= 0.5).flatten().tolist()
    assert len(kept) > 0.5 * len(masks)
    assert all(second[i] == first[i] for i in kept)


def test_a_long_lived_object_keeps_its_colour_out_of_new_ones():
    """After more new objects than the palette has colours, none takes the colour of the
    object that stayed in view all along."""
    size = (240, 320)
    stay = (0, 0, 20, 20)
    spots = [(40 + 28 * (k % 10), 40 + 28 * (k // 10), 60 + 28 * (k % 10), 60 + 28 * (k // 10)) for k in range(70)]
    video = VideoVisualizer(memory=2)
    (kept,) = video.assign_colors(frame(rectangles(size, stay)))
    for spot in spots[: PALETTE_SIZE + 6]:
        colors = video.assign_colors(frame(rectangles(size, stay, spot)))
        assert colors[0] == kept
        assert colors[1] != kept
