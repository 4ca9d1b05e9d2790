"""The demo command end to end: real images and the real street video, on the small demo model
with weights calibrated on real street images (so it detects things)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import require_dataset

from benchmarks.calibration import write_calibrated_detectron2_checkpoint
from project.config import get_cfg
from project.demo import run_demo
from project.demo.sources import DemoInputError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pennfudan(data_root):
    return require_dataset(data_root, "pennfudan") / "PNGImages"


@pytest.fixture(scope="module")
def weights(pennfudan, tmp_path_factory):
    """The default config's model (ResNet-18-FPN demo) calibrated on three real street images."""
    cfg = get_cfg(["MODEL.DEVICE=cpu"])
    images = [
        torch.from_numpy(cv2.resize(cv2.imread(str(p)), (384, 256)).transpose(2, 0, 1).copy())
        for p in sorted(pennfudan.glob("*.png"))[:3]
    ]
    path = tmp_path_factory.mktemp("demo_weights") / "calibrated_demo.pkl"
    write_calibrated_detectron2_checkpoint(cfg, images, path, seed=0)
    return str(path)


def _demo(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "demo.py"), *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_help_shows_the_options_and_an_example():
    result = _demo("--help")
    assert result.returncode == 0
    assert "--save-instances" in result.stdout and "python demo.py --input" in result.stdout


def test_a_missing_input_ends_with_one_message_and_status_1(tmp_path):
    result = _demo("--input", str(tmp_path / "nowhere.png"), "--output", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "nowhere.png: no such file or folder" in result.stderr and "Traceback" not in result.stderr


def test_a_folder_of_images_is_drawn_and_an_unreadable_file_is_skipped_and_counted(
    tmp_path, pennfudan, weights, capsys
):
    folder = tmp_path / "street"
    (folder / "day").mkdir(parents=True)
    for path in sorted(pennfudan.glob("*.png"))[3:6]:
        shutil.copy(path, folder / "day" / path.name)
    (folder / "broken.png").write_bytes(b"truncated")
    out = tmp_path / "out"
    timings = run_demo(
        ["--input", str(folder), "--output", str(out), "--save-instances", "--no-progress", f"MODEL.WEIGHTS={weights}"]
    )
    assert timings.frames == 3 and [name for name, _ in timings.skipped] == ["broken.png"]
    assert "3 images done, 1 skipped" in capsys.readouterr().err
    detections = 0
    for source in sorted((folder / "day").glob("*.png")):
        drawn = cv2.imread(str(out / "day" / source.name))
        image = cv2.imread(str(source))
        assert drawn.shape == image.shape
        labels = cv2.imread(str(out / "day" / f"{source.stem}_labels.png"), cv2.IMREAD_UNCHANGED)
        results = json.loads((out / "day" / f"{source.stem}_results.json").read_text())
        assert labels.dtype == np.uint16 and set(np.unique(labels[labels > 0])) <= set(range(1, len(results) + 1))
        if results:
            detections += len(results)
            assert (drawn[labels > 0] != image[labels > 0]).any()
    assert detections > 0


def test_an_unknown_class_name_is_a_user_error(tmp_path, pennfudan, weights):
    with pytest.raises(DemoInputError, match="not a class of this model"):
        run_demo(
            [
                "--input",
                str(next(pennfudan.glob("*.png"))),
                "--output",
                str(tmp_path),
                "--classes",
                "zebra",
                f"MODEL.WEIGHTS={weights}",
            ]
        )


@pytest.mark.slow
def test_the_street_video_gives_a_video_that_plays_with_every_frame(tmp_path, data_root, weights):
    """The real 720p clip, its first 40 frames (the whole clip is measured by
    benchmarks/benchmark_visualization.py)."""
    video = require_dataset(data_root, "video") / "pedestrians_720p.avi"
    out = tmp_path / "street.mp4"
    timings = run_demo(
        ["--input", str(video), "--output", str(out), "--max-frames", "40", "--no-progress", f"MODEL.WEIGHTS={weights}"]
    )
    assert timings.frames == 40
    played = cv2.VideoCapture(str(out))
    # The clip's header says 50 frames/s; its frames are 40 ms apart, and the output keeps that.
    assert played.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0)
    count = 0
    while True:
        ok, frame = played.read()
        if not ok:
            break
        assert frame.shape == (720, 1280, 3)
        count += 1
    assert count == 40


def test_overrides_written_after_an_input_list_are_config_not_files(tmp_path, pennfudan, weights):
    image = next(pennfudan.glob("*.png"))
    timings = run_demo(["--output", str(tmp_path), "--no-progress", "--input", str(image), f"MODEL.WEIGHTS={weights}"])
    assert timings.frames == 1 and (tmp_path / image.name).is_file()
