"""Class numbering shared by every dataset of a run (``project.data.class_alignment``); the end
to end cases (training and scoring through the aligned views) are in tests/engine/test_training.py."""

from __future__ import annotations

import logging

import pytest

from project.data import DatasetCatalog, MetadataCatalog, register_coco_instances
from project.data.class_alignment import ALIGNED_SUFFIX, ClassSetMismatchError, align_to_training_classes


def register(name: str, classes, json_file: str = "/nonexistent/annotations.json") -> None:
    register_coco_instances(name, {"thing_classes": classes} if classes else {}, json_file, "/nonexistent")


@pytest.fixture
def names():
    created = []
    yield created
    for name in created + [n + ALIGNED_SUFFIX for n in created]:
        DatasetCatalog.pop(name, None)
        MetadataCatalog.pop(name, None)


def test_same_classes_in_the_same_order_are_used_as_they_are(names):
    names += ["align_train_a", "align_test_a"]
    register("align_train_a", ["cell", "debris"])
    register("align_test_a", ["cell", "debris"])
    assert align_to_training_classes(["align_train_a"], ["align_test_a"]) == (["align_train_a"], ["align_test_a"])


def test_another_order_is_read_through_an_aligned_view(names):
    names += ["align_train_b", "align_test_b"]
    register("align_train_b", ["cell", "debris"])
    register("align_test_b", ["debris", "cell"])
    _, (test,) = align_to_training_classes(["align_train_b"], ["align_test_b"])
    assert test == "align_test_b" + ALIGNED_SUFFIX
    assert MetadataCatalog.get(test).thing_classes == ["cell", "debris"]


def test_a_class_the_training_set_lacks_stops_with_both_lists(names):
    names += ["align_train_c", "align_test_c"]
    register("align_train_c", ["cell"])
    register("align_test_c", ["cell", "debris"])
    with pytest.raises(ClassSetMismatchError, match=r"debris") as raised:
        align_to_training_classes(["align_train_c"], ["align_test_c"])
    assert "['cell']" in str(raised.value) and "['cell', 'debris']" in str(raised.value)


def test_evaluation_without_the_training_files_keeps_the_test_set_as_it_is(names, caplog):
    """An evaluation-only run on a machine without the training data: the training set is
    registered, but its classes can only be learned by reading files that are not there."""
    names += ["align_train_d", "align_test_d"]
    register("align_train_d", None)
    register("align_test_d", ["cell", "debris"])
    with caplog.at_level(logging.WARNING):
        result = align_to_training_classes(["align_train_d"], ["align_test_d"])
    assert result == (["align_train_d"], ["align_test_d"])
    assert "Cannot read the training set 'align_train_d'" in caplog.text
