"""``tools/visualize_json_results.py`` on real data: results made from the ground truth itself
give pictures whose two halves agree, category ids are mapped to the dataset's classes, the
score threshold holds, results for unknown images are counted and reported, and malformed
input ends with a message and exit status 1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, require_dataset
from pycocotools import mask as mask_util
from tool_helpers import gt_masks, inside_and_outside, load_tool, read_rgb, run_tool, unregister

from project.data import register_coco_instances
from project.engine.cli import CommandLineError
from project.structures import MaskCrop

TOOL_PATH = REPO / "tools" / "visualize_json_results.py"


@pytest.fixture(scope="module")
def tool():
    return load_tool(TOOL_PATH)


@pytest.fixture
def coco_mini(data_root, tmp_path):
    """Both coco_mini images (COCO's 80 categories, ids up to 90) as one registered dataset."""
    root = require_dataset(data_root, "coco_mini")
    splits = ("train2017", "val2017")
    parts = [json.loads((root / "annotations" / f"instances_{s}.json").read_text()) for s in splits]
    images = [dict(im, file_name=f"{s}/{im['file_name']}") for s, p in zip(splits, parts) for im in p["images"]]
    coco = {
        "images": images,
        "annotations": [a for p in parts for a in p["annotations"]],
        "categories": parts[0]["categories"],
    }
    json_file = tmp_path / "coco_mini.json"
    json_file.write_text(json.dumps(coco))
    name = "visualize_json_results_coco_mini"
    register_coco_instances(name, {}, str(json_file), str(root / "images"))
    yield name, coco, root / "images"
    unregister(name)


def results_from_ground_truth(coco: dict, score: float = 1.0) -> list:
    """One COCO result per annotation: its category id, box and mask (as RLE), with ``score``.

    The masks are rasterised as the dataset's polygons are drawn (``MaskCrop.from_polygons``,
    on each object's crop), which differs from pycocotools' full-image rasterisation by a pixel
    here and there along some edges; so both halves of a picture show the same pixels."""
    sizes = {im["id"]: (im["height"], im["width"]) for im in coco["images"]}
    results = []
    for ann in coco["annotations"]:
        polygons = [np.asarray(p, dtype=np.float64) for p in ann["segmentation"]]
        mask = MaskCrop.from_polygons(polygons, sizes[ann["image_id"]]).to_array()
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        results.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "bbox": ann["bbox"],
                "score": score,
                "segmentation": rle,
            }
        )
    return results


def write_json(path: Path, value) -> str:
    path.write_text(json.dumps(value))
    return str(path)


def halves(path):
    picture = read_rgb(path)
    width = picture.shape[1] // 2
    assert picture.shape[1] == 2 * width
    return picture[:, :width], picture[:, width:]


def test_ground_truth_given_as_results_draws_the_same_picture_twice(tool, coco_mini, tmp_path, capsys):
    name, coco, image_root = coco_mini
    results = results_from_ground_truth(coco)
    # Category 81 ("sink") is class 79 of 80: drawn only when ids are mapped through the metadata.
    assert max(r["category_id"] for r in results) > 80
    out = tmp_path / "pictures"
    argv = ["--input", write_json(tmp_path / "results.json", results), "--output", str(out), "--dataset", name]
    summary = tool.main([*argv, "--no-labels"])
    assert summary["written"] == 2 and summary["skipped"] == 0
    assert summary["drawn"] == len(results) == 23 and summary["left_out"] == {}
    assert sorted(p.name for p in out.iterdir()) == ["000000391895.png", "000000397133.png"]
    assert "wrote 2 pictures" in capsys.readouterr().out
    for image in coco["images"]:
        raw = read_rgb(image_root / image["file_name"])
        left, right = halves(out / (Path(image["file_name"]).stem + ".png"))
        assert left.shape == right.shape == raw.shape
        inside, outside = inside_and_outside(gt_masks(coco, image))
        assert np.array_equal(left[inside], right[inside])
        assert (left[inside] != raw[inside]).any(axis=1).mean() > 0.95  # the masks were drawn
        assert np.array_equal(left[outside], right[outside])  # and the boxes too, the same

    # With labels, the prediction side's read "class score%": the halves differ, the masks stay.
    labelled = tool.main([*argv[:3], str(tmp_path / "labelled"), *argv[4:]])
    assert labelled["written"] == 2
    left, right = halves(labelled["files"][0])
    assert not np.array_equal(left, right)


def test_results_under_the_threshold_are_left_out(tool, coco_mini, tmp_path, capsys):
    name, coco, image_root = coco_mini
    results = results_from_ground_truth(coco, score=0.3)
    results[0]["score"] = 0.9
    input_file = write_json(tmp_path / "results.json", results)
    summary = tool.main(["--input", input_file, "--output", str(tmp_path / "a"), "--dataset", name])
    assert summary["drawn"] == 1 and summary["left_out"] == {tool.BELOW_THRESHOLD: 22}
    assert "drew 1 of 23 results (left out: 22 below --conf-threshold)" in capsys.readouterr().out

    summary = tool.main(
        ["--input", input_file, "--output", str(tmp_path / "b"), "--dataset", name, "--conf-threshold", "0.95"]
    )
    assert summary["drawn"] == 0
    for image in coco["images"]:
        left, right = halves(tmp_path / "b" / (Path(image["file_name"]).stem + ".png"))
        raw = read_rgb(image_root / image["file_name"])
        assert np.array_equal(left, raw) and not np.array_equal(right, raw)


def test_results_for_unknown_images_and_categories_are_counted_and_reported(tool, coco_mini, tmp_path, capsys):
    name, coco, _ = coco_mini
    results = results_from_ground_truth(coco)
    stray = dict(results[0], image_id=999999)
    unknown_class = dict(results[1], category_id=12)  # an id COCO leaves unused
    input_file = write_json(tmp_path / "results.json", [*results, stray, unknown_class])
    summary = tool.main(["--input", input_file, "--output", str(tmp_path / "out"), "--dataset", name])
    assert summary["written"] == 2 and summary["drawn"] == len(results)
    assert summary["left_out"] == {tool.UNKNOWN_IMAGE: 1, tool.UNKNOWN_CATEGORY: 1}
    assert summary["unknown_image_ids"] == [999999]
    captured = capsys.readouterr()
    assert f"1 results name 1 image ids that dataset '{name}' does not have (999999)" in captured.err
    assert "1 image id not in the dataset" in captured.out and "1 category id not in the dataset" in captured.out


def test_malformed_input_is_named(tool, coco_mini, data_root, tmp_path):
    name, _, _ = coco_mini
    output = ["--output", str(tmp_path / "out"), "--dataset", name]

    def fails(match, input_file):
        with pytest.raises(CommandLineError, match=match):
            tool.main(["--input", str(input_file), *output])

    fails("no such file", tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("[{")
    fails("not a JSON file", tmp_path / "broken.json")
    fails("COCO annotation file", data_root / "coco_mini" / "annotations" / "instances_val2017.json")
    fails("expected a JSON list of COCO results", write_json(tmp_path / "object.json", {"results": []}))
    good = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9}
    no_score = {k: v for k, v in good.items() if k != "score"}
    fails("result #1 lacks score", write_json(tmp_path / "no_score.json", [good, no_score]))
    fails(r"result #0 has bbox \[0, 0, 5\]", write_json(tmp_path / "bbox.json", [dict(good, bbox=[0, 0, 5])]))


@pytest.mark.slow
def test_command_line_help_and_exit_status(tmp_path):
    shown = run_tool(TOOL_PATH, "--help")
    assert shown.returncode == 0
    assert "python tools/visualize_json_results.py" in shown.stdout and "--conf-threshold" in shown.stdout

    failed = run_tool(TOOL_PATH, "--input", str(tmp_path / "missing.json"), "--output", str(tmp_path / "out"))
    assert failed.returncode == 1
    assert f"visualize_json_results.py: error: --input {tmp_path / 'missing.json'}: no such file" in failed.stderr
    assert "Traceback" not in failed.stderr
