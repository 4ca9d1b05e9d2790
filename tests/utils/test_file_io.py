"""``atomic_write``: the target holds the old content or the complete new one, never a part."""

from __future__ import annotations

import os

import pytest

from project.utils.file_io import FileWriteError, atomic_write


def test_writes_the_new_content_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    atomic_write(str(target), lambda f: f.write(b"first"))
    atomic_write(str(target), lambda f: f.write(b"second"))
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["file.bin"]


def test_a_failing_write_keeps_the_old_content_and_removes_the_temporary_file(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def fail_halfway(f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(FileWriteError, match="No space left on device") as raised:
        atomic_write(str(target), fail_halfway)
    assert str(target) in str(raised.value)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file.bin"]


def test_other_errors_of_the_writer_pass_through_after_the_clean_up(tmp_path):
    def broken(f):
        raise KeyError("not an I/O problem")

    with pytest.raises(KeyError):
        atomic_write(str(tmp_path / "file.bin"), broken)
    assert os.listdir(tmp_path) == []


def test_a_file_in_place_of_the_folder_is_a_write_error(tmp_path):
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(FileWriteError, match="cannot create its folder"):
        atomic_write(str(tmp_path / "blocker" / "file.bin"), lambda f: f.write(b"x"))
