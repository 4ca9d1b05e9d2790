"""Bad input, each case in "skip" and "error" mode: the message names the file and the
annotation (or image); skipping drops the item and reports how many were skipped."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from project.config.compose import default_cfg
from project.data import (
    BadAnnotationError,
    DatasetCatalog,
    DatasetMapper,
    MapDataset,
    MetadataCatalog,
    get_detection_dataset_dicts,
    load_coco_json,
    load_labelme_json,
    load_mask_folder_instances,
    register_coco_instances,
)
from project.structures.rle import encode_mask

_names = itertools.count()


def write_image(path: Path, height: int = 40, width: int = 60) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 120, np.uint8))


def coco_file(tmp_path: Path, bad_annotation: dict) -> Path:
    """A COCO file with one image, two good annotations (ids 1, 2) and ``bad_annotation``."""
    write_image(tmp_path / "a.png")
    good = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "segmentation": [[5, 5, 15, 5, 15, 15]]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 5, 10, 10], "segmentation": [[20, 5, 30, 5, 30, 15]]},
    ]
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "height": 40, "width": 60}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": good + [dict({"id": 42, "image_id": 1, "category_id": 1}, **bad_annotation)],
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(coco))
    return path


mask_30x60 = np.zeros((30, 60), bool)
mask_30x60[2:5, 2:5] = True
BAD_ANNOTATIONS = {
    "short polygon": ({"bbox": [1, 1, 4, 4], "segmentation": [[1, 1, 5, 5]]}, "polygon has 2 point"),
    "box outside": ({"bbox": [50, 5, 30, 10], "segmentation": [[50, 5, 59, 5, 59, 14]]}, "lies outside the 60x40"),
    "mask size": (
        {"bbox": [2, 2, 3, 3], "segmentation": encode_mask(mask_30x60)},
        "mask is 30x60 (height x width) but its image is 40x60",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ANNOTATIONS))
def test_bad_annotation_is_skipped_and_counted(tmp_path, caplog, case):
    bad, reason = BAD_ANNOTATIONS[case]
    json_file = coco_file(tmp_path, bad)
    with caplog.at_level(logging.WARNING):
        (d,) = load_coco_json(str(json_file), str(tmp_path), on_bad_annotation="skip")
    assert len(d["annotations"]) == 2
    assert str(json_file) in caplog.text and "annotation id 42" in caplog.text and reason in caplog.text
    assert "skipped 1 bad item(s)" in caplog.text


@pytest.mark.parametrize("case", sorted(BAD_ANNOTATIONS))
def test_bad_annotation_fails_in_error_mode(tmp_path, case):
    bad, reason = BAD_ANNOTATIONS[case]
    json_file = coco_file(tmp_path, bad)
    with pytest.raises(BadAnnotationError) as info:
        load_coco_json(str(json_file), str(tmp_path), on_bad_annotation="error")
    message = str(info.value)
    assert str(json_file) in message and "annotation id 42" in message and reason in message


def test_only_the_short_polygon_of_an_annotation_is_dropped(tmp_path, caplog):
    json_file = coco_file(tmp_path, {"bbox": [1, 1, 9, 9], "segmentation": [[1, 1, 9, 1, 9, 9], [3, 3, 4, 4]]})
    with caplog.at_level(logging.WARNING):
        (d,) = load_coco_json(str(json_file), str(tmp_path))
    assert d["annotations"][2]["segmentation"] == [[1.0, 1.0, 9.0, 1.0, 9.0, 9.0]]
    assert "annotation id 42, polygon #1" in caplog.text


def test_malformed_coco_json_fails_in_both_modes_naming_the_place(tmp_path):
    text = coco_file(tmp_path, {"bbox": [1, 1, 4, 4]}).read_text()
    broken = tmp_path / "broken.json"
    broken.write_text(text[: text.index('"id": 42') + 12] + ", oops")
    for mode in ("skip", "error"):
        with pytest.raises(
            BadAnnotationError, match=r"broken\.json: JSON line 1 column \d+ \(after id 42\): malformed JSON"
        ):
            load_coco_json(str(broken), str(tmp_path), on_bad_annotation=mode)


def labelme_files(tmp_path: Path) -> Path:
    write_image(tmp_path / "good.png")
    shape = {"label": "thing", "points": [[5, 5], [20, 5], [20, 20]], "shape_type": "polygon", "group_id": None}
    (tmp_path / "good.json").write_text(
        json.dumps({"shapes": [shape], "imagePath": "good.png", "imageHeight": 40, "imageWidth": 60})
    )
    (tmp_path / "broken.json").write_text('{"shapes": [ {"label": "thing", "points": [[1, 2], ')
    return tmp_path


def test_malformed_labelme_file_is_skipped_or_fails(tmp_path, caplog):
    folder = labelme_files(tmp_path)
    with caplog.at_level(logging.WARNING):
        dicts = load_labelme_json(str(folder), on_bad_annotation="skip")
    assert [Path(d["file_name"]).name for d in dicts] == ["good.png"]
    assert str(folder / "broken.json") in caplog.text and "1 x malformed JSON" in caplog.text
    with pytest.raises(BadAnnotationError, match=r"broken\.json: JSON line 1"):
        load_labelme_json(str(folder), on_bad_annotation="error")


def test_missing_image_is_skipped_or_fails(tmp_path, caplog):
    json_file = coco_file(tmp_path, {"bbox": [1, 1, 4, 4]})
    (tmp_path / "a.png").unlink()
    with caplog.at_level(logging.WARNING):
        assert load_coco_json(str(json_file), str(tmp_path), on_bad_annotation="skip") == []
    assert str(tmp_path / "a.png") in caplog.text and "image id 1 (3 annotations)" in caplog.text
    with pytest.raises(BadAnnotationError, match=r"a\.png: image id 1 \(3 annotations\): image file does not exist"):
        load_coco_json(str(json_file), str(tmp_path), on_bad_annotation="error")


def test_mask_file_of_the_wrong_size_is_skipped_or_fails(tmp_path, caplog):
    sample = tmp_path / "s1"
    write_image(sample / "images" / "s1.png")
    for name, shape in (("good.png", (40, 60)), ("wrong.png", (30, 60))):
        mask = np.zeros(shape, np.uint8)
        mask[3:9, 3:9] = 255
        (sample / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(sample / "masks" / name), mask)
    with caplog.at_level(logging.WARNING):
        (d,) = load_mask_folder_instances(str(tmp_path), on_bad_annotation="skip")
    assert len(d["annotations"]) == 1 and "mask 'wrong.png'" in caplog.text
    with pytest.raises(BadAnnotationError, match=r"wrong\.png: mask 'wrong\.png': mask is 30x60"):
        load_mask_folder_instances(str(tmp_path), on_bad_annotation="error")


def mapper(mode: str, is_train: bool = True) -> DatasetMapper:
    cfg = default_cfg()
    cfg.DATALOADER.ON_BAD_ANNOTATION = mode
    cfg.INPUT.MIN_SIZE_TRAIN = [40]
    cfg.INPUT.MIN_SIZE_TEST = 40
    return DatasetMapper(cfg, is_train)


def corrupt_and_resized(tmp_path: Path):
    """Dataset dicts: a good image, a corrupt one, and one whose size differs from its dict."""
    write_image(tmp_path / "good.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    write_image(tmp_path / "resized.png", 20, 30)
    ann = {"bbox": [5, 5, 10, 10], "bbox_mode": 1, "category_id": 0, "segmentation": [[5, 5, 15, 5, 15, 15]]}
    return [
        {"file_name": str(tmp_path / f), "height": 40, "width": 60, "image_id": i, "annotations": [ann]}
        for i, f in enumerate(["good.png", "corrupt.png", "resized.png"])
    ]


def test_corrupt_or_resized_image_is_skipped_in_training(tmp_path, caplog):
    good, corrupt, resized = corrupt_and_resized(tmp_path)
    skipping = mapper("skip")
    with caplog.at_level(logging.WARNING):
        assert skipping(corrupt) is None and skipping(resized) is None
    assert "corrupt.png: image: cannot decode the image" in caplog.text
    assert "resized.png: image id 2: the image is 20x30 (height x width) but its annotations say 40x60" in caplog.text
    assert skipping._bad_input.num_skipped == 2
    # The data loader then takes another image in place of a skipped one.
    out = MapDataset([good, corrupt], skipping)[1]
    assert out["file_name"] == good["file_name"] and len(out["instances"]) == 1


@pytest.mark.parametrize("mode, is_train", [("error", True), ("skip", False)])
def test_corrupt_or_resized_image_fails_in_error_mode_and_in_inference(tmp_path, mode, is_train):
    _, corrupt, resized = corrupt_and_resized(tmp_path)
    failing = mapper(mode, is_train)
    with pytest.raises(BadAnnotationError, match=r"corrupt\.png: image: cannot decode"):
        failing(corrupt)
    with pytest.raises(BadAnnotationError, match=r"resized\.png: image id 2: the image is 20x30"):
        failing(resized)


def test_the_config_setting_chooses_the_mode_for_registered_datasets(tmp_path):
    name = f"test_data_bad_input_{next(_names)}"
    register_coco_instances(name, {}, str(coco_file(tmp_path, BAD_ANNOTATIONS["box outside"][0])), str(tmp_path))
    try:
        assert len(get_detection_dataset_dicts([name], on_bad_annotation="skip")[0]["annotations"]) == 2
        with pytest.raises(BadAnnotationError, match="annotation id 42"):
            get_detection_dataset_dicts([name], on_bad_annotation="error")
    finally:
        DatasetCatalog.pop(name)
        MetadataCatalog.pop(name)
