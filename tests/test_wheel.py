"""The package as a user installs it: a built wheel in a fresh environment, used from a folder
that has no source tree, composes named configs and predicts like the source tree does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import cv2
import pytest
import torch
from conftest import REPO, require_dataset

from benchmarks.calibration import write_calibrated_detectron2_checkpoint
from project import model_zoo
from project.engine import DefaultPredictor

pytestmark = pytest.mark.slow

# Small test sizes keep each R101-FPN forward pass around a second on two cores.
OVERRIDES = ["MODEL.DEVICE=cpu", "INPUT.MIN_SIZE_TEST=256", "INPUT.MAX_SIZE_TEST=384"]

# Local state of a working copy that is not part of the source distribution.
NOT_SOURCE = (".git", ".venv*", "build", "*.egg-info", "__pycache__", "generated", "output*", ".pytest_cache")

# Run by the fresh environment's Python, from a folder outside the repository.
USER_SCRIPT = """
import json, sys
import cv2
import project
from project import model_zoo
from project.config import config_dir, get_cfg
from project.engine import DefaultPredictor

weights, image, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
dsb = get_cfg(["+experiment=finetune_dsb2018"])
cfg = model_zoo.get_config("mask_rcnn_R_101_FPN_3x", overrides=overrides + ["MODEL.WEIGHTS=" + weights])
found = DefaultPredictor(cfg)(cv2.imread(image))["instances"]
print(json.dumps({
    "package": project.__file__,
    "config_dir": str(config_dir()),
    "dsb2018_classes": dsb.MODEL.ROI_HEADS.NUM_CLASSES,
    "boxes": found.pred_boxes.tensor.tolist(),
    "scores": found.scores.tolist(),
    "classes": found.pred_classes.tolist(),
    "mask_pixels": found.pred_masks.sum(dim=(1, 2)).tolist(),
}))
"""


def build_wheel(destination: Path) -> Path:
    """The project's wheel, built without network access (with this environment's build tools
    instead of an isolated download) from a clean copy of the source tree, so that neither a
    stale build folder nor local outputs can end up in it."""
    source = destination / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    build = ["wheel", "--no-deps", "--no-build-isolation", "-w", str(destination), str(source)]
    subprocess.run([sys.executable, "-m", "pip", *build], check=True, capture_output=True)
    (wheel,) = destination.glob("maskrcnn_project-*.whl")
    return wheel


def fresh_environment(root: Path, wheel: Path) -> Path:
    """A new virtual environment holding only the wheel; the (large) dependencies are those
    of this environment, reached through a ``.pth`` entry. Python does not read ``.pth``
    files inside a folder added that way, so this environment's editable install of the
    project stays invisible there. Returns the new environment's Python."""
    venv.create(root, with_pip=False)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", purelib, str(wheel)],
        check=True,
        capture_output=True,
    )
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


@pytest.fixture(scope="module")
def calibrated_weights(data_root, tmp_path_factory):
    """R101-FPN weights whose norm statistics are calibrated on real images, so the model
    detects something, and one more real image to predict on."""
    paths = sorted((require_dataset(data_root, "pennfudan") / "PNGImages").glob("*.png"))
    images = [torch.from_numpy(cv2.resize(cv2.imread(str(p)), (384, 256)).transpose(2, 0, 1).copy()) for p in paths[:3]]
    cfg = model_zoo.get_config("mask_rcnn_R_101_FPN_3x", overrides=[*OVERRIDES, "MODEL.WEIGHTS="])
    weights = tmp_path_factory.mktemp("wheel") / "calibrated_R101.pkl"
    write_calibrated_detectron2_checkpoint(cfg, images, weights, seed=0)
    return weights, paths[5]


def test_wheel_ships_the_configs_and_not_the_repository_tools(tmp_path):
    names = zipfile.ZipFile(build_wheel(tmp_path)).namelist()
    assert "project/configs/config.yaml" in names
    assert "project/configs/experiment/finetune_dsb2018.yaml" in names
    assert "project/configs/model/mask_rcnn_R_101_FPN.yaml" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "configs/", "datasets/", "tools/"))]


def test_installed_wheel_predicts_from_another_folder_as_the_source_tree_does(tmp_path, calibrated_weights):
    weights, image = calibrated_weights
    python = fresh_environment(tmp_path / "env", build_wheel(tmp_path / "dist"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        [str(python), "-c", USER_SCRIPT, str(weights), str(image), json.dumps(OVERRIDES)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    installed = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(installed["package"]).is_relative_to(tmp_path / "env")
    assert Path(installed["config_dir"]).is_relative_to(tmp_path / "env")
    assert installed["dsb2018_classes"] == 1

    cfg = model_zoo.get_config("mask_rcnn_R_101_FPN_3x", overrides=[*OVERRIDES, f"MODEL.WEIGHTS={weights}"])
    found = DefaultPredictor(cfg)(cv2.imread(str(image)))["instances"]
    assert len(found) > 0, "the calibrated model should detect something"
    assert installed["classes"] == found.pred_classes.tolist()
    assert installed["mask_pixels"] == found.pred_masks.sum(dim=(1, 2)).tolist()
    torch.testing.assert_close(torch.tensor(installed["boxes"]), found.pred_boxes.tensor, rtol=0, atol=1e-4)
    torch.testing.assert_close(torch.tensor(installed["scores"]), found.scores, rtol=0, atol=1e-6)
