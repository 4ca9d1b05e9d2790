"""Samplers, batching and the train/test loader builders."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from project.config.compose import default_cfg
from project.data import (
    AspectRatioGroupedDataset,
    DatasetCatalog,
    DatasetFromList,
    DatasetMapper,
    InferenceSampler,
    MetadataCatalog,
    RepeatFactorTrainingSampler,
    TrainingSampler,
    build_detection_test_loader,
    build_detection_train_loader,
    load_coco_json,
)
from project.data import transforms as T
from project.utils import comm


def take(iterable, n):
    return list(itertools.islice(iter(iterable), n))


def test_training_sampler_is_seeded_and_covers_each_epoch():
    first = take(TrainingSampler(7, seed=3), 21)
    assert first == take(TrainingSampler(7, seed=3), 21)
    assert first != take(TrainingSampler(7, seed=4), 21)
    for epoch in range(3):
        assert sorted(first[7 * epoch : 7 * epoch + 7]) == list(range(7))
    assert take(TrainingSampler(3, shuffle=False, seed=0), 7) == [0, 1, 2, 0, 1, 2, 0]


def test_training_sampler_splits_one_stream_across_ranks(monkeypatch):
    single = take(TrainingSampler(10, seed=5), 40)
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    shards = []
    for rank in (0, 1):
        monkeypatch.setattr(comm, "get_rank", lambda rank=rank: rank)
        shards.append(take(TrainingSampler(10, seed=5), 20))
    assert [i for pair in zip(*shards) for i in pair] == single


def test_training_samplers_started_later_continue_the_same_stream(monkeypatch):
    factors = torch.tensor([1.0, 1.5, 2.7, 1.0])
    assert take(TrainingSampler(7, seed=3, start=10), 11) == take(TrainingSampler(7, seed=3), 21)[10:]
    assert (
        take(RepeatFactorTrainingSampler(factors, seed=1, start=9), 20)
        == take(RepeatFactorTrainingSampler(factors, seed=1), 29)[9:]
    )
    # ``start`` counts this rank's indices: rank 1 of 2 resumes at its own 6th index.
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "get_rank", lambda: 1)
    assert take(TrainingSampler(10, seed=5, start=6), 8) == take(TrainingSampler(10, seed=5), 14)[6:]
    with pytest.raises(ValueError, match="start"):
        TrainingSampler(10, seed=5, start=-1)


def test_inference_sampler_gives_contiguous_shards(monkeypatch):
    monkeypatch.setattr(comm, "get_world_size", lambda: 3)
    shards = []
    for rank in range(3):
        monkeypatch.setattr(comm, "get_rank", lambda rank=rank: rank)
        shards.append(list(InferenceSampler(10)))
    assert shards == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_repeat_factor_sampler_repeats_images_of_rare_classes():
    dicts = [{"annotations": [{"category_id": 0}]} for _ in range(9)] + [
        {"annotations": [{"category_id": 0}, {"category_id": 1}]}
    ]
    factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(dicts, repeat_thresh=0.5)
    assert torch.allclose(factors[:9], torch.ones(9))
    assert factors[9].item() == pytest.approx(np.sqrt(0.5 / 0.1))
    stream = take(RepeatFactorTrainingSampler(factors, seed=0), 5000)
    counts = np.bincount(stream, minlength=10)
    assert counts[9] / counts[:9].mean() == pytest.approx(np.sqrt(5), rel=0.05)


def test_aspect_ratio_grouping_batches_like_shaped_images():
    shapes = [(30, 60), (60, 30), (40, 50), (50, 40), (20, 80), (90, 10), (10, 90), (70, 20)]
    items = [{"image": torch.zeros(3, h, w)} for h, w in shapes]
    batches = list(AspectRatioGroupedDataset(items, batch_size=2))
    assert len(batches) == 4
    for batch in batches:
        landscape = [d["image"].shape[2] > d["image"].shape[1] for d in batch]
        assert len(batch) == 2 and len(set(landscape)) == 1


def test_dataset_from_list_returns_fresh_copies():
    dataset = DatasetFromList([{"a": [1, 2]}, {"a": [3]}])
    item = dataset[0]
    item["a"].append(99)
    assert dataset[0] == {"a": [1, 2]} and dataset[1] == {"a": [3]} and len(dataset) == 2


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory) -> Path:
    """Six images (four landscape, two portrait), each with one square of class 0 or 1."""
    root = tmp_path_factory.mktemp("tiny_coco")
    images, annotations = [], []
    for i, (h, w) in enumerate([(40, 60), (60, 40), (40, 60), (40, 60), (60, 40), (40, 60)]):
        image = np.zeros((h, w, 3), np.uint8)
        image[5:25, 5:25] = 200
        cv2.imwrite(str(root / f"{i}.png"), image)
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": h, "width": w})
        annotations.append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1 + i % 2,
                "bbox": [5, 5, 20, 20],
                "segmentation": [[5, 5, 25, 5, 25, 25, 5, 25]],
                "iscrowd": 0,
            }
        )
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    (root / "tiny.json").write_text(json.dumps(coco))
    return root


@pytest.fixture
def tiny_cfg(tiny_coco):
    """A config that registers the tiny dataset itself (DATASETS.REGISTER) and trains on it."""
    name = f"tiny_{len(DatasetCatalog)}"
    registration = {
        "NAME": name,
        "FORMAT": "coco",
        "ARGS": {"json_file": str(tiny_coco / "tiny.json"), "image_root": str(tiny_coco)},
    }
    cfg = OmegaConf.merge(default_cfg(), {"DATASETS": {"REGISTER": [registration]}})
    cfg.DATASETS.TRAIN = [name]
    cfg.DATASETS.TEST = [name]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    cfg.INPUT.MIN_SIZE_TRAIN = [40]
    cfg.INPUT.MIN_SIZE_TEST = 40
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SEED = 7
    yield cfg
    DatasetCatalog.pop(name, None)
    MetadataCatalog.pop(name, None)


def test_train_loader_from_config_yields_endless_grouped_batches(tiny_cfg):
    batches = take(build_detection_train_loader(tiny_cfg), 12)  # 24 images from a dataset of 6
    for batch in batches:
        assert len(batch) == 2
        assert len({d["image"].shape[2] > d["image"].shape[1] for d in batch}) == 1
        for d in batch:
            assert d["instances"].gt_classes.tolist()[0] in (0, 1) and min(d["image"].shape[1:]) == 40
    seen = [d["image_id"] for batch in batches for d in batch]
    assert set(seen) == set(range(1, 7))
    again = [d["image_id"] for batch in take(build_detection_train_loader(tiny_cfg), 12) for d in batch]
    assert again == seen  # seeded by cfg.SEED


def _image_ids(batches):
    return [[d["image_id"] for d in batch] for batch in batches]


def test_train_loader_started_at_a_batch_continues_the_stream(tiny_cfg):
    tiny_cfg.DATALOADER.ASPECT_RATIO_GROUPING = False
    ids = _image_ids
    full = ids(take(build_detection_train_loader(tiny_cfg), 7))
    assert ids(take(build_detection_train_loader(tiny_cfg, start_batch=4), 3)) == full[4:]
    with pytest.raises(ValueError, match="start_batch"):
        build_detection_train_loader(tiny_cfg, sampler=TrainingSampler(6, seed=0), start_batch=1)


def test_train_loader_with_workers_augments_differently_per_worker(tiny_coco):
    mapper = DatasetMapper(is_train=True, augmentations=[T.RandomFlip(0.5)], use_instance_mask=True)
    dicts = load_coco_json(str(tiny_coco / "tiny.json"), str(tiny_coco))
    loader = build_detection_train_loader(
        dataset=dicts, mapper=mapper, total_batch_size=2, aspect_ratio_grouping=False, num_workers=2
    )
    batches = take(loader, 20)
    flipped = [bool(d["instances"].gt_boxes.tensor[0, 0] > 10) for batch in batches for d in batch]
    assert all(len(b) == 2 for b in batches) and 0 < sum(flipped) < len(flipped)


def test_test_loader_from_config_maps_every_image_once_in_order(tiny_cfg):
    with pytest.raises(ValueError, match="NUM_CLASSES is 1 but dataset"):
        tiny_cfg.MODEL.ROI_HEADS.NUM_CLASSES = 1
        build_detection_train_loader(tiny_cfg)
    loader = build_detection_test_loader(tiny_cfg, tiny_cfg.DATASETS.TEST[0])
    batches = list(loader)
    assert [b[0]["image_id"] for b in batches] == list(range(1, 7)) and all(len(b) == 1 for b in batches)
    assert all("instances" not in b[0] and min(b[0]["image"].shape[1:]) == 40 for b in batches)
