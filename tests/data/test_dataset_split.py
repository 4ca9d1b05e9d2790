"""Holding out part of a one-folder dataset by file-name hash (project.data.datasets.split), from
the config (DATASETS.REGISTER[i].SPLIT) and from Python."""

from __future__ import annotations

import pytest
from conftest import require_dataset

from project.data import DatasetCatalog
from project.data.datasets import register_datasets_from_config
from project.data.datasets.split import file_name_fraction, select_split
from project.engine.cli import load_config


def _dicts(names):
    return [{"file_name": f"/some/folder/{n}", "image_id": i} for i, n in enumerate(names)]


def test_split_is_a_partition_stable_under_order_and_additions():
    names = [f"img_{i:04d}.png" for i in range(2000)]
    train = select_split(_dicts(names), "train", 0.3)
    val = select_split(_dicts(names), "val", 0.3)
    train_names = {d["file_name"] for d in train}
    val_names = {d["file_name"] for d in val}
    assert not train_names & val_names
    assert len(train_names) + len(val_names) == len(names)
    assert abs(len(val) / len(names) - 0.3) < 0.04  # a hash spreads evenly
    # Reversed order and 500 more images: every image keeps its side.
    more = list(reversed(names)) + [f"new_{i}.png" for i in range(500)]
    val_more = {d["file_name"] for d in select_split(_dicts(more), "val", 0.3)}
    assert val_names <= val_more
    assert not (train_names & val_more)
    # Only the base name counts: the same file under another folder lands on the same side.
    assert file_name_fraction("/a/img_0001.png") == file_name_fraction("/b/c/img_0001.png")
    assert select_split(_dicts(names), "all", 0.3) == _dicts(names)


@pytest.mark.parametrize("part, fraction", [("test", 0.2), ("val", 0.0), ("train", 1.0)])
def test_bad_split_settings_are_named(part, fraction):
    with pytest.raises(ValueError, match="split part|fraction"):
        select_split(_dicts(["a.png"]), part, fraction)


def test_pennfudan_experiment_registers_disjoint_train_and_val(data_root):
    require_dataset(data_root, "pennfudan")
    cfg = load_config(["+experiment=finetune_pennfudan"])
    for name in ("pennfudan_train", "pennfudan_val"):
        DatasetCatalog.pop(name, None)
    try:
        register_datasets_from_config(cfg)
        train = DatasetCatalog.get("pennfudan_train")
        val = DatasetCatalog.get("pennfudan_val")
    finally:
        for name in ("pennfudan_train", "pennfudan_val"):
            DatasetCatalog.pop(name, None)
    assert len(train) + len(val) == len(list((data_root / "pennfudan" / "PNGImages").glob("*.png")))
    assert not {d["file_name"] for d in train} & {d["file_name"] for d in val}
    assert not {d["image_id"] for d in train} & {d["image_id"] for d in val}
    assert 0.15 < len(val) / (len(train) + len(val)) < 0.35
    assert all(a["category_id"] == 0 for d in train + val for a in d["annotations"])
