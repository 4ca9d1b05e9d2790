"""The generated demo datasets: deterministic by seed, cached on disk, annotations agreeing
with the drawn pixels, and the registered splits."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from project.data import DatasetCatalog, MetadataCatalog
from project.data.datasets.demo import cells, roads
from project.data.datasets.demo.generated import GeneratedSplit, generate_split, register_generated_dataset
from project.structures import polygons_to_bitmask
from project.structures.rle import decode_crop


def digest(directory: Path) -> dict:
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("draw", [cells.draw_cells_image, roads.draw_road_image])
def test_generation_is_deterministic_by_seed(tmp_path, monkeypatch, draw):
    splits = []
    for attempt in ("a", "b"):
        monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / attempt))
        split = GeneratedSplit("demo", "train", "test", 11, 3, ("x", "y", "z"), draw)
        generate_split(split)
        splits.append(Path(split.directory))
    assert splits[0].relative_to(tmp_path / "a") == splits[1].relative_to(tmp_path / "b")
    assert digest(splits[0]) == digest(splits[1]) and len(digest(splits[0])) == 4  # 3 images and the JSON
    other = draw(np.random.default_rng([12, 0]))[0]
    assert not np.array_equal(other, draw(np.random.default_rng([11, 0]))[0])


def test_cached_split_is_not_drawn_again(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    calls = []

    def draw(rng):
        calls.append(1)
        return cells.draw_cells_image(rng)

    split = GeneratedSplit("demo", "val", "test", 1, 2, ("nucleus",), draw)
    generate_split(split)
    generate_split(split)
    assert len(calls) == 2 and os.path.isfile(split.json_file)
    assert not list(tmp_path.rglob("*.tmp*"))


def test_cells_annotations_agree_with_the_pixels():
    for index in range(4):
        image, annotations = cells.draw_cells_image(np.random.default_rng([5, index]))
        grey = image.max(axis=2).astype(float)
        height, width = grey.shape
        assert min(cells.IMAGE_SIDES) <= min(height, width) and max(height, width) <= max(cells.IMAGE_SIDES)
        masks = np.stack([polygons_to_bitmask(a["segmentation"], height, width) for a in annotations])
        assert len(annotations) >= 8 and (masks.sum(axis=0) <= 1).all()  # many nuclei, none overlapping
        background = grey[~masks.any(axis=0)].mean()
        for mask, ann in zip(masks, annotations):
            inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            assert grey[inner].mean() > background + 40  # clear contrast
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
        grown = [cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) for m in masks]
        touching = sum((grown[i] & masks[j]).any() for i in range(len(masks)) for j in range(len(masks)) if i != j)
        assert touching > 0


def test_road_annotations_cover_disjoint_drawn_objects():
    seen = set()
    for index in range(6):
        image, annotations = roads.draw_road_image(np.random.default_rng([5, index]))
        assert image.shape == (roads.HEIGHT, roads.WIDTH, 3)
        masks = np.stack([decode_crop(a["segmentation"]).to_array() for a in annotations])
        assert (masks.sum(axis=0) <= 1).all()
        classes = [a["category_id"] for a in annotations]
        assert classes.count(roads.ROAD) == 1
        seen.update(classes)
        road = masks[classes.index(roads.ROAD)]
        below_horizon = np.zeros_like(road)
        below_horizon[-40:] = True
        grass = image[below_horizon & ~masks.any(axis=0)].astype(float)
        asphalt = image[road].astype(float)
        assert grass[:, 1].mean() - grass[:, 2].mean() > 40  # green grass
        assert np.abs(asphalt[:, 1] - asphalt[:, 2]).mean() < 15  # grey road
    assert seen == {roads.ROAD, roads.VEHICLE, roads.PEDESTRIAN}


@pytest.mark.parametrize(
    "splits, classes, mask_type",
    [
        (cells.cells_demo_splits, ["nucleus"], list),
        (roads.road_demo_splits, ["road", "vehicle", "pedestrian"], dict),
    ],
)
def test_demo_splits_register_lazily_and_load(tmp_path, monkeypatch, splits, classes, mask_type):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    renamed = [dataclasses.replace(s, dataset=f"test_{s.dataset}") for s in splits()]
    names = [s.name for s in renamed]
    register_generated_dataset(renamed)
    try:
        val_json = MetadataCatalog.get(names[1]).json_file
        assert val_json.startswith(str(tmp_path)) and not os.path.exists(val_json)  # nothing drawn yet
        train = DatasetCatalog.get(names[0])
        assert os.path.exists(val_json)  # loading one split draws them all
        val = DatasetCatalog.get(names[1])
        assert (len(train), len(val)) == (64, 16)
        assert MetadataCatalog.get(names[0]).thing_classes == classes
        assert all(isinstance(a["segmentation"], mask_type) for d in train for a in d["annotations"])
        assert {d["file_name"] for d in train}.isdisjoint({d["file_name"] for d in val})
        # The loader's checks keep every annotation the generator wrote (objects cut by the border too).
        written = json.loads(Path(val_json).read_text())["annotations"]
        assert sum(len(d["annotations"]) for d in val) == len(written)
    finally:
        for name in names:
            DatasetCatalog.pop(name, None)
            MetadataCatalog.pop(name, None)


def test_builtin_demo_splits_are_registered():
    for name, classes in (("cells_demo_train", 1), ("cells_demo_val", 1), ("road_demo_train", 3), ("road_demo_val", 3)):
        assert name in DatasetCatalog and len(MetadataCatalog.get(name).thing_classes) == classes
