"""Index samplers for training (infinite, seeded, split across processes) and inference
(each process gets a contiguous shard), and a batch sampler that groups indices."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, Sampler

from project.utils import comm


def shared_random_seed() -> int:
    """A random seed, the same in every process (rank 0's)."""
    return int(comm.all_gather(np.random.randint(2**31))[0])


class _InfiniteShardedSampler(Sampler):
    """An endless, seeded stream of epochs (``_epoch_indices``, drawn from one generator
    seeded with ``seed``), of which process ``rank`` of ``world_size`` yields elements rank,
    rank + world_size, ...; without ``seed``, all processes share a random one.

    ``start`` is the number of this process's indices already consumed (e.g. by the run being
    resumed): iteration skips them and continues where that stream left off.
    """

    def __init__(self, shuffle: bool, seed: Optional[int], start: int = 0):
        if start < 0:
            raise ValueError(f"the sampler's start must be >= 0, got {start}")
        self._shuffle = shuffle
        self._seed = int(seed) if seed is not None else shared_random_seed()
        self._rank = comm.get_rank()
        self._world_size = comm.get_world_size()
        self._start = start

    @property
    def start(self) -> int:
        """The number of this process's indices that iteration skips."""
        return self._start

    def __iter__(self) -> Iterator[int]:
        first = self._rank + self._start * self._world_size
        return itertools.islice(self._infinite_indices(), first, None, self._world_size)

    def _infinite_indices(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self._seed)
        while True:
            yield from self._epoch_indices(generator)

    def _epoch_indices(self, generator: torch.Generator) -> Iterable[int]:
        """The indices of one epoch, in order, drawing any randomness from ``generator``."""
        raise NotImplementedError


class TrainingSampler(_InfiniteShardedSampler):
    """An endless stream of dataset indices: with ``shuffle``, one random permutation of
    ``range(size)`` after another (drawn from ``seed``), else 0, 1, ..., size-1 repeated.

    Process ``rank`` of ``world_size`` yields elements rank, rank + world_size, ... of that
    one stream, so the processes together see each epoch exactly once. Without ``seed``, all
    processes share a random one. The first ``start`` indices of this process are skipped.
    """

    def __init__(self, size: int, shuffle: bool = True, seed: Optional[int] = None, start: int = 0):
        if size <= 0:
            raise ValueError(f"TrainingSampler needs a non-empty dataset, got size {size}")
        super().__init__(shuffle, seed, start)
        self._size = size

    def _epoch_indices(self, generator: torch.Generator) -> Iterable[int]:
        if self._shuffle:
            return torch.randperm(self._size, generator=generator).tolist()
        return range(self._size)


class RepeatFactorTrainingSampler(_InfiniteShardedSampler):
    """Like ``TrainingSampler``, but each epoch image i appears ``floor(r_i)`` times plus once
    more with probability ``frac(r_i)``, for per-image repeat factors ``r_i >= 1``
    (e.g. from ``repeat_factors_from_category_frequency``), to see rare classes more often."""

    def __init__(
        self, repeat_factors: torch.Tensor, *, shuffle: bool = True, seed: Optional[int] = None, start: int = 0
    ):
        super().__init__(shuffle, seed, start)
        self._int_part = torch.trunc(repeat_factors)
        self._frac_part = repeat_factors - self._int_part

    @staticmethod
    def repeat_factors_from_category_frequency(
        dataset_dicts: Sequence[Mapping[str, Any]], repeat_thresh: float, sqrt: bool = True
    ) -> torch.Tensor:
        """Per-image repeat factors (float32 tensor): a class seen in a fraction f of the images
        gets ``max(1, sqrt(repeat_thresh / f))`` (without the square root if ``sqrt=False``);
        an image gets the largest factor among its classes (1 with no annotation)."""
        images_with: Dict[int, int] = defaultdict(int)
        classes_of: List[set] = []
        for d in dataset_dicts:
            classes = {a["category_id"] for a in d.get("annotations", [])}
            classes_of.append(classes)
            for c in classes:
                images_with[c] += 1
        num_images = len(dataset_dicts)
        factor = {}
        for c, count in images_with.items():
            ratio = repeat_thresh / (count / num_images)
            factor[c] = max(1.0, math.sqrt(ratio) if sqrt else ratio)
        return torch.tensor(
            [max((factor[c] for c in classes), default=1.0) for classes in classes_of], dtype=torch.float32
        )

    def _epoch_indices(self, generator: torch.Generator) -> Iterable[int]:
        extra = torch.rand(len(self._frac_part), generator=generator) < self._frac_part
        repeats = (self._int_part + extra).to(torch.int64)
        indices = torch.repeat_interleave(torch.arange(len(repeats)), repeats)
        if self._shuffle:
            indices = indices[torch.randperm(len(indices), generator=generator)]
        return indices.tolist()


class InferenceSampler(Sampler):
    """Each process gets one contiguous shard of ``range(size)``, in order; the shards' sizes
    differ by at most one and together cover every index exactly once."""

    def __init__(self, size: int):
        self._size = size
        self._local_indices = self._get_local_indices(size, comm.get_world_size(), comm.get_rank())

    @staticmethod
    def _get_local_indices(size: int, world_size: int, rank: int) -> range:
        base, extra = divmod(size, world_size)
        start = rank * base + min(rank, extra)
        return range(start, start + base + (1 if rank < extra else 0))

    def __iter__(self) -> Iterator[int]:
        return iter(self._local_indices)

    def __len__(self) -> int:
        return len(self._local_indices)


class GroupedBatchSampler(BatchSampler):
    """Batches of ``batch_size`` indices of ``sampler`` that share their group
    (``group_ids[index]``, e.g. landscape or portrait): each index waits in its group's
    buffer until that buffer is full. Its length is unknown (it depends on the order)."""

    def __init__(self, sampler: Sampler, group_ids: Sequence[int], batch_size: int):
        if not isinstance(sampler, Sampler):
            raise ValueError(f"GroupedBatchSampler needs a torch Sampler, got {type(sampler).__name__}")
        self.sampler = sampler
        self.group_ids = np.asarray(group_ids)
        if self.group_ids.ndim != 1:
            raise ValueError(f"group_ids must be one-dimensional, got shape {self.group_ids.shape}")
        self.batch_size = batch_size
        self._buffers: Dict[Any, List[int]] = defaultdict(list)

    def __iter__(self) -> Iterator[List[int]]:
        for index in self.sampler:
            buffer = self._buffers[self.group_ids[index]]
            buffer.append(index)
            if len(buffer) == self.batch_size:
                batch = buffer[:]
                buffer.clear()
                yield batch

    def __len__(self) -> int:
        raise TypeError("GroupedBatchSampler has no length: how many batches it yields depends on the order")
