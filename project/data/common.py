"""Dataset wrappers between the list of dataset dicts and the torch ``DataLoader``."""

from __future__ import annotations

import itertools
import logging
import pickle
import random
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import torch.utils.data as data

from .bad_input import BadAnnotationError, BadInputLog

logger = logging.getLogger(__name__)


class DatasetFromList(data.Dataset):
    """A list as a torch map-style dataset. With ``serialize`` (default) the items are pickled
    into one numpy byte buffer: data loader workers then share it without the copy-on-access
    memory growth that millions of Python objects cause, and every access returns a fresh
    copy that the caller may modify."""

    def __init__(self, items: Sequence[Any], serialize: bool = True):
        self._serialize = serialize
        if serialize:
            blobs = [np.frombuffer(pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8) for x in items]
            self._ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
            self._buffer = np.concatenate(blobs) if blobs else np.zeros(0, dtype=np.uint8)
            logger.info("Serialized %d dataset dicts into %.2f MiB", len(blobs), self._buffer.nbytes / 2**20)
        else:
            self._items = list(items)

    def __len__(self) -> int:
        return len(self._ends) if self._serialize else len(self._items)

    def __getitem__(self, index: int) -> Any:
        if not self._serialize:
            return self._items[index]
        start = 0 if index == 0 else int(self._ends[index - 1])
        return pickle.loads(memoryview(self._buffer[start : int(self._ends[index])]))


class MapDataset(data.Dataset):
    """``map_func`` applied to each item of a map-style dataset. When it returns None (an item
    it skips, e.g. an unreadable image), another random index is tried instead.

    With ``pass_errors``, a ``BadAnnotationError`` that ``map_func`` raises is returned as the
    item instead: a data loader worker then hands it over as data, and the loaders of
    ``project.data.build`` raise it in the process that iterates them (raised in the worker,
    it would reach that process as a RuntimeError wrapping the worker's traceback)."""

    def __init__(self, dataset: data.Dataset, map_func: Callable[[Any], Optional[Any]], *, pass_errors: bool = False):
        self._dataset = dataset
        self._map_func = map_func
        self._pass_errors = pass_errors
        self._rng = random.Random(42)

    def __len__(self) -> int:
        return len(self._dataset)

    def _map(self, item: Any) -> Any:
        try:
            return self._map_func(item)
        except BadAnnotationError as error:
            if self._pass_errors:
                return error
            raise

    def __getitem__(self, index: int) -> Any:
        for attempt in range(1, 101):
            result = self._map(self._dataset[index])
            if result is not None:
                return result
            if attempt == 3:
                logger.warning("mapping dataset item %d failed %d times; trying other items", index, attempt)
            index = self._rng.randrange(len(self._dataset))
        raise RuntimeError("the mapper returned None for 100 items in a row; is every image unreadable?")


class ToIterableDataset(data.IterableDataset):
    """A map-style dataset read in the order of ``sampler``; in a DataLoader with several
    workers, worker k of n takes every n-th index from the k-th on."""

    def __init__(self, dataset: data.Dataset, sampler: Iterable[int]):
        self.dataset = dataset
        self.sampler = sampler

    def __iter__(self) -> Iterator[Any]:
        info = data.get_worker_info()
        indices: Iterable[int] = self.sampler
        if info is not None and info.num_workers > 1:
            indices = itertools.islice(self.sampler, info.id, None, info.num_workers)
        for index in indices:
            yield self.dataset[index]


class AspectRatioGroupedDataset(data.IterableDataset):
    """Batches of ``batch_size`` mapped dicts whose images are all landscape (width > height)
    or all portrait, so that padding a batch to one size wastes little."""

    def __init__(self, dataset: Iterable[Dict[str, Any]], batch_size: int):
        self.dataset = dataset
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[List[Dict[str, Any]]]:
        buckets: List[List[Dict[str, Any]]] = [[], []]
        for d in self.dataset:
            height, width = d["image"].shape[-2:] if "image" in d else (d["height"], d["width"])
            bucket = buckets[0 if width > height else 1]
            bucket.append(d)
            if len(bucket) == self.batch_size:
                yield bucket[:]
                bucket.clear()


class _ErrorPassingCollate:
    """``collate`` applied to a batch (or, with ``batch_size=None``, to one item), unless a
    ``BadAnnotationError`` is among the items: that error is then the batch."""

    def __init__(self, collate: Callable[[Any], Any]):
        self.collate = collate

    def __call__(self, batch: Any) -> Any:
        items = batch if isinstance(batch, list) else [batch]
        error = next((item for item in items if isinstance(item, BadAnnotationError)), None)
        return error if error is not None else self.collate(batch)


class BadInputLoader(data.DataLoader):
    """The ``DataLoader`` of ``project.data.build``'s loaders. Over a ``MapDataset(pass_errors=True)``
    (or a stream of one) it raises the ``BadAnnotationError`` that the mapper met in the process
    iterating it, also when a worker process met it; ``bad_input`` is the mapper's log (None
    when it has none)."""

    def __init__(
        self, dataset: Any, *, collate_fn: Callable[[Any], Any], bad_input: Optional[BadInputLog], **kwargs: Any
    ):
        super().__init__(dataset, collate_fn=_ErrorPassingCollate(collate_fn), **kwargs)
        self.bad_input = bad_input

    def __iter__(self) -> Iterator[Any]:
        for batch in super().__iter__():
            if isinstance(batch, BadAnnotationError):
                raise batch
            yield batch


class CollatedBatches:
    """``collate_fn`` applied to every batch of ``dataset``, an iterable of batches (unlike
    ``map``, it can be iterated again)."""

    def __init__(self, dataset: Iterable[Any], collate_fn: Callable[[Any], Any]):
        self.dataset = dataset
        self.collate_fn = collate_fn

    def __iter__(self) -> Iterator[Any]:
        return map(self.collate_fn, self.dataset)


def loader_bad_input(loader: Iterable) -> Optional[BadInputLog]:
    """The ``bad_input`` log of the ``BadInputLoader`` that ``loader`` is or wraps (through
    ``dataset`` attributes, as the loaders of ``project.data.build`` do); None for other
    iterables."""
    while loader is not None and not isinstance(loader, BadInputLoader):
        loader = getattr(loader, "dataset", None)
    return loader.bad_input if loader is not None else None
