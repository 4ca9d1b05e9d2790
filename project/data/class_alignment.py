"""One class numbering for every dataset of a run: the first training set's.

Each loader numbers the classes of its own dataset: COCO files in category-id order, LabelMe
folders and VIA files in the sorted order of the labels found in them. So a test set whose
classes are the training classes in another order, or only some of them (a LabelMe folder with
no instance of one class), gets other class indices than the model was trained with, and would
be scored against the wrong classes without any error.

:func:`align_to_training_classes` compares the classes of every dataset with those of the first
training set, by name, before anything else is done:

* the same classes in the same order: the dataset is used as it is;
* only training classes, in another order or some of them: the dataset is used through an
  aligned view, registered as ``<name>@training_classes``, whose dataset dicts and metadata
  number the classes like the training set (its category ids stay those of its files), and the
  mapping is logged. Training classes absent from it have no ground truth there, so COCO AP
  leaves them out of its mean;
* a class the first training set lacks: :class:`ClassSetMismatchError`, showing both lists.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

from omegaconf import DictConfig

from .bad_input import bad_annotation_policy
from .catalog import DatasetCatalog, MetadataCatalog
from .datasets import register_datasets_from_config
from .datasets.metadata import default_thing_colors

logger = logging.getLogger(__name__)

ALIGNED_SUFFIX = "@training_classes"
# Metadata an aligned view does not copy from its dataset: it describes the classes differently.
_CLASS_KEYS = ("name", "thing_classes", "thing_colors", "thing_dataset_id_to_contiguous_id")


class ClassSetMismatchError(ValueError):
    """A dataset has a class that the first training set lacks: the model cannot predict it,
    and class indices cannot be matched between the datasets."""


def dataset_classes(name: str, on_bad_annotation: Optional[str] = None) -> Optional[List[str]]:
    """The ``thing_classes`` of the registered dataset ``name``, or None if it has none.

    Most loaders record the classes only while loading, so a dataset whose metadata has none
    yet is loaded once (under the bad-annotation policy ``on_bad_annotation``, if given).
    """
    metadata = MetadataCatalog.get(name)
    if metadata.get("thing_classes") is None:
        logger.info("Reading dataset '%s' to learn its classes", name)
        with bad_annotation_policy(on_bad_annotation) if on_bad_annotation else contextlib.nullcontext():
            DatasetCatalog.get(name)
    classes = metadata.get("thing_classes")
    return None if classes is None else list(classes)


def _check_subset(name: str, role: str, classes: List[str], reference_name: str, reference: List[str]) -> None:
    """Raise unless ``classes`` can be mapped by name onto ``reference``."""
    extra = [c for c in classes if c not in reference]
    repeated = sorted({c for c in classes + reference if classes.count(c) > 1 or reference.count(c) > 1})
    if not extra and not repeated:
        return
    problem = f"classes not in the training set: {extra}" if extra else f"class names used twice: {repeated}"
    raise ClassSetMismatchError(
        f"{role} dataset '{name}' has the classes {classes}, but the model is trained on the classes of "
        f"'{reference_name}' (DATASETS.TRAIN[0]): {reference}; {problem}. Class indices cannot be matched "
        f"by name, so '{name}' would train or be scored against the wrong classes. Give every dataset of "
        "the run the training classes (for LabelMe and VIA, METADATA: {thing_classes: [...]} in its "
        "DATASETS.REGISTER entry fixes them and their order), or leave it out of the run."
    )


def _category_ids(metadata: Any, classes: List[str]) -> List[int]:
    """The category id, in the dataset's files, of each of its contiguous classes."""
    mapping = metadata.get("thing_dataset_id_to_contiguous_id")
    if not mapping:
        return list(range(len(classes)))
    by_index = {int(index): int(dataset_id) for dataset_id, index in mapping.items()}
    return [by_index[index] for index in range(len(classes))]


def _aligned_metadata(name: str, reference_name: str, reference: List[str]) -> Dict[str, Any]:
    """Metadata of the aligned view of ``name``: the reference classes, each mapped from the
    category id it has in ``name`` (fresh ids for those ``name`` lacks)."""
    metadata = MetadataCatalog.get(name)
    classes = list(metadata.thing_classes)
    ids = dict(zip(classes, _category_ids(metadata, classes)))
    fresh = iter(range(max(ids.values(), default=-1) + 1, 1 << 31))
    values = {key: value for key, value in metadata.as_dict().items() if key not in _CLASS_KEYS}
    if len(classes) < len(reference):
        # The file lacks categories for some training classes: the evaluator converts the
        # aligned dataset, which has them all, instead of reading the file.
        values.pop("json_file", None)
    values["thing_classes"] = list(reference)
    values["thing_dataset_id_to_contiguous_id"] = {
        ids[c] if c in ids else next(fresh): index for index, c in enumerate(reference)
    }
    values["thing_colors"] = MetadataCatalog.get(reference_name).get("thing_colors") or default_thing_colors(
        len(reference)
    )
    return values


def _renumbered(dataset_dicts: List[Dict[str, Any]], to_reference: List[int]) -> List[Dict[str, Any]]:
    """Copies of ``dataset_dicts`` whose annotations' ``category_id`` k is ``to_reference[k]``."""
    renumbered = []
    for record in dataset_dicts:
        if "annotations" in record:
            annotations = [{**a, "category_id": to_reference[a["category_id"]]} for a in record["annotations"]]
            record = {**record, "annotations": annotations}
        renumbered.append(record)
    return renumbered


def _register_aligned_view(name: str, reference_name: str, reference: List[str]) -> str:
    """Register (or find registered) the view of ``name`` numbered like ``reference``; its name."""
    view = name + ALIGNED_SUFFIX
    values = _aligned_metadata(name, reference_name, reference)
    if view in DatasetCatalog and MetadataCatalog.get(view).as_dict() == {"name": view, **values}:
        return view
    if view in DatasetCatalog:  # aligned to another training set earlier in this process
        DatasetCatalog.remove(view)
        MetadataCatalog.pop(view, None)
    classes = list(MetadataCatalog.get(name).thing_classes)
    to_reference = [reference.index(c) for c in classes]
    DatasetCatalog.register(view, lambda: _renumbered(DatasetCatalog.get(name), to_reference))
    MetadataCatalog.get(view).set(**values)
    missing = [c for c in reference if c not in classes]
    logger.warning(
        "Dataset '%s' numbers its classes %s unlike the training set '%s' (%s); its classes are mapped to "
        "the training indices by name (%s)%s",
        name,
        classes,
        reference_name,
        reference,
        ", ".join(f"{c}: {i} -> {j}" for i, (c, j) in enumerate(zip(classes, to_reference))),
        f"; it lacks the training classes {missing}, which get no ground truth there and are left out of its AP"
        if missing
        else "",
    )
    return view


def _aligned_name(
    name: str, role: str, reference_name: str, reference: List[str], on_bad_annotation: Optional[str]
) -> str:
    classes = dataset_classes(name, on_bad_annotation)
    if classes is None:
        logger.warning(
            "Dataset '%s' has no thing_classes metadata: its class indices are taken to be those of '%s'",
            name,
            reference_name,
        )
        return name
    if classes == reference:
        return name
    _check_subset(name, role, classes, reference_name, reference)
    return _register_aligned_view(name, reference_name, reference)


def align_to_training_classes(
    train_names: Sequence[str], test_names: Sequence[str], *, on_bad_annotation: Optional[str] = None
) -> Tuple[List[str], List[str]]:
    """The dataset names to load for ``DATASETS.TRAIN`` and ``DATASETS.TEST`` so that class k
    means the first training set's class k in every one of them (see the module docstring).

    Nothing is aligned when there is no training set, when the first one is not registered or
    its files are absent (as may be in an evaluation-only run), or when it has no
    ``thing_classes``.

    Raises:
        ClassSetMismatchError: a dataset has a class the first training set lacks, or class
            names repeat in lists that differ.
    """
    train_names, test_names = list(train_names), list(test_names)
    if not train_names or train_names[0] not in DatasetCatalog:
        if test_names:
            logger.info("No registered training set: the classes of %s are taken to be the model's", test_names)
        return train_names, test_names
    reference_name = train_names[0]
    try:
        reference = dataset_classes(reference_name, on_bad_annotation)
    except FileNotFoundError as error:  # training would stop on this itself; evaluation need not
        logger.warning(
            "Cannot read the training set '%s' to learn its classes (%s): the classes of %s are taken to be "
            "the model's, in their own order",
            reference_name,
            error,
            test_names,
        )
        return train_names, test_names
    if reference is None:
        return train_names, test_names

    def aligned(name: str, role: str) -> str:
        return _aligned_name(name, role, reference_name, reference, on_bad_annotation)

    return (
        [reference_name] + [aligned(name, "DATASETS.TRAIN") for name in train_names[1:]],
        [aligned(name, "DATASETS.TEST") for name in test_names],
    )


def with_aligned_datasets(cfg: DictConfig) -> DictConfig:
    """``cfg`` itself when every dataset of ``DATASETS.TRAIN`` and ``DATASETS.TEST`` already
    numbers its classes like ``DATASETS.TRAIN[0]``; otherwise a copy of ``cfg`` whose
    ``DATASETS.TRAIN`` / ``TEST`` name the aligned views (see :func:`align_to_training_classes`).
    The entries of ``DATASETS.REGISTER`` are registered first.

    Raises:
        ClassSetMismatchError: as :func:`align_to_training_classes`.
    """
    register_datasets_from_config(cfg)
    train, test = align_to_training_classes(
        cfg.DATASETS.TRAIN, cfg.DATASETS.TEST, on_bad_annotation=cfg.DATALOADER.ON_BAD_ANNOTATION
    )
    if train == list(cfg.DATASETS.TRAIN) and test == list(cfg.DATASETS.TEST):
        return cfg
    aligned = copy.deepcopy(cfg)
    aligned.DATASETS.TRAIN = train
    aligned.DATASETS.TEST = test
    return aligned
