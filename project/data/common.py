"""Dataset wrappers between the list of dataset dicts and the torch ``DataLoader``."""

from __future__ import annotations

import contextlib
import copy as copying
import inspect
import itertools
import logging
import pickle
import random
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.utils.data as data

from .bad_input import BadAnnotationError, BadInputLog

logger = logging.getLogger(__name__)


class PickledList:
    """A list stored as its items pickled into one numpy byte buffer: data loader workers share
    it without the copy-on-access memory growth that millions of Python objects cause, and
    every access returns a fresh copy that the caller may modify."""

    def __init__(self, items: Sequence[Any]):
        blobs = [np.frombuffer(pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8) for x in items]
        self._ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
        self._buffer = np.concatenate(blobs) if blobs else np.zeros(0, dtype=np.uint8)
        logger.info("Serialized %d dataset dicts into %.2f MiB", len(blobs), self._buffer.nbytes / 2**20)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> Any:
        start = 0 if index == 0 else int(self._ends[index - 1])
        return pickle.loads(memoryview(self._buffer[start : int(self._ends[index])]))


_default_serialize_method: Callable[[List[Any]], Sequence[Any]] = PickledList


@contextlib.contextmanager
def set_default_dataset_from_list_serialize_method(method: Callable[[List[Any]], Sequence[Any]]) -> Iterator[None]:
    """Within the ``with`` block, ``DatasetFromList(..., serialize=True)`` stores its list as
    ``method(list)`` (an indexable of the same length) instead of a ``PickledList``."""
    global _default_serialize_method
    previous, _default_serialize_method = _default_serialize_method, method
    try:
        yield
    finally:
        _default_serialize_method = previous


class DatasetFromList(data.Dataset):
    """A list as a torch map-style dataset.

    ``serialize``: True (default) stores the list as the default serialize method makes it (a
    ``PickledList``, whose accesses return fresh copies); a callable stores it as
    ``serialize(list)``; False keeps the list itself, and then ``copy`` (default) makes every
    access return a deep copy, so that callers may modify what they get.
    """

    def __init__(
        self, lst: Sequence[Any], copy: bool = True, serialize: Union[bool, Callable[[List[Any]], Sequence[Any]]] = True
    ):
        if not isinstance(serialize, bool) and not callable(serialize):
            raise TypeError(f"serialize must be a bool or a callable, got {type(serialize).__name__}")
        self._copy = copy and serialize is False
        if serialize is False:
            self._items: Sequence[Any] = lst
        else:
            method = serialize if callable(serialize) else _default_serialize_method
            self._items = method(list(lst))

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Any:
        item = self._items[index]
        return copying.deepcopy(item) if self._copy else item


def _needs_pickling_by_value(func: Any) -> bool:
    """Whether pickle cannot store ``func`` by its module and name (a lambda or a function
    defined inside another)."""
    return inspect.isfunction(func) and "<" in func.__qualname__


class _ByValue:
    """A function that pickles with its code (cloudpickle), for the functions that pickle
    cannot store by name; unpickling gives back the function itself."""

    def __init__(self, func: Callable[..., Any]):
        self.func = func

    def __reduce__(self):
        import cloudpickle  # only needed when such a function is pickled

        return cloudpickle.loads, (cloudpickle.dumps(self.func),)


class _Mapping:
    """What map-style and iterable mapped datasets share: applying the map function (with
    ``pass_errors``, a ``BadAnnotationError`` it raises becomes the result), its bad-input
    log, and pickling a lambda or local map function by value."""

    def __init__(self, dataset: Any, map_func: Callable[[Any], Optional[Any]], *, pass_errors: bool = False):
        self.dataset = dataset
        self._map_func = map_func
        self._pass_errors = pass_errors

    def __len__(self) -> int:
        """The length of the underlying dataset (for an iterable one, counting the items left out too)."""
        return len(self.dataset)

    def _map(self, item: Any) -> Any:
        try:
            return self._map_func(item)
        except BadAnnotationError as error:
            if self._pass_errors:
                return error
            raise

    @property
    def bad_input(self) -> Optional[BadInputLog]:
        """The map function's ``bad_input`` log (a ``DatasetMapper``'s); None when it has none."""
        log = getattr(self._map_func, "bad_input", None)
        return log if isinstance(log, BadInputLog) else None

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(vars(self))
        if _needs_pickling_by_value(self._map_func):
            state["_map_func"] = _ByValue(self._map_func)
        return state


class MapDataset(_Mapping, data.Dataset):
    """``map_func`` applied to each item of a dataset.

    Over a map-style dataset: when ``map_func`` returns None (an item it skips, e.g. an
    unreadable image), another random index is tried instead. Over an iterable dataset, the
    result is an iterable dataset (a ``MappedIterableDataset``) that leaves such items out.

    With ``pass_errors``, a ``BadAnnotationError`` that ``map_func`` raises is returned as the
    item instead: a data loader worker then hands it over as data, and the loaders of
    ``project.data.build`` raise it in the process that iterates them (raised in the worker,
    it would reach that process as a RuntimeError wrapping the worker's traceback).

    It pickles also with a lambda or a local function as ``map_func`` (stored by value).
    """

    def __new__(cls, dataset: Any = None, *args: Any, **kwargs: Any) -> Any:
        if isinstance(dataset, data.IterableDataset):
            return MappedIterableDataset(dataset, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, dataset: data.Dataset, map_func: Callable[[Any], Optional[Any]], *, pass_errors: bool = False):
        super().__init__(dataset, map_func, pass_errors=pass_errors)
        self._rng = random.Random(42)

    def __getitem__(self, index: int) -> Any:
        for attempt in range(1, 101):
            result = self._map(self.dataset[index])
            if result is not None:
                return result
            if attempt == 3:
                logger.warning("mapping dataset item %d failed %d times; trying other items", index, attempt)
            index = self._rng.randrange(len(self.dataset))
        raise RuntimeError("the mapper returned None for 100 items in a row; is every image unreadable?")


class MappedIterableDataset(_Mapping, data.IterableDataset):
    """``map_func`` applied to each item of an iterable dataset, in order, leaving out the
    items it maps to None (see ``MapDataset``, which builds it)."""

    def __iter__(self) -> Iterator[Any]:
        for item in self.dataset:
            result = self._map(item)
            if result is not None:
                yield result


def _this_workers_share(indices: Iterable[Any], chunk_size: int) -> Iterator[Any]:
    """``indices`` cut into chunks of ``chunk_size``; in a DataLoader with n > 1 workers,
    worker k keeps chunks k, k + n, k + 2n, ... (so the workers' outputs, taken in turn,
    restore the order when each worker yields a chunk at a time); elsewhere all of them."""
    info = data.get_worker_info()
    if info is None or info.num_workers == 1:
        yield from indices
        return
    for position, index in enumerate(indices):
        if (position // chunk_size) % info.num_workers == info.id:
            yield index


def _seed_generators_for_item(*entropy: int) -> None:
    """Seed Python's, NumPy's and torch's global generators from ``entropy`` alone."""
    low, high = np.random.SeedSequence([x % 2**64 for x in entropy]).generate_state(2, np.uint32).tolist()
    random.seed(low | high << 32)
    np.random.seed(low)
    torch.manual_seed(low | high << 32)


class ToIterableDataset(data.IterableDataset):
    """A map-style dataset read in the order of ``sampler``.

    With ``shard_sampler`` (default), in a DataLoader with n > 1 workers, worker k reads the
    k-th, (k + n)-th, ... chunk of ``shard_chunk_size`` indices; pass False for a sampler that
    already gives each worker its own indices. Its length is the sampler's.

    With ``seed``, a worker process seeds Python's, NumPy's and torch's global generators
    before reading each item, from ``seed`` and the item's position in the sampler's stream
    (counted from the sampler's ``start`` where it has one; without ``shard_sampler``, from
    the worker's id too): an item's random augmentations then depend on where it is in the
    stream, not on which worker reads it or on what that worker read before, so a resumed
    stream (the same sampler with a later ``start``) draws them as the first run did. Read
    without workers, items draw from the process's own generators, which checkpoints restore.
    """

    def __init__(
        self,
        dataset: data.Dataset,
        sampler: Iterable[int],
        shard_sampler: bool = True,
        shard_chunk_size: int = 1,
        *,
        seed: Optional[int] = None,
    ):
        if isinstance(dataset, data.IterableDataset):
            raise TypeError("ToIterableDataset takes a map-style dataset; this one is iterable already")
        self.dataset = dataset
        self.sampler = sampler
        self.shard_sampler = shard_sampler
        self.shard_chunk_size = shard_chunk_size
        self.seed = seed

    def __iter__(self) -> Iterator[Any]:
        items = zip(itertools.count(getattr(self.sampler, "start", 0)), self.sampler)
        if self.shard_sampler:
            items = _this_workers_share(items, self.shard_chunk_size)
        worker = data.get_worker_info()
        for position, index in items:
            if self.seed is not None and worker is not None:
                _seed_generators_for_item(self.seed, position, *(() if self.shard_sampler else (worker.id,)))
            yield self.dataset[index]

    def __len__(self) -> int:
        return len(self.sampler)


class AspectRatioGroupedDataset(data.IterableDataset):
    """Batches of ``batch_size`` mapped dicts whose images are all landscape (width > height)
    or all portrait, so that padding a batch to one size wastes little. An image's shape is
    its ``image`` tensor's when present, else its ``height`` and ``width``. Dicts not yet
    batched wait in ``_buckets`` for the next iteration."""

    def __init__(self, dataset: Iterable[Dict[str, Any]], batch_size: int):
        self.dataset = dataset
        self.batch_size = batch_size
        self._buckets: List[List[Dict[str, Any]]] = [[], []]

    def __iter__(self) -> Iterator[List[Dict[str, Any]]]:
        for d in self.dataset:
            height, width = d["image"].shape[-2:] if "image" in d else (d["height"], d["width"])
            bucket = self._buckets[0 if width > height else 1]
            bucket.append(d)
            if len(bucket) == self.batch_size:
                batch = bucket[:]
                bucket.clear()  # before yielding: the consumer may never resume this generator
                yield batch


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
    iterating it, also when a worker process met it."""

    def __init__(self, dataset: Any, *, collate_fn: Callable[[Any], Any], **kwargs: Any):
        super().__init__(dataset, collate_fn=_ErrorPassingCollate(collate_fn), **kwargs)

    def __iter__(self) -> Iterator[Any]:
        for batch in super().__iter__():
            if isinstance(batch, BadAnnotationError):
                raise batch
            yield batch


def loader_bad_input(loader: Iterable) -> Optional[BadInputLog]:
    """The ``bad_input`` log of the mapper under ``loader``, found by following ``dataset``
    attributes (of the loaders and datasets of ``project.data.build``) down to a mapped
    dataset whose map function has one; None when there is none."""
    node: Any = loader
    while node is not None:
        log = getattr(node, "bad_input", None)
        if isinstance(log, BadInputLog):
            return log
        node = getattr(node, "dataset", None)
    return None
