"""The data-loading building blocks from plain arguments, without a config: datasets,
samplers, batching and the loader builders."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import torch
import torch.utils.data as torchdata

from project.data import (
    DatasetFromList,
    MapDataset,
    ToIterableDataset,
    TrainingSampler,
    build_batch_data_loader,
    build_detection_test_loader,
    build_detection_train_loader,
)
from project.data.common import MappedIterableDataset, set_default_dataset_from_list_serialize_method
from project.data.samplers import GroupedBatchSampler


def take(iterable, n):
    return list(itertools.islice(iter(iterable), n))


class Counting(torchdata.IterableDataset):
    """An endless stream 0, 1, 2, ... that records how far it has been read."""

    def __init__(self):
        self.read = 0

    def __iter__(self):
        for i in itertools.count():
            self.read = i + 1
            yield {"n": i, "height": 2, "width": 3}


def halve_even(x):
    return None if x % 2 else x // 2


def test_dataset_from_list_storage_choices():
    items = [{"a": [1]}, {"a": [2]}]
    plain = DatasetFromList(items, copy=False, serialize=False)
    assert plain[0] is items[0]
    copied = DatasetFromList(items, serialize=False)
    assert copied[0] == items[0] and copied[0] is not items[0]
    assert DatasetFromList([1, 2, 3], serialize=torch.tensor)[2] == torch.tensor(3)
    with set_default_dataset_from_list_serialize_method(torch.tensor):
        assert isinstance(DatasetFromList([1, 2], serialize=True)[1], torch.Tensor)
    assert DatasetFromList([1, 2], serialize=True)[1] == 2
    with pytest.raises(TypeError, match="serialize"):
        DatasetFromList([1], serialize="yes")


def test_map_dataset_over_an_iterable_dataset_is_iterable_and_drops_none():
    mapped = MapDataset(Counting(), lambda d: halve_even(d["n"]))
    assert isinstance(mapped, MappedIterableDataset) and isinstance(mapped, torchdata.IterableDataset)
    assert take(mapped, 4) == [0, 1, 2, 3]


def test_map_dataset_with_a_lambda_pickles():
    mapped = MapDataset(DatasetFromList([1, 2, 3]), lambda x: x * 10)
    restored = pickle.loads(pickle.dumps(mapped))
    assert [restored[i] for i in range(3)] == [10, 20, 30] and len(restored) == 3
    by_name = pickle.loads(pickle.dumps(MapDataset(DatasetFromList([4]), halve_even)))
    assert by_name._map_func is halve_even


def test_to_iterable_dataset_has_the_samplers_length_and_order():
    stream = ToIterableDataset(DatasetFromList(list("abcde")), [4, 0, 2])
    assert len(stream) == 3 and list(stream) == ["e", "a", "c"]
    with pytest.raises(TypeError, match="map-style"):
        ToIterableDataset(Counting(), [0])


def test_grouped_batch_sampler_batches_within_groups():
    sampler = torchdata.SequentialSampler(range(8))
    batches = list(GroupedBatchSampler(sampler, [0, 1, 0, 1, 1, 0, 1, 0], batch_size=2))
    assert batches == [[0, 2], [1, 3], [4, 6], [5, 7]]
    with pytest.raises(ValueError, match="Sampler"):
        GroupedBatchSampler(range(8), [0] * 8, 2)
    with pytest.raises(TypeError, match="length"):
        len(GroupedBatchSampler(sampler, [0] * 8, 2))


def test_batch_data_loader_from_plain_arguments():
    dataset = DatasetFromList([{"n": i, "height": 2, "width": 3 if i % 3 else 1} for i in range(9)])
    plain = build_batch_data_loader(dataset, torchdata.SequentialSampler(dataset), 2)
    assert [[d["n"] for d in b] for b in plain] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    kept = build_batch_data_loader(dataset, torchdata.SequentialSampler(dataset), 2, drop_last=False)
    assert len(list(kept)[-1]) == 1
    grouped = build_batch_data_loader(dataset, TrainingSampler(9, shuffle=False), 2, aspect_ratio_grouping=True)
    for batch in take(grouped, 6):
        assert len({d["width"] > d["height"] for d in batch}) == 1
    collated = build_batch_data_loader(dataset, torchdata.SequentialSampler(dataset), None, single_gpu_batch_size=3)
    assert [len(b) for b in collated] == [3, 3, 3]
    with pytest.raises(ValueError, match="not both"):
        build_batch_data_loader(dataset, None, 2, single_gpu_batch_size=2)


def test_train_loader_over_an_iterable_dataset_reads_it_as_needed():
    source = Counting()
    loader = build_detection_train_loader(source, mapper=None, total_batch_size=2, aspect_ratio_grouping=False)
    assert [[d["n"] for d in b] for b in take(loader, 2)] == [[0, 1], [2, 3]]
    assert source.read <= 4
    with pytest.raises(ValueError, match="sampler=None"):
        build_detection_train_loader(source, mapper=None, sampler=TrainingSampler(3), total_batch_size=2)


def test_test_loader_takes_a_sampler():
    dicts = [{"n": i} for i in range(5)]
    loader = build_detection_test_loader(dicts, mapper=lambda d: d["n"], sampler=[3, 1], batch_size=2)
    assert list(loader) == [[3, 1]]
    assert list(build_detection_test_loader(dicts, mapper=None)) == [[d] for d in dicts]
    assert np.array_equal([b[0] for b in build_detection_test_loader(dicts, mapper=lambda d: d["n"])], range(5))
