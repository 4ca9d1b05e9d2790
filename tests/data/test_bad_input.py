"""Bad input, each case in "skip" and "error" mode: the message names the file and the
annotation (or image); skipping drops the item and reports how many were skipped.

Covered: bad annotations and malformed fields; images that are missing, unreadable or of
another size when a dataset is loaded (only their header is read); images that became
unreadable after loading, counted across data loader workers in training and reported at its
end, and stopping evaluation with a message; masks far from their boxes."""

from __future__ import annotations

import itertools
import json
import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import require_dataset
from PIL import Image
from training_fixtures import tiny_overrides, write_tiny_coco

from project.config import get_cfg
from project.config.compose import default_cfg
from project.data import (
    BadAnnotationError,
    DatasetCatalog,
    DatasetMapper,
    MapDataset,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
    load_coco_json,
    load_labelme_json,
    load_mask_folder_instances,
    register_coco_instances,
)
from project.data.bad_input import KIND_CORRUPT_IMAGE, KIND_MISSING_IMAGE, skipped_when_loaded
from project.data.build import log_training_bad_input
from project.data.datasets import dataset_dicts_to_coco, load_instance_id_png, load_via_json, save_coco_json
from project.data.detection_utils import read_image
from project.engine import DefaultTrainer, default_setup
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
    assert skipping.bad_input.num_skipped == 2
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


# ----------------------------------------------------------------------------- unreadable images


def _empty_file(path: Path) -> None:
    path.write_bytes(b"")


def _text_file(path: Path) -> None:
    path.write_text("this is a note, not an image\n")


def _other_image(path: Path) -> None:
    write_image(path, 30, 20)  # a 30x20 image where the file lists 40x60: most likely the wrong file


UNREADABLE_IMAGES = {
    "empty file": (_empty_file, "cannot read the image header", "1 x corrupt image file"),
    "text file named .png": (_text_file, "cannot read the image header", "1 x corrupt image file"),
    "image of another size": (
        _other_image,
        "the image is 30x20 (height x width) but its annotations say 40x60",
        "1 x image size differs from its annotations",
    ),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE_IMAGES))
def test_unreadable_image_is_skipped_and_counted_when_the_dataset_is_loaded(tmp_path, caplog, case):
    spoil, reason, count = UNREADABLE_IMAGES[case]
    json_file = coco_file(tmp_path, {"bbox": [1, 1, 4, 4]})
    spoil(tmp_path / "a.png")
    with caplog.at_level(logging.INFO):
        assert load_coco_json(str(json_file), str(tmp_path), on_bad_annotation="skip") == []
    assert f"{tmp_path / 'a.png'}: image id 1 (3 annotations): {reason}" in caplog.text
    assert f"skipped 1 bad item(s) (on_bad_annotation='skip'): {count}" in caplog.text
    assert "Loaded 0 images (dropped: 0 missing on disk, 1 unreadable or of another size than listed)" in caplog.text
    with pytest.raises(BadAnnotationError, match=re.escape(f"a.png: image id 1 (3 annotations): {reason}")):
        load_coco_json(str(json_file), str(tmp_path), on_bad_annotation="error")


def test_labelme_image_that_does_not_read_is_skipped(tmp_path, caplog):
    folder = labelme_files(tmp_path)
    (folder / "broken.json").unlink()
    _empty_file(folder / "good.png")  # the JSON gives imageHeight and imageWidth: only the header can tell
    with caplog.at_level(logging.WARNING):
        assert load_labelme_json(str(folder), on_bad_annotation="skip") == []
    assert f"{folder / 'good.png'}: image of good.json: cannot read the image header" in caplog.text
    with pytest.raises(BadAnnotationError, match="cannot read the image header"):
        load_labelme_json(str(folder), on_bad_annotation="error")


def test_image_size_is_the_size_read_image_decodes(tmp_path):
    """An EXIF-rotated JPEG: its pixels are stored 40x60 (height x width), and OpenCV (read_image)
    turns them upright to 60x40; the loaders must expect the upright size."""
    stored = Image.fromarray(np.full((40, 60, 3), 90, np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    stored.save(tmp_path / "turned.jpg", exif=exif.tobytes())
    upright = read_image(str(tmp_path / "turned.jpg")).shape[:2]
    assert upright == (60, 40)
    via = {"turned.jpg1": {"filename": "turned.jpg", "size": 1, "regions": []}}
    (tmp_path / "via.json").write_text(json.dumps(via))
    (d,) = load_via_json(str(tmp_path / "via.json"), str(tmp_path))
    assert (d["height"], d["width"]) == upright
    coco = {
        "images": [{"id": 1, "file_name": "turned.jpg", "height": 60, "width": 40}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    assert len(load_coco_json(str(tmp_path / "coco.json"), str(tmp_path), on_bad_annotation="error")) == 1


def _count_in_worker(log):
    """A dataset whose every item reports one unreadable image to ``log``."""

    class Reporting(torch.utils.data.Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, index):
            log.report(BadAnnotationError(f"image_{index}.png", "image", "unreadable", KIND_CORRUPT_IMAGE))
            return index

    return Reporting()


def test_skips_counted_in_data_loader_workers_add_up_in_the_main_process():
    mapper_log = mapper("skip").bad_input
    loader = torch.utils.data.DataLoader(_count_in_worker(mapper_log), batch_size=3, num_workers=2)
    assert sorted(i for batch in loader for i in batch.tolist()) == list(range(20))
    assert mapper_log.counts == {KIND_CORRUPT_IMAGE: 20}


def corrupted_after_loading(tmp_path: Path):
    """Dataset dicts of two good images; then one of the files is emptied (as if overwritten
    while the dataset was in use)."""
    good, _, _ = corrupt_and_resized(tmp_path)
    write_image(tmp_path / "later.png")
    dicts = [good, dict(good, file_name=str(tmp_path / "later.png"), image_id=1)]
    _empty_file(tmp_path / "later.png")
    return dicts


def test_training_counts_an_image_unreadable_since_loading_and_reports_it_at_the_end(tmp_path, caplog):
    skipping = mapper("skip")
    loader = build_detection_train_loader(
        dataset=corrupted_after_loading(tmp_path),
        mapper=skipping,
        total_batch_size=2,
        num_workers=2,
        persistent_workers=False,
    )
    batches_iter = iter(loader)
    batches = list(itertools.islice(batches_iter, 6))
    del batches_iter  # stops the workers, which would otherwise go on prefetching and counting
    assert all(d["file_name"].endswith("good.png") for batch in batches for d in batch)
    skipped = skipping.bad_input.counts[KIND_CORRUPT_IMAGE]
    assert skipped >= 6  # each batch of 2 drew the image about once; prefetching reads a few more
    with caplog.at_level(logging.INFO):
        log_training_bad_input([], loader)
    assert f"read during training (each draw counts): {skipped} x corrupt image file" in caplog.text


@pytest.mark.parametrize("num_workers", [0, 2])
def test_evaluation_stops_naming_an_image_unreadable_since_loading(tmp_path, num_workers):
    loader = build_detection_test_loader(
        dataset=corrupted_after_loading(tmp_path), mapper=mapper("skip", is_train=False), num_workers=num_workers
    )
    with pytest.raises(BadAnnotationError) as info:
        list(loader)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'later.png'}: image: cannot decode the image")
    assert "Evaluation stops" in message and "evaluate again" in message and "Traceback" not in message


def test_error_policy_in_a_data_loader_worker_raises_the_bad_input_error(tmp_path):
    loader = build_detection_train_loader(
        dataset=corrupted_after_loading(tmp_path), mapper=mapper("error"), total_batch_size=2, num_workers=2
    )
    with pytest.raises(BadAnnotationError, match=r"later\.png: image: cannot decode the image"):
        list(itertools.islice(loader, 6))


# ----------------------------------------------------------------------------- mask far from its box


def _rle_at(x0: int, y0: int, x1: int, y1: int) -> dict:
    mask = np.zeros((40, 60), bool)
    mask[y0:y1, x0:x1] = True
    return encode_mask(mask)


MASKS_AWAY_FROM_THEIR_BOX = {
    "RLE": {"bbox": [5, 5, 10, 10], "segmentation": _rle_at(40, 25, 50, 35)},
    "polygon": {"bbox": [5, 5, 10, 10], "segmentation": [[40, 25, 50, 25, 50, 35, 40, 35]]},
    "empty RLE": {"bbox": [5, 5, 10, 10], "segmentation": _rle_at(0, 0, 0, 0)},
}


@pytest.mark.parametrize("case", sorted(MASKS_AWAY_FROM_THEIR_BOX))
def test_mask_far_from_its_box_is_skipped_or_fails(tmp_path, caplog, case):
    json_file = coco_file(tmp_path, MASKS_AWAY_FROM_THEIR_BOX[case])
    with caplog.at_level(logging.WARNING):
        (d,) = load_coco_json(str(json_file), str(tmp_path), on_bad_annotation="skip")
    assert len(d["annotations"]) == 2
    assert "annotation id 42: the mask" in caplog.text and "1 x mask far from its box" in caplog.text
    with pytest.raises(BadAnnotationError, match=r"annotation id 42: the mask .* but its bbox says \[5\.0, 5\.0"):
        load_coco_json(str(json_file), str(tmp_path), on_bad_annotation="error")


def test_thin_object_whose_box_is_rounded_to_whole_pixels_is_kept(tmp_path):
    """COAD's thinnest objects: a 2.4-pixel-wide polygon whose box starts half a pixel off (IoU 0.64)."""
    thin = {"bbox": [10, 5, 2.385, 14.457], "segmentation": [[9.5, 5.4, 11.9, 5.4, 11.9, 19.9, 9.5, 19.9]]}
    json_file = coco_file(tmp_path, thin)
    (d,) = load_coco_json(str(json_file), str(tmp_path), on_bad_annotation="error")
    assert len(d["annotations"]) == 3


def test_object_cut_by_the_image_border_is_kept(tmp_path):
    """A nucleus half outside the 60x40 image: its polygon reaches x = -12, its box covers the
    visible part from x = 0 (the cells demo has such objects at every border)."""
    cut = {"bbox": [0, 10, 8, 12], "segmentation": [[-12, 10, 8, 10, 8, 22, -12, 22]]}
    (d,) = load_coco_json(str(coco_file(tmp_path, cut)), str(tmp_path), on_bad_annotation="error")
    assert len(d["annotations"]) == 3


# ----------------------------------------------------------------------------- VIA shape attributes


def test_via_ellipse_with_a_non_numeric_theta_names_file_region_and_field(tmp_path, caplog):
    write_image(tmp_path / "one.png")
    ellipse = {"name": "ellipse", "cx": 30, "cy": 20, "rx": 10, "ry": 5, "theta": "0.3rad"}
    regions = [{"shape_attributes": dict(ellipse, theta=0.3)}, {"shape_attributes": ellipse}]
    (tmp_path / "via.json").write_text(json.dumps({"one.png1": {"filename": "one.png", "regions": regions}}))
    with caplog.at_level(logging.WARNING):
        (d,) = load_via_json(str(tmp_path / "via.json"), str(tmp_path), on_bad_annotation="skip")
    assert len(d["annotations"]) == 1
    expected = "via.json: image 'one.png', region #1: shape attribute 'theta' must be a finite number, got '0.3rad'"
    assert expected in caplog.text
    with pytest.raises(BadAnnotationError, match=re.escape(expected)):
        load_via_json(str(tmp_path / "via.json"), str(tmp_path), on_bad_annotation="error")


def _coco_files_of_real_data(data_root: Path, tmp_path: Path):
    """(name, json_file, image_root) of each real COCO-format dataset, Penn-Fudan converted to one."""
    dsb = require_dataset(data_root, "dsb2018")
    coad = require_dataset(data_root, "coad") / "train"
    coco_mini = require_dataset(data_root, "coco_mini")
    pennfudan = require_dataset(data_root, "pennfudan")
    converted = tmp_path / "pennfudan.json"
    dicts = load_instance_id_png(str(pennfudan / "PNGImages"), str(pennfudan / "PedMasks"))
    save_coco_json(dataset_dicts_to_coco(dicts, ["person"], {0: 1}), str(converted))
    return [
        ("dsb2018_train", dsb / "annotations_train.json", dsb / "train"),
        ("dsb2018_val", dsb / "annotations_val.json", dsb / "val"),
        ("coad_train", coad / "_annotations.coco.json", coad),
        ("pennfudan_converted", converted, tmp_path),
        *[
            (
                f"coco_mini_{split}",
                coco_mini / "annotations" / f"instances_{split}2017.json",
                coco_mini / "images" / f"{split}2017",
            )
            for split in ("train", "val")
        ],
    ]


def test_no_real_annotation_has_its_mask_far_from_its_box(data_root, tmp_path):
    for name, json_file, image_root in _coco_files_of_real_data(data_root, tmp_path):
        source = json.loads(Path(json_file).read_text())
        dicts = load_coco_json(str(json_file), str(image_root), name, on_bad_annotation="skip")
        skipped = skipped_when_loaded(name)
        assert set(skipped) <= {KIND_MISSING_IMAGE}, (name, skipped)  # COAD lists one image it lacks
        kept_images = {d["image_id"] for d in dicts}
        expected = sum(a["image_id"] in kept_images for a in source["annotations"])
        assert sum(len(d["annotations"]) for d in dicts) == expected, name
        MetadataCatalog.pop(name, None)


@pytest.mark.slow
def test_trainer_reports_the_images_it_skipped_at_the_end_of_training(tmp_path):
    """A training image emptied right after its dataset was loaded (NUM_WORKERS=1: the skips
    happen in a worker process): the end of training and the evaluation say what was skipped."""
    train_json, train_images = write_tiny_coco(tmp_path / "train", num_images=4, seed=1)
    val = ("bad_input_tiny_val", *write_tiny_coco(tmp_path / "val", num_images=2, seed=2))
    name = f"bad_input_tiny_train_{next(_names)}"

    def load_then_spoil():
        dicts = load_coco_json(train_json, train_images, name)
        _empty_file(Path(dicts[0]["file_name"]))
        return dicts

    DatasetCatalog.register(name, load_then_spoil)
    try:
        overrides = tiny_overrides((name + "_unused", train_json, train_images), [val], str(tmp_path / "out"))
        cfg = get_cfg([*overrides, f"DATASETS.TRAIN=[{name}]", "DATALOADER.NUM_WORKERS=1", "SOLVER.MAX_ITER=3"])
        default_setup(cfg)
        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
    finally:
        for dataset in (name, name + "_unused", val[0]):
            DatasetCatalog.pop(dataset, None)
            MetadataCatalog.pop(dataset, None)
    log = (tmp_path / "out" / "log.txt").read_text()
    assert re.search(r"Training left out bad input .* during training \(each draw counts\): \d+ x corrupt image", log)
    assert "Evaluation on 'bad_input_tiny_val' left out no bad input" in log


# ----------------------------------------------------------------------------- malformed fields


def _coco_with(tmp_path: Path, change) -> str:
    json_file = coco_file(tmp_path, {"bbox": [1, 1, 4, 4]})
    coco = json.loads(json_file.read_text())
    change(coco)
    json_file.write_text(json.dumps(coco))
    return str(json_file)


def _labelme_with(tmp_path: Path, change) -> str:
    folder = labelme_files(tmp_path)
    (folder / "broken.json").unlink()
    data = json.loads((folder / "good.json").read_text())
    change(data)
    (folder / "good.json").write_text(json.dumps(data))
    return str(folder)


def _via_with_regions(tmp_path: Path, regions) -> str:
    write_image(tmp_path / "one.png")
    (tmp_path / "via.json").write_text(json.dumps({"one.png1": {"filename": "one.png", "regions": regions}}))
    return str(tmp_path / "via.json")


MALFORMED_FIELDS = {
    "COCO image id a list": (
        lambda d, mode: load_coco_json(_coco_with(d, lambda c: c["images"][0].update(id=[1])), str(d), **mode),
        "image 'id' must be a number or a string",
    ),
    "COCO file_name null": (
        lambda d, mode: load_coco_json(_coco_with(d, lambda c: c["images"][0].update(file_name=None)), str(d), **mode),
        "'file_name' must be a file name",
    ),
    "COCO iscrowd a word": (
        lambda d, mode: load_coco_json(
            _coco_with(d, lambda c: c["annotations"][0].update(iscrowd="x")), str(d), **mode
        ),
        "iscrowd must be 0 or 1",
    ),
    "COCO category_id a list": (
        lambda d, mode: load_coco_json(
            _coco_with(d, lambda c: c["annotations"][0].update(category_id=[1])), str(d), **mode
        ),
        "category_id [1] is not among the categories",
    ),
    "COCO RLE counts null": (
        lambda d, mode: load_coco_json(
            _coco_with(d, lambda c: c["annotations"][0].update(segmentation={"size": [40, 60], "counts": None})),
            str(d),
            **mode,
        ),
        "RLE 'counts' must be a string",
    ),
    "VIA regions a number": (
        lambda d, mode: load_via_json(_via_with_regions(d, 5), str(d), **mode),
        "'regions' must be a list or an object, got 5",
    ),
    "LabelMe point not a number": (
        lambda d, mode: load_labelme_json(
            _labelme_with(d, lambda j: j["shapes"][0].update(points=[["x", 1], [2, 3], [4, 5]])), **mode
        ),
        "'points' must be a list of [x, y] pairs of finite numbers",
    ),
    "LabelMe group_id a list": (
        lambda d, mode: load_labelme_json(_labelme_with(d, lambda j: j["shapes"][0].update(group_id=[1])), **mode),
        "'group_id' must be an integer or null",
    ),
    "LabelMe imagePath a number": (
        lambda d, mode: load_labelme_json(_labelme_with(d, lambda j: j.update(imagePath=5)), **mode),
        "'imagePath' must be a file name, got 5",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_FIELDS))
def test_a_malformed_field_is_bad_input_not_a_crash(tmp_path, case):
    load, reason = MALFORMED_FIELDS[case]
    load(tmp_path / "skip", {"on_bad_annotation": "skip"})
    with pytest.raises(BadAnnotationError, match=re.escape(reason)):
        load(tmp_path / "error", {"on_bad_annotation": "error"})
