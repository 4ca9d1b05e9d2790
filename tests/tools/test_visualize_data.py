"""``tools/visualize_data.py`` on real data: one picture per image, ground-truth masks drawn
where they are and nothing far from them, the training loader's view, unreadable images
skipped and counted, and user errors ending with a message and exit status 1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, require_dataset
from tool_helpers import gt_masks, inside_and_outside, load_tool, read_rgb, run_tool, unregister
from training_fixtures import register_entry

from project.data import DatasetCatalog, load_coco_json, register_coco_instances
from project.engine.cli import CommandLineError

TOOL_PATH = REPO / "tools" / "visualize_data.py"
# DSB2018 val images with few nuclei, so that some background lies far from every box.
SPARSE_DSB2018_VAL = ("84eeec6819877530.png", "e5aeb5b3577abbeb.png", "866a8cba7bfe1ea7.png")


@pytest.fixture(scope="module")
def tool():
    return load_tool(TOOL_PATH)


def register_coco_subset(name: str, json_file: Path, image_root: Path, tmp_path: Path, file_names=None) -> dict:
    """Register the images ``file_names`` (all when None) of a COCO file as dataset ``name``;
    returns the COCO dict of the subset."""
    full = json.loads(json_file.read_text())
    images = [im for im in full["images"] if file_names is None or im["file_name"] in file_names]
    keep = {im["id"] for im in images}
    subset = dict(full, images=images, annotations=[a for a in full["annotations"] if a["image_id"] in keep])
    subset_file = tmp_path / f"{name}.json"
    subset_file.write_text(json.dumps(subset))
    register_coco_instances(name, {}, str(subset_file), str(image_root))
    return subset


@pytest.fixture
def sparse_dsb2018(data_root, tmp_path):
    dsb2018 = require_dataset(data_root, "dsb2018")
    name = "visualize_data_dsb2018_sparse"
    coco = register_coco_subset(
        name, dsb2018 / "annotations_val.json", dsb2018 / "val", tmp_path, set(SPARSE_DSB2018_VAL)
    )
    yield name, coco, dsb2018 / "val"
    unregister(name)


@pytest.fixture
def coco_mini_val(data_root, tmp_path):
    coco_mini = require_dataset(data_root, "coco_mini")
    name = "visualize_data_coco_mini_val"
    json_file = coco_mini / "annotations" / "instances_val2017.json"
    coco = register_coco_subset(name, json_file, coco_mini / "images" / "val2017", tmp_path)
    yield name, coco, coco_mini / "images" / "val2017"
    unregister(name)


def far_from_boxes(coco: dict, image: dict, margin: int = 30, label_width: int = 140) -> np.ndarray:
    """Pixels that neither a box nor a label next to it (above, inside or below the box,
    starting at its left edge) can reach."""
    height, width = image["height"], image["width"]
    far = np.ones((height, width), dtype=bool)
    for ann in coco["annotations"]:
        if ann["image_id"] != image["id"]:
            continue
        x, y, w, h = ann["bbox"]
        x0 = int(max(0, min(x, width - label_width) - margin))
        x1 = int(min(width, max(x + w, x + label_width) + margin))
        far[int(max(0, y - margin)) : int(min(height, y + h + margin)), x0:x1] = False
    return far


def pictures_by_image(coco: dict, files) -> dict:
    """Image entry id -> the picture named after its file."""
    by_stem = {Path(f).stem: f for f in files}
    return {im["id"]: by_stem[Path(im["file_name"]).stem] for im in coco["images"]}


def assert_draws_masks_only_where_they_are(coco, image_root, pictures, strict):
    """Each picture (``pictures``: image id -> file) changes the pixels inside its image's
    masks; with ``strict`` (no boxes, no labels) it leaves every pixel away from the masks as in
    the image, otherwise those far from the boxes."""
    far_pixels = 0
    for image in coco["images"]:
        raw = read_rgb(image_root / image["file_name"])
        picture = read_rgb(pictures[image["id"]])
        assert picture.shape == raw.shape
        inside, outside = inside_and_outside(gt_masks(coco, image))
        changed = (picture != raw).any(axis=2)
        assert changed[inside].mean() > 0.95
        untouched = outside if strict else outside & far_from_boxes(coco, image)
        assert np.array_equal(picture[untouched], raw[untouched])
        far_pixels += int(untouched.sum())
    assert far_pixels > 1000  # the check above looked at real background


@pytest.mark.parametrize("dataset", ["sparse_dsb2018", "coco_mini_val"])
def test_annotation_pictures_show_each_mask_and_leave_the_background(tool, dataset, request, tmp_path, capsys):
    name, coco, image_root = request.getfixturevalue(dataset)
    out = tmp_path / "pictures"
    summary = tool.main(["--output-dir", str(out), "--dataset", name])
    assert summary["written"] == len(coco["images"]) and summary["skipped"] == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(im["file_name"]).stem + ".png" for im in coco["images"])
    assert f"wrote {len(coco['images'])} pictures to {out}; 0 images skipped (unreadable)" in capsys.readouterr().out
    assert_draws_masks_only_where_they_are(coco, image_root, pictures_by_image(coco, summary["files"]), strict=False)

    plain = tool.main(["--output-dir", str(tmp_path / "plain"), "--dataset", name, "--no-boxes", "--no-labels"])
    assert_draws_masks_only_where_they_are(coco, image_root, pictures_by_image(coco, plain["files"]), strict=True)


@pytest.mark.parametrize("image_format", ["BGR", "RGB"])
def test_dataloader_pictures_are_the_training_images_in_rgb(tool, coco_mini_val, image_format, tmp_path):
    """With augmentations that change nothing (a resize to the image's own size, no flip), the
    training loader's picture of a colour image is the image itself, masks drawn, whatever
    INPUT.FORMAT the model reads."""
    name, coco, image_root = coco_mini_val
    image = coco["images"][0]
    out = tmp_path / "pictures"
    summary = tool.main(
        [
            "--source=dataloader",
            "--num=3",
            f"--output-dir={out}",
            f"--dataset={name}",
            "--no-boxes",
            "--no-labels",
            f"INPUT.FORMAT={image_format}",
            f"INPUT.MIN_SIZE_TRAIN=[{image['height']}]",
            f"INPUT.MAX_SIZE_TRAIN={image['width']}",
            "INPUT.RANDOM_FLIP=none",
            "DATALOADER.NUM_WORKERS=0",
        ]
    )
    assert summary["written"] == 3 and summary["skipped"] == 0
    stem = Path(image["file_name"]).stem
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 3 and all(n.startswith(f"{stem}_iter") for n in names)
    for path in summary["files"]:
        assert_draws_masks_only_where_they_are(coco, image_root, {image["id"]: path}, strict=True)


@pytest.mark.slow
def test_dataloader_pictures_of_the_dsb2018_experiment_are_augmented(tool, data_root, tmp_path, monkeypatch):
    require_dataset(data_root, "dsb2018")
    monkeypatch.setenv("PROJECT_DATA_ROOT", str(data_root))
    out = tmp_path / "pictures"
    summary = tool.main(
        ["--source", "dataloader", "--num", "3", "--output-dir", str(out), "+experiment=finetune_dsb2018"]
        + ["DATALOADER.NUM_WORKERS=0"]
    )
    assert summary["dataset"] == "dsb2018_train"  # DATASETS.TRAIN[0]
    assert summary["written"] == 3 and len(list(out.iterdir())) == 3
    for path in summary["files"]:
        assert "_iter" in Path(path).stem
        height, width = read_rgb(path).shape[:2]
        # The experiment resizes the shorter side to 384, 448 or 512 pixels, the longer to at most 768.
        assert min(height, width) in (384, 448, 512) or max(height, width) == 768


def test_unreadable_images_are_reported_skipped_and_counted(tool, data_root, tmp_path, capsys):
    dsb2018 = require_dataset(data_root, "dsb2018")
    name = "visualize_data_with_unreadable_images"
    image_file = dsb2018 / "val" / SPARSE_DSB2018_VAL[0]
    loaded = load_coco_json(str(dsb2018 / "annotations_val.json"), str(dsb2018 / "val"))
    good = next(d for d in loaded if d["file_name"] == str(image_file))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(image_file.read_bytes()[:200])  # the header, not the pixels
    dicts = [good, dict(good, file_name=str(tmp_path / "missing.png")), dict(good, file_name=str(truncated))]
    DatasetCatalog.register(name, lambda: [dict(d) for d in dicts])
    try:
        summary = tool.main(["--output-dir", str(tmp_path / "annotation"), "--dataset", name])
        captured = capsys.readouterr()
        assert summary["written"] == 1 and summary["skipped"] == 2
        assert "missing.png" in captured.err and "truncated.png" in captured.err
        assert "wrote 1 pictures" in captured.out and "2 images skipped (unreadable)" in captured.out

        # The training loader skips them too (drawing other images instead) and counts each draw.
        loader_argv = ["--source=dataloader", "--num=4", f"--dataset={name}", "DATALOADER.NUM_WORKERS=0"]
        summary = tool.main([*loader_argv, f"--output-dir={tmp_path / 'loader'}", "INPUT.MASK_FORMAT=bitmask"])
        assert summary["written"] == 4 and summary["skipped"] >= 2
        assert "missing image file" in capsys.readouterr().out

        # With a mask format that cannot carry the RLE masks, the mapper skips every image: the
        # tool says so and why, instead of drawing nothing forever.
        with pytest.raises(CommandLineError, match="skipped every image.*invalid annotation.*MASK_FORMAT=bitmask"):
            tool.main([*loader_argv, f"--output-dir={tmp_path / 'polygons'}", "INPUT.MASK_FORMAT=polygon"])
    finally:
        unregister(name)


def test_images_dropped_when_the_dataset_was_loaded_are_reported(tool, data_root, tmp_path, capsys):
    coad = require_dataset(data_root, "coad") / "train"
    entry = register_entry("visualize_data_coad", str(coad / "_annotations.coco.json"), str(coad))
    try:
        summary = tool.main(
            ["--num", "2", "--output-dir", str(tmp_path), f"DATASETS.REGISTER=[{entry}]"]
            + ["DATASETS.TRAIN=[visualize_data_coad]"]
        )
    finally:
        unregister("visualize_data_coad")
    assert summary["written"] == 2 and summary["left_out_when_loaded"] == 1  # the export lists a missing file
    assert "left out when dataset 'visualize_data_coad' was loaded: 1 x missing image file" in capsys.readouterr().out


def test_bad_command_lines_name_the_problem(tool, tmp_path):
    with pytest.raises(CommandLineError, match="unknown option --nmu"):
        tool.main(["--output-dir", str(tmp_path), "--nmu", "3"])
    with pytest.raises(CommandLineError, match="Valid keys under INPUT"):
        tool.main(["--output-dir", str(tmp_path), "INPUT.FROMAT=RGB"])
    with pytest.raises(CommandLineError, match="'no_such_dataset' is not registered"):
        tool.main(["--output-dir", str(tmp_path), "--dataset", "no_such_dataset"])


@pytest.mark.slow
def test_command_line_help_and_exit_status(tmp_path):
    shown = run_tool(TOOL_PATH, "--help")
    assert shown.returncode == 0
    assert "python tools/visualize_data.py --output-dir" in shown.stdout and "--source" in shown.stdout

    failed = run_tool(TOOL_PATH, "--output-dir", str(tmp_path), "--dataset", "no_such_dataset")
    assert failed.returncode == 1
    assert "visualize_data.py: error: dataset 'no_such_dataset' is not registered" in failed.stderr
    assert "Traceback" not in failed.stderr
