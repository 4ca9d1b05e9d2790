"""Building the training and inference data loaders from registered datasets."""

from __future__ import annotations

import contextlib
import logging
import random
from collections import Counter
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.utils.data as torchdata
from omegaconf import DictConfig
from tabulate import tabulate

from ..config import configurable
from ..utils import comm
from .bad_input import bad_annotation_policy, describe_counts, skipped_when_loaded
from .catalog import DatasetCatalog, MetadataCatalog
from .common import (
    AspectRatioGroupedDataset,
    BadInputLoader,
    DatasetFromList,
    MapDataset,
    ToIterableDataset,
    loader_bad_input,
)
from .dataset_mapper import build_mapper
from .datasets import register_datasets_from_config
from .samplers import InferenceSampler, RepeatFactorTrainingSampler, TrainingSampler

logger = logging.getLogger(__name__)

SAMPLERS = ("TrainingSampler", "RepeatFactorTrainingSampler")


def print_instances_class_histogram(dataset_dicts: Sequence[Dict[str, Any]], class_names: Sequence[str]) -> None:
    """Log a table of the number of instances of each class."""
    counts = Counter(
        a["category_id"] for d in dataset_dicts for a in d.get("annotations", []) if not a.get("iscrowd", 0)
    )
    rows = [(name, counts.get(i, 0)) for i, name in enumerate(class_names)]
    rows.append(("total", sum(counts.values())))
    logger.info("Instances per class:\n%s", tabulate(rows, headers=["class", "instances"], tablefmt="pipe"))


def _load_datasets(names: Sequence[str], on_bad_annotation: Optional[str]) -> List[Any]:
    """What each registered dataset of ``names`` returns (lists of dicts, or torch datasets),
    loaded under the bad-input policy ``on_bad_annotation`` (the current one when None)."""
    with bad_annotation_policy(on_bad_annotation) if on_bad_annotation else contextlib.nullcontext():
        return [DatasetCatalog.get(name) for name in names]


def get_detection_dataset_dicts(
    names: Union[str, Sequence[str]], filter_empty: bool = True, *, on_bad_annotation: Optional[str] = None
) -> Union[List[Dict[str, Any]], torchdata.Dataset]:
    """The dataset dicts of the registered datasets ``names``, concatenated.

    With ``filter_empty``, images without any non-crowd annotation are dropped (and counted in
    the log). The datasets must share their classes. ``on_bad_annotation`` sets the bad-input
    policy of the loaders that have none of their own. Datasets registered as torch datasets
    (map-style or iterable) are returned as they are (chained when several), unread.
    """
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ValueError("no dataset names given (cfg.DATASETS.TRAIN / TEST is empty?)")
    per_dataset = _load_datasets(names, on_bad_annotation)
    if isinstance(per_dataset[0], torchdata.Dataset):
        return per_dataset[0] if len(per_dataset) == 1 else torchdata.ConcatDataset(per_dataset)
    for name, dicts in zip(names, per_dataset):
        if not dicts:
            raise ValueError(f"dataset '{name}' is empty")
    classes = [MetadataCatalog.get(n).get("thing_classes") for n in names]
    for name, c in zip(names[1:], classes[1:]):
        if c is not None and classes[0] is not None and list(c) != list(classes[0]):
            raise ValueError(f"dataset '{name}' has classes {c}, but '{names[0]}' has {classes[0]}")
    dataset_dicts = [d for dicts in per_dataset for d in dicts]
    if filter_empty:
        before = len(dataset_dicts)
        dataset_dicts = [d for d in dataset_dicts if any(not a.get("iscrowd", 0) for a in d.get("annotations", []))]
        if before != len(dataset_dicts):
            logger.info("Dropped %d of %d images without (non-crowd) annotations", before - len(dataset_dicts), before)
    if classes[0] is not None:
        print_instances_class_histogram(dataset_dicts, classes[0])
    return dataset_dicts


def check_num_classes(cfg: DictConfig, names: Sequence[str]) -> None:
    """Raise when ``cfg.MODEL.ROI_HEADS.NUM_CLASSES`` is smaller than the datasets' number of
    classes (training would fail on their labels); warn when it is larger."""
    classes = MetadataCatalog.get(names[0]).get("thing_classes")
    configured = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if classes is None or configured == len(classes):
        return
    message = (
        f"cfg.MODEL.ROI_HEADS.NUM_CLASSES is {configured} but dataset '{names[0]}' has {len(classes)} "
        f"classes {list(classes)}; set MODEL.ROI_HEADS.NUM_CLASSES={len(classes)}"
    )
    if configured < len(classes):
        raise ValueError(message)
    logger.warning(message)


def trivial_batch_collator(batch: Any) -> Any:
    """The identity: a batch stays a list of dicts (and a single item stays itself)."""
    return batch


def worker_init_reset_seed(worker_id: int) -> None:
    """Seed Python's, NumPy's and torch's generators in a data loader worker from the seed torch
    gave it (distinct per worker, derived from the main process's torch seed)."""
    seed = torch.initial_seed() % 2**31
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _per_process_batch_size(total_batch_size: int) -> int:
    """``total_batch_size`` split evenly over the processes; ``ValueError`` unless it splits."""
    world_size = comm.get_world_size()
    if total_batch_size <= 0 or total_batch_size % world_size:
        raise ValueError(
            f"total batch size {total_batch_size} must be a positive multiple of the {world_size} processes"
        )
    return total_batch_size // world_size


def build_batch_data_loader(
    dataset: torchdata.Dataset,
    sampler: Optional[torchdata.Sampler],
    total_batch_size: Optional[int],
    *,
    aspect_ratio_grouping: bool = False,
    num_workers: int = 0,
    collate_fn: Optional[Callable[[List[Any]], Any]] = None,
    drop_last: bool = True,
    single_gpu_batch_size: Optional[int] = None,
    seed: Optional[int] = None,
    **kwargs: Any,
) -> Iterable:
    """Batches (lists, or what ``collate_fn`` makes of them) of the items of ``dataset``: read in
    ``sampler``'s order for a map-style dataset; an iterable one (``sampler=None``) in its own.

    The batch size per process is ``single_gpu_batch_size``, or ``total_batch_size`` split
    evenly over the processes (give one of the two). With ``aspect_ratio_grouping`` a batch
    holds only landscape or only portrait images (incomplete batches are never yielded);
    otherwise ``drop_last`` drops the last incomplete batch. With several workers, each reads
    the sampler's indices a batch (or, when grouping, an item) at a time in turn, so the
    batches keep the sampler's order. ``seed`` seeds the generator from which the workers'
    seeds are drawn (torch's global one when None) and, over a map-style dataset, the
    generators each worker reseeds before reading an item, from ``seed`` and the item's
    position in the sampler's stream (see ``ToIterableDataset``); ``kwargs`` go to the
    ``DataLoader``.
    """
    if single_gpu_batch_size and total_batch_size:
        raise ValueError("give total_batch_size or single_gpu_batch_size, not both")
    batch_size = single_gpu_batch_size or _per_process_batch_size(total_batch_size)
    if isinstance(dataset, torchdata.IterableDataset):
        if sampler is not None:
            raise ValueError("an iterable dataset has its own order: pass sampler=None")
    else:
        dataset = ToIterableDataset(
            dataset, sampler, shard_chunk_size=1 if aspect_ratio_grouping else batch_size, seed=seed
        )
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    common = {"num_workers": num_workers, "worker_init_fn": worker_init_reset_seed, "generator": generator, **kwargs}
    if not aspect_ratio_grouping:
        return BadInputLoader(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            collate_fn=collate_fn or trivial_batch_collator,
            **common,
        )
    if not drop_last:
        raise ValueError("aspect ratio grouping never yields incomplete batches: it needs drop_last=True")
    batches = AspectRatioGroupedDataset(
        BadInputLoader(dataset, batch_size=None, collate_fn=trivial_batch_collator, **common), batch_size
    )
    return batches if collate_fn is None else MapDataset(batches, collate_fn)


def _train_sampler(cfg: DictConfig, dataset_dicts: Sequence[Dict[str, Any]], start: int) -> torchdata.Sampler:
    """The sampler ``cfg.DATALOADER.SAMPLER_TRAIN`` names, seeded by ``cfg.SEED`` (random
    when negative), its first ``start`` indices skipped."""
    name = cfg.DATALOADER.SAMPLER_TRAIN
    seed = cfg.SEED if cfg.SEED >= 0 else None
    if name == "TrainingSampler":
        return TrainingSampler(len(dataset_dicts), seed=seed, start=start)
    if name == "RepeatFactorTrainingSampler":
        factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
            dataset_dicts, cfg.DATALOADER.REPEAT_THRESHOLD
        )
        return RepeatFactorTrainingSampler(factors, seed=seed, start=start)
    raise ValueError(f"DATALOADER.SAMPLER_TRAIN must be one of {SAMPLERS}, got {name!r}")


def _train_loader_from_config(
    cfg: DictConfig,
    mapper: Optional[Callable[[Dict[str, Any]], Any]] = None,
    *,
    dataset: Optional[Any] = None,
    sampler: Optional[torchdata.Sampler] = None,
    total_batch_size: Optional[int] = None,
    start_batch: int = 0,
) -> Dict[str, Any]:
    """The arguments of ``build_detection_train_loader`` that ``cfg`` implies: it registers
    ``cfg.DATASETS.REGISTER`` and loads ``cfg.DATASETS.TRAIN`` (unless ``dataset`` is given),
    and uses the mapper of ``cfg.INPUT.MAPPER_NAME``, ``cfg.SOLVER.IMS_PER_BATCH``,
    ``cfg.DATALOADER`` and ``cfg.SEED`` (with ``SEED + rank``, when not negative, for the
    workers' augmentations, see ``build_batch_data_loader``). The sampler built here (none
    for an iterable dataset) starts at ``start_batch``."""
    if dataset is None:
        register_datasets_from_config(cfg)
        dataset = get_detection_dataset_dicts(
            list(cfg.DATASETS.TRAIN),
            cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            on_bad_annotation=cfg.DATALOADER.ON_BAD_ANNOTATION,
        )
        check_num_classes(cfg, list(cfg.DATASETS.TRAIN))
    mapper = mapper if mapper is not None else build_mapper(cfg, True)
    total_batch_size = total_batch_size or cfg.SOLVER.IMS_PER_BATCH
    if sampler is None and not isinstance(dataset, torchdata.IterableDataset):
        sampler = _train_sampler(cfg, dataset, start_batch * _per_process_batch_size(total_batch_size))
        start_batch = 0  # the sampler starts there
    return {
        "dataset": dataset,
        "mapper": mapper,
        "sampler": sampler,
        "total_batch_size": total_batch_size,
        "aspect_ratio_grouping": cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
        "start_batch": start_batch,
        "seed": cfg.SEED + comm.get_rank() if cfg.SEED >= 0 else None,
    }


@configurable(from_config=_train_loader_from_config)
def build_detection_train_loader(
    dataset: Union[Sequence[Dict[str, Any]], torchdata.Dataset],
    *,
    mapper: Optional[Callable[[Any], Any]],
    sampler: Optional[torchdata.Sampler] = None,
    total_batch_size: int,
    aspect_ratio_grouping: bool = True,
    num_workers: int = 0,
    collate_fn: Optional[Callable[[List[Any]], Any]] = None,
    start_batch: int = 0,
    **kwargs: Any,
) -> Iterable:
    """An endless iterable of training batches (lists of mapped dicts), ``total_batch_size``
    images split evenly over the processes.

    From plain arguments: ``build_detection_train_loader(dicts, mapper=..., total_batch_size=2)``;
    ``dataset`` is a list of dataset dicts or a torch dataset (map-style, read in the order of
    ``sampler``, by default a ``TrainingSampler``; or iterable, with ``sampler=None``), and
    ``mapper`` (None: none) maps each item. From a config: ``build_detection_train_loader(cfg)``
    (see ``_train_loader_from_config``); arguments given with it replace the config's.
    ``kwargs`` go to ``build_batch_data_loader`` (and on to the ``DataLoader``); workers are
    persistent unless ``persistent_workers=False`` is among them.

    ``start_batch`` is the number of batches a previous run already took from this stream
    (to resume it): the sampler skips their indices. The continuation is exact, batch for
    batch and augmentation for augmentation, with a fixed ``SEED`` (with ``NUM_WORKERS=0`` the
    augmentations draw from the main process's generators, which checkpoints restore; in
    workers, from generators seeded by ``SEED`` and the item's position in the stream) and
    without aspect-ratio grouping, or with it when all images fall in one group; grouping
    otherwise holds images back in its buffers, so a run continues close to, not exactly at,
    where it stopped. It needs the default sampler of a map-style dataset (``sampler=None``).

    Bad input met while mapping: a ``BadAnnotationError`` the mapper raises (the "error"
    policy) is raised as itself by the iteration, also when a worker process met it; what it
    skips it counts in its ``bad_input`` log, which ``loader_bad_input`` finds from the result
    and ``log_training_bad_input`` reports.
    """
    if isinstance(dataset, list):
        dataset = DatasetFromList(dataset, copy=False)
    if mapper is not None:
        dataset = MapDataset(dataset, mapper, pass_errors=True)
    iterable = isinstance(dataset, torchdata.IterableDataset)
    if start_batch and (sampler is not None or iterable):
        raise ValueError(
            "build_detection_train_loader: start_batch needs the default sampler (sampler=None) of a map-style "
            "dataset; start a given sampler itself"
        )
    if sampler is None and not iterable:
        sampler = TrainingSampler(len(dataset), start=start_batch * _per_process_batch_size(total_batch_size))
    kwargs.setdefault("persistent_workers", num_workers > 0)
    return build_batch_data_loader(
        dataset,
        sampler,
        total_batch_size,
        aspect_ratio_grouping=aspect_ratio_grouping,
        num_workers=num_workers,
        collate_fn=collate_fn,
        **kwargs,
    )


def _test_loader_from_config(
    cfg: DictConfig, dataset_name: Union[str, Sequence[str]], mapper: Optional[Callable[[Any], Any]] = None
) -> Dict[str, Any]:
    """The arguments of ``build_detection_test_loader`` for the datasets ``dataset_name``
    (registered from ``cfg.DATASETS.REGISTER`` if needed, nothing filtered), mapped by the
    inference mapper of ``cfg.INPUT.MAPPER_NAME`` unless ``mapper`` is given."""
    register_datasets_from_config(cfg)
    dataset = get_detection_dataset_dicts(
        dataset_name, filter_empty=False, on_bad_annotation=cfg.DATALOADER.ON_BAD_ANNOTATION
    )
    return {
        "dataset": dataset,
        "mapper": mapper if mapper is not None else build_mapper(cfg, False),
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
    }


@configurable(from_config=_test_loader_from_config)
def build_detection_test_loader(
    dataset: Union[Sequence[Dict[str, Any]], torchdata.Dataset],
    *,
    mapper: Optional[Callable[[Any], Any]],
    sampler: Optional[torchdata.Sampler] = None,
    batch_size: int = 1,
    num_workers: int = 0,
    collate_fn: Optional[Callable[[List[Any]], Any]] = None,
) -> torchdata.DataLoader:
    """A loader over every item of ``dataset`` once, in batches (lists) of ``batch_size``
    mapped items, the last one possibly smaller.

    ``dataset`` is a list of dataset dicts or a torch dataset: a map-style one is read in the
    order of ``sampler``, by default an ``InferenceSampler`` (one contiguous shard per
    process); an iterable one (``sampler=None``) in its own. ``mapper`` (None: none) maps each
    item. From a config: ``build_detection_test_loader(cfg, "coco_2017_val")`` (see
    ``_test_loader_from_config``).

    An image the mapper cannot read raises its ``BadAnnotationError`` from the iteration, also
    when a worker process met it (``DatasetMapper`` never skips an image in inference).
    """
    if isinstance(dataset, list):
        dataset = DatasetFromList(dataset, copy=False)
    if mapper is not None:
        dataset = MapDataset(dataset, mapper, pass_errors=True)
    if isinstance(dataset, torchdata.IterableDataset):
        if sampler is not None:
            raise ValueError("an iterable dataset has its own order: pass sampler=None")
    elif sampler is None:
        sampler = InferenceSampler(len(dataset))
    return BadInputLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=False,
        num_workers=num_workers,
        collate_fn=collate_fn or trivial_batch_collator,
    )


def _skipped_when_loaded(dataset_names: Sequence[str]) -> List[str]:
    return [
        f"dataset '{name}' when loaded: {describe_counts(skipped_when_loaded(name))}"
        for name in dataset_names
        if skipped_when_loaded(name)
    ]


def log_training_bad_input(dataset_names: Sequence[str], loader: Iterable) -> None:
    """Log, at the end of training, the bad input that training left out: per dataset of
    ``dataset_names``, the items skipped when it was last loaded, and the images that
    ``loader``'s mapper skipped at run time (unreadable since loading, ...), summed over the
    processes. Every process must call it (it gathers the counts); the main one logs."""
    log = loader_bad_input(loader)
    gathered = comm.gather_to_main_process(log.counts if log is not None else Counter())
    if gathered is None:
        return
    at_run_time = sum(gathered, Counter())
    parts = _skipped_when_loaded(dataset_names)
    if at_run_time:
        parts.append(f"skipped when read during training (each draw counts): {describe_counts(at_run_time)}")
    if not parts:
        logger.info("Training left out no bad input")
        return
    logger.warning("Training left out bad input (ON_BAD_ANNOTATION='skip'): %s", "; ".join(parts))


def log_evaluation_bad_input(dataset_name: str) -> None:
    """Log, next to the results of an evaluation on ``dataset_name``, the items skipped as bad
    input when that dataset was last loaded (evaluation itself skips no image: it stops)."""
    parts = _skipped_when_loaded([dataset_name])
    if parts:
        logger.warning(
            "Evaluation on '%s' left out bad input, on which the model was not run (ON_BAD_ANNOTATION='skip'): %s",
            dataset_name,
            "; ".join(parts),
        )
    else:
        logger.info("Evaluation on '%s' left out no bad input", dataset_name)
