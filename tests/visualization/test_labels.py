"""Labels on the densest DSB2018 image: never drawn over each other, the left-out ones
counted, the best scores placed first; label texts."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from conftest import require_dataset

from project.structures import Boxes, Instances
from project.visualization import Visualizer
from project.visualization.colors import darker
from project.visualization.labels import LabelPlacer, label_texts


@pytest.fixture(scope="module")
def dense(data_root):
    """(H, W) and the XYXY ground-truth boxes of the validation image with the most nuclei."""
    root = require_dataset(data_root, "dsb2018")
    coco = json.loads((root / "annotations_val.json").read_text())
    counts = {}
    for a in coco["annotations"]:
        counts[a["image_id"]] = counts.get(a["image_id"], 0) + 1
    image_id = max(counts, key=counts.get)
    info = next(i for i in coco["images"] if i["id"] == image_id)
    boxes = np.array([a["bbox"] for a in coco["annotations"] if a["image_id"] == image_id], dtype=np.float64)
    boxes[:, 2:] += boxes[:, :2]
    assert len(boxes) > 150
    return (info["height"], info["width"]), boxes


def distinct_colors(n):
    """n colours whose label backgrounds (``darker``) all differ."""
    darks = np.array([(20 + 2 * (i % 50), 20 + 2 * (i // 50), 90) for i in range(n)], dtype=np.float64)
    colors = np.rint(darks / 0.55).clip(0, 255).astype(np.uint8)
    assert len({tuple(c) for c in darker(colors)}) == n
    return colors


def label_rectangles(picture, colors):
    """Bounding rectangle (x0, y0, x1, y1) of each label's background colour, None where absent."""
    keys = picture.astype(np.int32) @ np.array([65536, 256, 1], dtype=np.int32)
    rects = []
    for dark in darker(colors).astype(np.int32):
        ys, xs = np.nonzero(keys == dark @ np.array([65536, 256, 1], dtype=np.int32))
        rects.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else None)
    return rects


def overlaps(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_dense_labels_never_overlap_and_hidden_ones_are_counted(dense):
    size, boxes = dense
    n = len(boxes)
    colors = distinct_colors(n)
    texts = label_texts(np.zeros(n, dtype=int), np.linspace(0.99, 0.5, n), ["nucleus"])
    black = np.zeros(size + (3,), dtype=np.uint8)
    drawn = Visualizer(black, boxes=False, contours=False).overlay_instances(
        boxes=boxes, labels=texts, assigned_colors=colors
    )
    rects = label_rectangles(drawn.get_image(), colors)
    placed = [r for r in rects if r is not None]
    assert 0 < drawn.hidden_labels < n, "a dense image leaves some labels out"
    assert len(placed) + drawn.hidden_labels == n
    for a, b in itertools.combinations(placed, 2):
        assert not overlaps(a, b), f"labels at {a} and {b} overlap"


def test_label_placer_gives_disjoint_places_next_to_boxes(dense):
    (height, width), boxes = dense
    placer = LabelPlacer((height, width), cell=6)
    size = (40, 13)
    places = [placer.place(box, size) for box in boxes]
    rects = [(x, y, x + size[0], y + size[1]) for x, y in (p for p in places if p is not None)]
    assert 0 < len(rects) < len(boxes)
    for (x, y), box in ((p, b) for p, b in zip(places, boxes) if p is not None):
        assert 0 <= x <= width - size[0] and 0 <= y <= height - size[1]
        bx0, by0, _, by1 = (int(round(v)) for v in box)
        assert y in (by0 - size[1], by0, by1)
    for a, b in itertools.combinations(rects, 2):
        assert not overlaps(a, b)


def test_best_scores_get_the_free_places():
    """Eight detections on one box: only a few labels fit, and they are the best-scored ones
    (listed out of score order)."""
    n = 8
    scores = torch.tensor([0.3, 0.5, 0.95, 0.1, 0.7, 0.99, 0.2, 0.8])
    inst = Instances(
        (200, 240),
        pred_boxes=Boxes(torch.tensor([[60.0, 80.0, 140.0, 120.0]]).repeat(n, 1)),
        scores=scores,
        pred_classes=torch.zeros(n, dtype=torch.int64),
    )
    colors = distinct_colors(n)
    black = np.zeros((200, 240, 3), dtype=np.uint8)
    drawn = Visualizer(black, boxes=False).draw_instance_predictions(inst, colors=colors)
    shown = [i for i, r in enumerate(label_rectangles(drawn.get_image(), colors)) if r is not None]
    assert 1 <= len(shown) <= 3 and drawn.hidden_labels == n - len(shown)
    best = torch.argsort(scores, descending=True)[: len(shown)].tolist()
    assert sorted(shown) == sorted(best)


def test_label_texts():
    assert label_texts([0, 1], [0.973, 0.5], ["nucleus", "cell"]) == ["nucleus 97%", "cell 50%"]
    assert label_texts([3], [0.25], ["nucleus"]) == ["3 25%"]
    assert label_texts([1], None, ["a", "b"]) == ["b"]
    assert label_texts(None, [0.125], None) == ["12%"]
    assert label_texts(None, None, ["a"]) is None


def test_metadata_names_label_the_predictions():
    """With ``thing_classes`` the label reads "nucleus 97%", wider than the nameless "0 97%"."""
    inst = Instances(
        (60, 120),
        pred_boxes=Boxes(torch.tensor([[10.0, 30.0, 100.0, 55.0]])),
        scores=torch.tensor([0.97]),
        pred_classes=torch.tensor([0]),
    )
    black = np.zeros((60, 120, 3), dtype=np.uint8)
    named = Visualizer(black, {"thing_classes": ["nucleus"]}, boxes=False).draw_instance_predictions(inst)
    unnamed = Visualizer(black, boxes=False).draw_instance_predictions(inst)
    named_area = (named.get_image() > 0).any(axis=2).sum()
    unnamed_area = (unnamed.get_image() > 0).any(axis=2).sum()
    assert unnamed_area > 0 and named_area > 1.5 * unnamed_area
