"""The converter (python -m project.data.convert) on bad input: every case ends with a
one-paragraph message on stderr and exit status 1, never a traceback; skipped items are
counted in its last line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO

from project.data.convert import main as convert_main

PROG = "python -m project.data.convert: error: "


def write_image(path: Path, height: int = 40, width: int = 60) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 90, np.uint8))


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Files for the cases: a good image, a COCO file, broken JSON, VIA with a bad theta, ..."""
    write_image(tmp_path / "images" / "a.png")
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "height": 40, "width": 60}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10]}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    (tmp_path / "broken.json").write_text('{"images": [{"id": 1, "file_name": ')
    (tmp_path / "latin1.json").write_bytes('{"name": "caf\xe9"}'.encode("latin-1"))
    ellipse = {"name": "ellipse", "cx": 30, "cy": 20, "rx": 10, "ry": 5, "theta": "abc"}
    via = {"a.png1": {"filename": "a.png", "regions": [{"shape_attributes": ellipse}]}}
    (tmp_path / "via.json").write_text(json.dumps(via))
    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "a_file").write_text("not a folder")
    return tmp_path


def out(d: Path) -> str:
    return str(d / "out" / "converted.json")


def coco_args(folder: Path, json_name: str, image_folder: str) -> list:
    """Converter arguments for a COCO file and an image folder inside ``folder``."""
    return ["--format", "coco", "--json-file", str(folder / json_name), "--image-root", str(folder / image_folder)]


BAD_INPUTS = {
    "unknown format": (lambda d: ["--format", "yolo", "--out", out(d)], "invalid choice: 'yolo'"),
    "no format": (lambda d: ["--out", out(d)], "the following arguments are required: --format"),
    "unknown option": (lambda d: ["--format", "coco", "--jsonfile", "x", "--out", out(d)], "unrecognized arguments"),
    "bad policy": (
        lambda d: ["--format", "labelme", "--json-dir", str(d), "--on-bad-annotation", "ignore", "--out", out(d)],
        "invalid choice: 'ignore'",
    ),
    "missing argument": (lambda d: ["--format", "via", "--out", out(d)], "--format via needs --json-file and"),
    "missing annotation file": (
        lambda d: coco_args(d, "nope.json", "images"),
        "nope.json does not exist",
    ),
    "annotation file is a folder": (
        lambda d: coco_args(d, "images", "images"),
        "cannot be read (Is a directory)",
    ),
    "malformed JSON": (
        lambda d: coco_args(d, "broken.json", "images"),
        "broken.json: JSON line 1 column",
    ),
    "JSON not UTF-8": (
        lambda d: coco_args(d, "latin1.json", "images"),
        "latin1.json: annotation file: is not UTF-8 text",
    ),
    "missing image folder": (
        lambda d: coco_args(d, "coco.json", "nope"),
        "--image-root",
    ),
    "VIA theta not a number": (
        lambda d: [
            "--format",
            "via",
            "--json-file",
            str(d / "via.json"),
            "--image-root",
            str(d / "images"),
            "--on-bad-annotation",
            "error",
        ],
        "via.json: image 'a.png', region #0: shape attribute 'theta' must be a finite number, got 'abc'",
    ),
    "two classes for one": (
        lambda d: ["--format", "mask_folder", "--root", str(d), "--classes", "cell", "nucleus"],
        "has a single class",
    ),
    "nothing to convert": (
        lambda d: ["--format", "mask_folder", "--root", str(d / "empty_folder")],
        "no image of",
    ),
    "output is a folder": (
        lambda d: [*coco_args(d, "coco.json", "images"), "--out", str(d)],
        "is a folder",
    ),
    "output below a file": (
        lambda d: [*coco_args(d, "coco.json", "images"), "--out", str(d / "a_file" / "x.json")],
        "is a file, not a folder",
    ),
}


def _arguments(case: str, d: Path) -> list:
    arguments = BAD_INPUTS[case][0](d)
    return arguments if "--out" in arguments else [*arguments, "--out", out(d)]


def _run_in_process(arguments: list) -> int:
    try:
        return convert_main(arguments)
    except SystemExit as stop:  # argparse's way out
        return stop.code


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_ends_with_one_paragraph_and_status_1(inputs, capsys, case):
    status = _run_in_process(_arguments(case, inputs))  # an exception escaping here would be a traceback
    err = capsys.readouterr().err
    assert status == 1, err
    message = err.split(PROG, 1)[-1].strip()
    assert err.startswith(PROG) and message and "\n" not in message, err
    assert BAD_INPUTS[case][1] in message, message
    assert not (inputs / "out").exists()


def test_the_command_line_prints_no_traceback(inputs):
    result = subprocess.run(
        [sys.executable, "-m", "project.data.convert", *_arguments("malformed JSON", inputs)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(PROG)


def test_an_unreadable_image_is_left_out_and_counted(inputs, capsys):
    coco = json.loads((inputs / "coco.json").read_text())
    coco["images"].append({"id": 2, "file_name": "b.png", "height": 40, "width": 60})
    (inputs / "images" / "b.png").write_text("a text file, named like an image")
    (inputs / "coco.json").write_text(json.dumps(coco))
    arguments = ["--format", "coco", "--json-file", str(inputs / "coco.json"), "--image-root", str(inputs / "images")]
    assert convert_main([*arguments, "--out", out(inputs)]) == 0
    written = json.loads(Path(out(inputs)).read_text())
    assert [image["file_name"] for image in written["images"]] == ["../images/a.png"]
    assert "skipped as bad input: 1 x corrupt image file" in capsys.readouterr().out
