"""Loading every real dataset in ../shared/data (skipped where absent), synthetic VIA and
LabelMe variants, COCO JSON features, the converter, and the built-in registrations.

Counts are checked against the source files; masks given as masks must decode to exactly the
source pixels."""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
from conftest import require_dataset

from project.data import (
    BadAnnotationError,
    DatasetCatalog,
    MetadataCatalog,
    load_coco_json,
    load_instance_id_png,
    load_labelme_json,
    load_mask_folder_instances,
    load_via_json,
)
from project.data.convert import main as convert_main
from project.data.datasets.instance_id_png import CITYSCAPES_THING_CLASSES
from project.structures import BoxMode
from project.structures.rle import decode_crop

_names = itertools.count()


@pytest.fixture
def name():
    """A fresh dataset name, unregistered (data and metadata) after the test."""
    dataset_name = f"test_data_datasets_{next(_names)}"
    yield dataset_name
    DatasetCatalog.pop(dataset_name, None)
    MetadataCatalog.pop(dataset_name, None)


def decoded(segmentation) -> np.ndarray:
    return decode_crop(segmentation).to_array()


def num_instances(dataset_dicts) -> int:
    return sum(len(d["annotations"]) for d in dataset_dicts)


def test_dsb2018_coco_rle(data_root, name):
    root = require_dataset(data_root, "dsb2018")
    source = json.loads((root / "annotations_val.json").read_text())
    dicts = load_coco_json(str(root / "annotations_val.json"), str(root / "val"), name)
    assert len(dicts) == len(source["images"]) and num_instances(dicts) == len(source["annotations"])
    assert MetadataCatalog.get(name).thing_classes == ["nucleus"]
    by_id = {a["id"]: a for a in source["annotations"]}
    anns_of = {}
    for a in source["annotations"]:
        anns_of.setdefault(a["image_id"], []).append(a)
    for d in dicts[:10]:
        assert len(d["annotations"]) == len(anns_of[d["image_id"]])
        for ours, theirs in zip(d["annotations"], anns_of[d["image_id"]]):
            rle = dict(theirs["segmentation"], counts=theirs["segmentation"]["counts"].encode())
            assert np.array_equal(decoded(ours["segmentation"]), mask_util.decode(rle).astype(bool))
            assert ours["bbox"] == theirs["bbox"] and ours["bbox_mode"] == BoxMode.XYWH_ABS
    assert len(by_id) == len(source["annotations"])


def test_dsb2018_raw_subset_mask_folders(data_root, name):
    root = require_dataset(data_root, "dsb2018_raw_subset")
    dicts = load_mask_folder_instances(str(root), name, thing_classes=["nucleus"])
    samples = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(dicts) == len(samples)
    for d, sample in zip(dicts, samples):
        mask_files = sorted((sample / "masks").iterdir())
        assert d["file_name"] == str(sample / "images" / f"{sample.name}.png")
        assert len(d["annotations"]) == len(mask_files)
        for ann, mask_file in zip(d["annotations"], mask_files):
            source = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED) > 0
            assert set(ann["segmentation"]) == {"size", "counts"} and isinstance(ann["segmentation"]["counts"], str)
            assert np.array_equal(decoded(ann["segmentation"]), source)
            ys, xs = np.nonzero(source)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_pennfudan_instance_id_pngs(data_root, name):
    root = require_dataset(data_root, "pennfudan")
    dicts = load_instance_id_png(str(root / "PNGImages"), str(root / "PedMasks"), name, thing_classes={1: "person"})
    assert len(dicts) == len(list((root / "PNGImages").glob("*.png")))
    for d in dicts:
        stem = Path(d["file_name"]).stem
        text = (root / "Annotation" / f"{stem}.txt").read_text(errors="replace")
        listed = int(re.search(r"Objects with ground truth : (\d+)", text).group(1))
        assert len(d["annotations"]) == listed, stem
        label = cv2.imread(str(root / "PedMasks" / f"{stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        for ann, value in zip(d["annotations"], sorted(set(np.unique(label)) - {0})):
            assert np.array_equal(decoded(ann["segmentation"]), label == value)
            assert ann["category_id"] == 0 and ann["iscrowd"] == 0


def test_cityscapes_instance_ids(tmp_path):
    label = np.zeros((30, 40), np.uint16)
    label[:, :] = 7  # road: a stuff class, not an instance
    label[2:8, 2:10] = 26001  # car 1
    label[10:20, 2:10] = 26002  # car 2
    label[2:12, 20:25] = 24000  # person 0
    label[20:28, 20:38] = 24  # people not split into instances: a crowd region
    city = tmp_path / "labels" / "aachen"
    city.mkdir(parents=True)
    cv2.imwrite(str(city / "a_000001_gtFine_instanceIds.png"), label)
    write_image(tmp_path / "images" / "aachen" / "a_000001_leftImg8bit.png", 30, 40)
    (d,) = load_instance_id_png(
        str(tmp_path / "images"),
        str(tmp_path / "labels"),
        image_suffix="_leftImg8bit.png",
        label_suffix="_gtFine_instanceIds.png",
        id_encoding="cityscapes",
    )
    classes = sorted(CITYSCAPES_THING_CLASSES)
    got = [(a["category_id"], a["iscrowd"], int(decoded(a["segmentation"]).sum())) for a in d["annotations"]]
    assert got == [
        (classes.index(24), 1, 8 * 18),
        (classes.index(24), 0, 10 * 5),
        (classes.index(26), 0, 6 * 8),
        (classes.index(26), 0, 10 * 8),
    ]


def test_coco_mini_polygons(data_root, name):
    root = require_dataset(data_root, "coco_mini")
    total = 0
    for split in ("train2017", "val2017"):
        json_file = root / "annotations" / f"instances_{split}.json"
        source = json.loads(json_file.read_text())
        dicts = load_coco_json(str(json_file), str(root / "images" / split), f"{name}_{split}")
        DatasetCatalog.pop(f"{name}_{split}", None)
        assert num_instances(dicts) == len(source["annotations"])
        first = source["annotations"][0]
        ours = next(a for d in dicts if d["image_id"] == first["image_id"] for a in d["annotations"])
        assert ours["segmentation"] == first["segmentation"]
        meta = MetadataCatalog.pop(f"{name}_{split}")
        assert len(meta.thing_classes) == len(source["categories"]) == 80
        assert ours["category_id"] == meta.thing_dataset_id_to_contiguous_id[first["category_id"]]
        total += num_instances(dicts)
    assert total == 23


def labelme_instance_count(json_file: Path) -> int:
    """Instances as LabelMe means them: shapes grouped by (label, group_id), ignore labels out."""
    shapes = json.loads(json_file.read_text())["shapes"]
    keys = {
        (s["label"], s["group_id"]) if s.get("group_id") is not None else i
        for i, s in enumerate(shapes)
        if s["label"] not in ("__ignore__", "_background_")
    }
    return len(keys)


def test_labelme_voc(data_root, name):
    root = require_dataset(data_root, "labelme_voc")
    dicts = load_labelme_json(str(root), dataset_name=name)
    json_files = sorted(root.glob("*.json"))
    assert len(dicts) == len(json_files)
    assert [len(d["annotations"]) for d in dicts] == [labelme_instance_count(f) for f in json_files]
    assert num_instances(dicts) == 12
    classes = MetadataCatalog.get(name).thing_classes
    assert classes == sorted(
        {s["label"] for f in json_files for s in json.loads(f.read_text())["shapes"]} - {"__ignore__"}
    )
    sofa = [a for a in dicts[1]["annotations"] if classes[a["category_id"]] == "sofa"]
    assert len(sofa) == 1 and len(sofa[0]["segmentation"]) == 4  # one instance of four polygons


def test_labelme_embedded_image_is_used_when_the_file_is_missing(data_root, tmp_path):
    root = require_dataset(data_root, "labelme_voc")
    data = json.loads((root / "2011_000025.json").read_text())
    data["imageData"] = base64.b64encode((root / "2011_000025.jpg").read_bytes()).decode()
    (tmp_path / "2011_000025.json").write_text(json.dumps(data))  # without its jpg beside it
    dicts = load_labelme_json(str(tmp_path), embedded_image_dir=str(tmp_path / "embedded"))
    assert len(dicts[0]["annotations"]) == labelme_instance_count(root / "2011_000025.json")
    extracted = cv2.imread(dicts[0]["file_name"])
    assert Path(dicts[0]["file_name"]).parent == tmp_path / "embedded"
    assert np.array_equal(extracted, cv2.imread(str(root / "2011_000025.jpg")))
    data = json.loads((tmp_path / "2011_000025.json").read_text())
    del data["imageData"]
    (tmp_path / "2011_000025.json").write_text(json.dumps(data))
    assert load_labelme_json(str(tmp_path), embedded_image_dir=str(tmp_path / "e2"), on_bad_annotation="skip") == []


def test_coad_roboflow_export(data_root, name, caplog):
    root = require_dataset(data_root, "coad") / "train"
    json_file = root / "_annotations.coco.json"
    source = json.loads(json_file.read_text())
    missing = [im for im in source["images"] if not (root / im["file_name"]).exists()]
    assert len(missing) == 1
    with caplog.at_level(logging.WARNING):
        dicts = load_coco_json(str(json_file), str(root), name)
    log = caplog.text
    assert missing[0]["file_name"] in log and "does not exist" in log
    assert "category ids [0, 1, 2, 3, 4, 5]" in log and "id 0 'Adas'" in log
    dropped = sum(a["image_id"] == missing[0]["id"] for a in source["annotations"])
    assert len(dicts) == len(source["images"]) - 1
    assert num_instances(dicts) == len(source["annotations"]) - dropped
    meta = MetadataCatalog.get(name)
    assert meta.thing_dataset_id_to_contiguous_id == {i: i for i in range(6)} and meta.thing_classes[0] == "Adas"
    with pytest.raises(BadAnnotationError, match=re.escape(missing[0]["file_name"])):
        load_coco_json(str(json_file), str(root), on_bad_annotation="error")


def write_image(path: Path, height: int = 40, width: int = 60) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 90, np.uint8))


def test_coco_json_category_zero_uncompressed_rle_and_crowd(tmp_path, name):
    write_image(tmp_path / "a.png")
    mask = np.zeros((40, 60), np.uint8)
    mask[5:15, 10:30] = 1
    compressed = mask_util.encode(np.asfortranarray(mask))
    runs, value, length = [], 0, 0
    for pixel in mask.flatten(order="F"):
        if pixel == value:
            length += 1
        else:
            runs.append(length)
            value, length = pixel, 1
    runs.append(length)
    uncompressed = {"size": [40, 60], "counts": runs}
    coco = {
        "images": [{"id": 7, "file_name": "a.png", "height": 40, "width": 60}],
        "categories": [{"id": 0, "name": "zero"}, {"id": 5, "name": "five"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 5,
                "bbox": [10, 5, 20, 10],
                "segmentation": uncompressed,
                "iscrowd": 1,
            },
            {
                "id": 2,
                "image_id": 7,
                "category_id": 0,
                "bbox": [10, 5, 20, 10],
                "segmentation": dict(compressed, counts=compressed["counts"].decode()),
                "iscrowd": 0,
            },
            {"id": 3, "image_id": 7, "category_id": 5, "bbox": [1, 1, 5, 5], "segmentation": [[1, 1, 6, 1, 6, 6]]},
        ],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    (d,) = load_coco_json(str(tmp_path / "c.json"), str(tmp_path), name)
    assert [a["category_id"] for a in d["annotations"]] == [1, 0, 1]
    assert [a["iscrowd"] for a in d["annotations"]] == [1, 0, 0]
    assert np.array_equal(decoded(d["annotations"][0]["segmentation"]), mask.astype(bool))
    assert np.array_equal(decoded(d["annotations"][1]["segmentation"]), mask.astype(bool))
    assert MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id == {0: 0, 5: 1}


def via_region(shape: dict, kind: str) -> dict:
    return {"shape_attributes": shape, "region_attributes": {"kind": kind}}


@pytest.mark.parametrize("version", ["1.x", "2.x", "2.x-project"])
def test_via_shapes_and_class_attribute(tmp_path, version):
    write_image(tmp_path / "img" / "one.png", 50, 80)
    regions = [
        via_region({"name": "polygon", "all_points_x": [5, 30, 20], "all_points_y": [5, 8, 30]}, "balloon"),
        via_region({"name": "rect", "x": 40, "y": 10, "width": 20, "height": 15}, "kite"),
        via_region({"name": "circle", "cx": 20, "cy": 40, "r": 6}, "balloon"),
        via_region({"name": "ellipse", "cx": 60, "cy": 38, "rx": 10, "ry": 5, "theta": 0.3}, "kite"),
    ]
    entry = {
        "filename": "one.png",
        "size": 123,
        "regions": regions if version != "1.x" else {str(i): r for i, r in enumerate(regions)},
    }
    data = {"one.png123": entry}
    if version == "2.x-project":
        data = {"_via_settings": {}, "_via_img_metadata": data, "_via_attributes": {}}
    (tmp_path / "via.json").write_text(json.dumps(data))
    (d,) = load_via_json(str(tmp_path / "via.json"), str(tmp_path / "img"), class_attribute="kind")
    assert [a["category_id"] for a in d["annotations"]] == [0, 1, 0, 1]  # balloon, kite (sorted)
    assert (d["height"], d["width"]) == (50, 80)
    assert d["annotations"][1]["segmentation"] == [[40.0, 10.0, 60.0, 10.0, 60.0, 25.0, 40.0, 25.0]]
    assert d["annotations"][1]["bbox"] == [40.0, 10.0, 20.0, 15.0]
    circle = np.asarray(d["annotations"][2]["segmentation"][0]).reshape(-1, 2)
    assert np.allclose(np.hypot(circle[:, 0] - 20, circle[:, 1] - 40), 6)
    (one_class,) = load_via_json(str(tmp_path / "via.json"), str(tmp_path / "img"))
    assert {a["category_id"] for a in one_class["annotations"]} == {0}


def test_converter_round_trips_mask_folders(data_root, tmp_path, name):
    root = require_dataset(data_root, "dsb2018_raw_subset")
    out = tmp_path / "converted" / "nuclei.json"
    assert (
        convert_main(["--format", "mask_folder", "--root", str(root), "--classes", "nucleus", "--out", str(out)]) == 0
    )
    coco = json.loads(out.read_text())
    assert coco["categories"] == [{"id": 1, "name": "nucleus"}]
    assert all(not os.path.isabs(im["file_name"]) for im in coco["images"])
    back = load_coco_json(str(out), str(out.parent), name)
    original = load_mask_folder_instances(str(root))
    assert (
        num_instances(back)
        == num_instances(original)
        == sum(len(list((p / "masks").iterdir())) for p in root.iterdir() if p.is_dir())
    )
    for a, b in zip(back, original):
        assert os.path.samefile(a["file_name"], b["file_name"])
        for x, y in zip(a["annotations"], b["annotations"]):
            assert np.array_equal(decoded(x["segmentation"]), decoded(y["segmentation"]))


def test_builtin_datasets_are_registered_without_reading_files(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "nothing_here"))
    for dataset in (
        "coco_2017_train",
        "coco_2017_val",
        "coco_2017_val_100",
        "cells_demo_train",
        "cells_demo_val",
        "road_demo_train",
        "road_demo_val",
    ):
        assert dataset in DatasetCatalog
    meta = MetadataCatalog.get("coco_2017_val")
    assert len(meta.thing_classes) == 80 and meta.thing_dataset_id_to_contiguous_id[90] == 79
    assert meta.json_file.endswith(os.path.join("coco", "annotations", "instances_val2017.json"))
    assert not (tmp_path / "nothing_here").exists()
