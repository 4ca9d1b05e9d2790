"""The report: every step's picture exists and is linked from index.md, inspection.json holds
the tables, and an unwritable folder is reported as such."""

from __future__ import annotations

import json
import os

import cv2
import pytest
from inspection_fixtures import shared_inspection

from project.inspection import write_report
from project.inspection.report import index_markdown
from project.utils.file_io import FileWriteError


def test_every_step_has_its_picture_and_its_table(data_root, tmp_path):
    _, _, inspection = shared_inspection(data_root)
    report = write_report(inspection, tmp_path / "report", {"thing_classes": ["nucleus"]})
    summary = json.loads(report.json_path.read_text())
    assert set(summary["steps"]) == {"anchors", "proposals", "boxes", "masks", "activations", "weights", "result"}
    assert set(report.files) == set(summary["steps"])
    index = report.index_path.read_text()
    for step, files in report.files.items():
        listed = [f["file"] for f in summary["steps"][step]["figures"]]
        assert listed == files
        for name in files:
            picture = cv2.imread(str(report.directory / name))
            assert picture is not None and picture.std() > 5, name
            assert f"]({name})" in index
    assert report.files["anchors"] == ["1_anchors_labels.png", "1_anchors_top.png"]
    assert len(report.files["activations"]) == 10
    assert summary["input_size"] == [288, 288] and summary["original_size"] == [360, 360]
    assert summary["ground_truth"] == {"boxes_original": 18, "boxes_input": 18, "has_masks": True}
    result = cv2.imread(str(report.directory / "7_result.png"))
    assert result.shape == (360, 360, 3)
    assert "| p2 |" in index and "## 6. Weights" in index
    assert index == index_markdown(summary)


def test_an_unwritable_folder_is_reported(data_root, tmp_path):
    _, _, inspection = shared_inspection(data_root)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(FileWriteError, match="cannot create"):
        write_report(inspection, blocker / "report")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(FileWriteError):
            write_report(inspection, locked)
