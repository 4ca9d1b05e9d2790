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

from project.utils import comm

from .bad_input import BadInputLog, bad_annotation_policy, describe_counts, skipped_when_loaded
from .catalog import DatasetCatalog, MetadataCatalog
from .common import (
    AspectRatioGroupedDataset,
    BadInputLoader,
    CollatedBatches,
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


def get_detection_dataset_dicts(
    names: Union[str, Sequence[str]], filter_empty: bool = True, *, on_bad_annotation: Optional[str] = None
) -> List[Dict[str, Any]]:
    """The dataset dicts of the registered datasets ``names``, concatenated.

    With ``filter_empty``, images without any non-crowd annotation are dropped (and counted in
    the log). The datasets must share their classes. ``on_bad_annotation`` sets the bad-input
    policy of the loaders that have none of their own.
    """
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ValueError("no dataset names given (cfg.DATASETS.TRAIN / TEST is empty?)")
    with bad_annotation_policy(on_bad_annotation) if on_bad_annotation else contextlib.nullcontext():
        per_dataset = [DatasetCatalog.get(name) for name in names]
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


def _train_sampler(cfg: DictConfig, dataset_dicts: Sequence[Dict[str, Any]], start: int):
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


def _mapper_bad_input(mapper: Any) -> Optional[BadInputLog]:
    log = getattr(mapper, "bad_input", None)
    return log if isinstance(log, BadInputLog) else None


def build_detection_train_loader(
    cfg: Optional[DictConfig] = None,
    mapper: Optional[Callable[[Dict[str, Any]], Any]] = None,
    *,
    dataset: Optional[Union[Sequence[Dict[str, Any]], torchdata.Dataset]] = None,
    sampler: Optional[torchdata.Sampler] = None,
    total_batch_size: Optional[int] = None,
    aspect_ratio_grouping: Optional[bool] = None,
    num_workers: Optional[int] = None,
    collate_fn: Optional[Callable[[List[Any]], Any]] = None,
    start_batch: int = 0,
) -> Iterable:
    """An endless iterable of training batches (lists of mapped dicts), ``total_batch_size``
    images split evenly over the processes.

    From a config: ``build_detection_train_loader(cfg)`` registers ``cfg.DATASETS.REGISTER``,
    loads ``cfg.DATASETS.TRAIN`` and uses the mapper of ``cfg.INPUT.MAPPER_NAME``,
    ``cfg.SOLVER.IMS_PER_BATCH``, ``cfg.DATALOADER`` and ``cfg.SEED``. From explicit arguments:
    ``build_detection_train_loader(dataset=dicts, mapper=..., total_batch_size=...)``;
    explicit arguments override the config's.

    ``start_batch`` is the number of batches a previous run already took from this stream
    (to resume it): the sampler skips their indices. The continuation is exact, batch for
    batch and augmentation for augmentation, with a fixed ``SEED``, ``NUM_WORKERS=0`` (the
    augmentations then draw from the main process's generators, which checkpoints restore)
    and without aspect-ratio grouping, or with it when all images fall in one group; grouping
    otherwise holds images back in its buffers, so a run continues close to, not exactly at,
    where it stopped. It needs the sampler built here (``sampler=None``).

    Bad input met while mapping: a ``BadAnnotationError`` the mapper raises (the "error"
    policy) is raised as itself by the iteration, also when a worker process met it; what it
    skips it counts in its ``bad_input`` log, which ``loader_bad_input`` finds from the result
    and ``log_training_bad_input`` reports.
    """
    if sampler is not None and start_batch:
        raise ValueError("build_detection_train_loader: start_batch needs sampler=None; start the given sampler itself")
    if cfg is not None:
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
        aspect_ratio_grouping = (
            cfg.DATALOADER.ASPECT_RATIO_GROUPING if aspect_ratio_grouping is None else aspect_ratio_grouping
        )
        num_workers = cfg.DATALOADER.NUM_WORKERS if num_workers is None else num_workers
    if dataset is None or mapper is None or total_batch_size is None:
        raise ValueError("build_detection_train_loader needs a cfg, or dataset, mapper and total_batch_size")
    world_size = comm.get_world_size()
    if total_batch_size <= 0 or total_batch_size % world_size:
        raise ValueError(
            f"total batch size {total_batch_size} must be a positive multiple of the {world_size} processes"
        )
    batch_size = total_batch_size // world_size
    if aspect_ratio_grouping is None:
        aspect_ratio_grouping = True
    if sampler is None:
        start = start_batch * batch_size
        sampler = _train_sampler(cfg, dataset, start) if cfg is not None else TrainingSampler(len(dataset), start=start)
    if isinstance(dataset, list):
        dataset = DatasetFromList(dataset)
    stream = ToIterableDataset(MapDataset(dataset, mapper, pass_errors=True), sampler)
    num_workers = num_workers or 0
    common = {
        "num_workers": num_workers,
        "worker_init_fn": worker_init_reset_seed,
        "persistent_workers": num_workers > 0,
        "bad_input": _mapper_bad_input(mapper),
    }
    if aspect_ratio_grouping:
        loader = BadInputLoader(stream, batch_size=None, collate_fn=trivial_batch_collator, **common)
        batches = AspectRatioGroupedDataset(loader, batch_size)
        return batches if collate_fn is None else CollatedBatches(batches, collate_fn)
    return BadInputLoader(
        stream, batch_size=batch_size, drop_last=True, collate_fn=collate_fn or trivial_batch_collator, **common
    )


def build_detection_test_loader(
    cfg: Optional[DictConfig] = None,
    dataset_name: Optional[Union[str, Sequence[str]]] = None,
    mapper: Optional[Callable[[Dict[str, Any]], Any]] = None,
    *,
    dataset: Optional[Union[Sequence[Dict[str, Any]], torchdata.Dataset]] = None,
    batch_size: int = 1,
    num_workers: Optional[int] = None,
    collate_fn: Optional[Callable[[List[Any]], Any]] = None,
) -> torchdata.DataLoader:
    """A loader over every image of a dataset once, in order, split into one contiguous shard
    per process (``InferenceSampler``), in batches (lists) of ``batch_size`` mapped dicts.

    From a config: ``build_detection_test_loader(cfg, "coco_2017_val")`` (nothing filtered,
    the inference mapper of ``cfg.INPUT.MAPPER_NAME``). From explicit arguments:
    ``build_detection_test_loader(dataset=dicts, mapper=...)``.

    An image the mapper cannot read raises its ``BadAnnotationError`` from the iteration, also
    when a worker process met it (``DatasetMapper`` never skips an image in inference).
    """
    if cfg is not None:
        if dataset is None:
            if dataset_name is None:
                raise ValueError("build_detection_test_loader(cfg, dataset_name): dataset_name is missing")
            register_datasets_from_config(cfg)
            dataset = get_detection_dataset_dicts(
                dataset_name, filter_empty=False, on_bad_annotation=cfg.DATALOADER.ON_BAD_ANNOTATION
            )
        mapper = mapper if mapper is not None else build_mapper(cfg, False)
        num_workers = cfg.DATALOADER.NUM_WORKERS if num_workers is None else num_workers
    if dataset is None or mapper is None:
        raise ValueError("build_detection_test_loader needs a cfg and a dataset name, or dataset and mapper")
    if isinstance(dataset, list):
        dataset = DatasetFromList(dataset)
    return BadInputLoader(
        MapDataset(dataset, mapper, pass_errors=True),
        batch_size=batch_size,
        sampler=InferenceSampler(len(dataset)),
        num_workers=num_workers or 0,
        collate_fn=collate_fn or trivial_batch_collator,
        bad_input=_mapper_bad_input(mapper),
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
