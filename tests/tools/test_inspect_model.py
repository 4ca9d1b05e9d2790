"""``tools/inspect_model.py``: one command writes every step's picture and table for a
registered dataset's entry or an image file, with the model's own detections; user errors end
with one message and exit status 1."""

from __future__ import annotations

import importlib.util
import json
import sys

import cv2
import pytest
import torch
from conftest import REPO, require_dataset

from project.data import DatasetCatalog, MetadataCatalog, register_coco_instances
from project.engine import DefaultPredictor

sys.path.insert(0, str(REPO / "tests" / "inspection"))
from inspection_fixtures import DSB2018_IMAGE, OVERRIDES, demo_cfg
from tool_helpers import run_tool

TOOL_PATH = REPO / "tools" / "inspect_model.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("inspect_model_tool", TOOL_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def dsb2018_val_subset(data_root, tmp_path):
    """The DSB2018 val image the inspection tests use, registered alone as a dataset."""
    dsb2018 = require_dataset(data_root, "dsb2018")
    full = json.loads((dsb2018 / "annotations_val.json").read_text())
    images = [im for im in full["images"] if im["file_name"] == DSB2018_IMAGE]
    ids = {im["id"] for im in images}
    subset = dict(full, images=images, annotations=[a for a in full["annotations"] if a["image_id"] in ids])
    json_file = tmp_path / "subset.json"
    json_file.write_text(json.dumps(subset))
    name = "inspect_model_dsb2018_subset"
    register_coco_instances(name, {}, str(json_file), str(dsb2018 / "val"))
    yield name, dsb2018 / "val" / DSB2018_IMAGE
    DatasetCatalog.pop(name, None)
    MetadataCatalog.pop(name, None)


def weights_override(data_root) -> str:
    return f"MODEL.WEIGHTS={demo_cfg(data_root).MODEL.WEIGHTS}"


def test_a_dataset_entry_gives_every_picture_and_the_models_detections(tool, dsb2018_val_subset, data_root, tmp_path):
    name, image_path = dsb2018_val_subset
    output = tmp_path / "out"
    argv = ["--dataset", name, "--index", "0", "--output", str(output), "--top-n", "12", *OVERRIDES]
    summary = tool.main([*argv, weights_override(data_root)])
    for step in ("anchors", "proposals", "boxes", "masks", "activations", "weights", "result"):
        assert summary["files"][step], step
        for file in summary["files"][step]:
            assert (output / file).is_file()
    written = json.loads((output / "inspection.json").read_text())
    assert written["source"] == f"{name}[0]" and written["skipped"] == {}
    assert written["steps"]["anchors"]["num_gt"] == 18 and len(written["steps"]["masks"]["instances"]) == 12
    # The final detections are DefaultPredictor's on the image file.
    predictor = DefaultPredictor(demo_cfg(data_root))
    expected = predictor(cv2.imread(str(image_path)))["instances"]
    boxes = torch.tensor([d["box"] for d in written["steps"]["boxes"]["final_detections"]], dtype=torch.float32)
    assert torch.equal(boxes, expected.pred_boxes.tensor)


def test_an_image_file_and_a_subset_of_steps(tool, data_root, tmp_path):
    image = require_dataset(data_root, "dsb2018") / "val" / DSB2018_IMAGE
    argv = ["--input", str(image), "--output", str(tmp_path), "--steps", "anchors,result", *OVERRIDES]
    summary = tool.main([*argv, weights_override(data_root)])
    assert summary["files"] == {"anchors": ["1_anchors_top.png"], "result": ["7_result.png"]}
    assert "anchor_labels" in summary["skipped"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "no_such_dataset", "--output", "{out}"], "is not registered"),
        (["--dataset", "{dataset}", "--index", "5", "--output", "{out}"], "out of range: dataset"),
        (["--input", "{out}/absent.png", "--output", "{out}"], "no such file"),
        (["--input", "{image}", "--index", "2", "--output", "{out}"], "--index picks an entry"),
        (["--input", "{image}", "--output", "{out}", "--frobnicate"], "unknown option --frobnicate"),
        (["--input", "{image}", "--output", "{out}", "--activation-module", "backbone.nope"], "no module"),
        (["--input", "{image}", "--output", "{out}", "MODEL.NO_SUCH_KEY=1"], "NO_SUCH_KEY"),
    ],
    ids=["dataset", "index", "file", "index-with-input", "option", "module", "override"],
)
def test_user_errors_are_told_plainly(tool, dsb2018_val_subset, data_root, tmp_path, argv, message):
    name, image = dsb2018_val_subset
    argv = [a.format(out=tmp_path, dataset=name, image=image) for a in argv]
    with pytest.raises(tool.USER_ERRORS, match=message):
        tool.main([*argv, *OVERRIDES, weights_override(data_root)])


def test_help_shows_an_example():
    done = run_tool(TOOL_PATH, "--help")
    assert done.returncode == 0
    assert "python tools/inspect_model.py --input" in done.stdout and "--top-n" in done.stdout


def test_a_bad_command_line_exits_with_one_message(tmp_path):
    done = run_tool(TOOL_PATH, "--input", str(tmp_path / "absent.png"), "--output", str(tmp_path), "MODEL.DEVICE=cpu")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("inspect_model.py: error:")]
    assert errors == [f"inspect_model.py: error: --input {tmp_path / 'absent.png'}: no such file"]
    assert run_tool(TOOL_PATH, "--output", str(tmp_path)).returncode == 1  # neither --input nor --dataset
