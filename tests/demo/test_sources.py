"""Demo inputs: which files a command line names, and frames from images and videos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from project.demo.sources import DemoInputError, ImageFiles, VideoFrames, expand_image_inputs


def _write_png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 10, 3), value, dtype=np.uint8))


def test_a_folder_is_searched_recursively_in_sorted_order_with_names_relative_to_it(tmp_path):
    for name in ["b.png", "a/z.jpg", "a/c.tif", "notes.txt"]:
        if name.endswith(".txt"):
            (tmp_path / name).write_text("not an image")
        else:
            _write_png(tmp_path / name)
    found = expand_image_inputs([str(tmp_path)])
    assert [name for _, name in found] == ["a/c.tif", "a/z.jpg", "b.png"]
    assert all(path.is_file() for path, _ in found)


def test_globs_and_files_are_expanded_in_the_order_given(tmp_path):
    for name in ["x2.png", "x1.png", "y.png"]:
        _write_png(tmp_path / name)
    found = expand_image_inputs([str(tmp_path / "y.png"), str(tmp_path / "x*.png")])
    assert [name for _, name in found] == ["y.png", "x1.png", "x2.png"]


@pytest.mark.parametrize("given", ["missing.png", "nothing*.png", "empty_folder"])
def test_an_input_that_names_nothing_is_an_error_naming_it(tmp_path, given):
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(DemoInputError, match=given.replace("*", r"\*")):
        expand_image_inputs([str(tmp_path / given)])


def test_an_unreadable_image_becomes_a_frame_with_an_error_and_the_others_are_read(tmp_path):
    _write_png(tmp_path / "a.png", 10)
    (tmp_path / "b.png").write_bytes(b"not a png")
    _write_png(tmp_path / "c.png", 30)
    frames = list(ImageFiles([str(tmp_path)]))
    assert [f.name for f in frames] == ["a.png", "b.png", "c.png"]
    assert frames[1].image is None and "b.png" in frames[1].error
    assert frames[0].image.shape == (8, 10, 3) and int(frames[2].image[0, 0, 0]) == 30


def test_video_frames_are_all_read_in_order(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    for value in range(0, 250, 50):
        writer.write(np.full((24, 32, 3), value, dtype=np.uint8))
    writer.release()
    video = VideoFrames(str(path))
    frames = list(video)
    assert len(video) == 5 and video.fps == pytest.approx(10.0)
    assert [f.name for f in frames] == [f"frame_{i:06d}" for i in range(5)]
    assert [int(round(f.image.mean() / 50)) for f in frames] == [0, 1, 2, 3, 4]


def test_a_video_that_cannot_be_opened_is_an_error_naming_it(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"no video here")
    with pytest.raises(DemoInputError, match="broken.mp4"):
        VideoFrames(str(bad))
    with pytest.raises(DemoInputError, match="missing.mp4"):
        VideoFrames(str(tmp_path / "missing.mp4"))
