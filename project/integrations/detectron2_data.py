"""This project's datasets and mapper for Detectron2's data loaders and evaluators.

``register_datasets_with_detectron2`` registers datasets of this project's ``DatasetCatalog``
(the built-in demo sets and anything registered with this project's ``register_*``
functions) in Detectron2's ``DatasetCatalog`` and ``MetadataCatalog``. Registration is lazy,
as on both sides: Detectron2 gets a function that calls this project's loader when the dataset
is first used. The metadata (``thing_classes``, ``evaluator_type``, ``json_file``,
``image_root``, ...) is copied at registration, and what loading adds
(``thing_dataset_id_to_contiguous_id``) after each load, so Detectron2's ``COCOEvaluator``
finds what it needs. The dataset dicts are this project's as they are (Detectron2's format;
``bbox_mode`` is this project's ``BoxMode``, an ``IntEnum`` equal to Detectron2's).

``ProjectDatasetMapper(cfg, is_train)`` is this project's mapper (``INPUT.MAPPER_NAME``,
``DatasetMapper`` by default) built from a Detectron2 ``CfgNode``, for
``build_detection_train_loader(cfg, mapper=ProjectDatasetMapper(cfg, True))``. Its output
dicts carry Detectron2 ``Instances`` (``gt_boxes`` as ``Boxes``, ``gt_masks`` as
``PolygonMasks`` or ``BitMasks``), so Detectron2's own models train on them as well; this
project's model, registered in Detectron2, takes either kind. ``detectron2_instances=False``
keeps this project's ``Instances`` (its ``CroppedBitMasks`` stay cropped: less memory on large
images with many objects), for this project's model only.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Optional, Set

from detectron2.data import DatasetCatalog as D2DatasetCatalog
from detectron2.data import MetadataCatalog as D2MetadataCatalog
from detectron2.data import build_detection_test_loader, build_detection_train_loader

from ..data import DatasetCatalog, MetadataCatalog, build_mapper
from .detectron2_models import project_config
from .detectron2_structures import to_detectron2_instances

logger = logging.getLogger(__name__)

# Names this bridge registered in Detectron2's catalogs.
_BRIDGED: Set[str] = set()


def _copy_metadata(name: str) -> None:
    """Copy this project's metadata of ``name`` into Detectron2's: entries Detectron2 lacks are
    added; an entry Detectron2 holds with another value is kept (its metadata cannot change)
    and logged."""
    target = D2MetadataCatalog.get(name)
    for key, value in MetadataCatalog.get(name).as_dict().items():
        if key == "name":
            continue
        try:
            current = getattr(target, key)
        except AttributeError:
            setattr(target, key, value)
            continue
        if current != value:
            logger.warning(
                "Detectron2's metadata of dataset '%s' has %s=%r; this project's value %r is not copied",
                name,
                key,
                current,
                value,
            )


def _load(name: str) -> List[Dict[str, Any]]:
    """This project's dataset dicts of ``name``; the metadata loading added is copied over."""
    dataset_dicts = DatasetCatalog.get(name)
    _copy_metadata(name)
    return dataset_dicts


def bridged_datasets() -> List[str]:
    """The dataset names this bridge has registered in Detectron2, sorted."""
    return sorted(_BRIDGED)


def register_datasets_with_detectron2(names: Optional[Iterable[str]] = None, replace: bool = False) -> List[str]:
    """Register datasets of this project's ``DatasetCatalog`` in Detectron2's catalogs (see
    the module docstring): ``names``, or all of them. Idempotent; returns the names registered
    (or registered before) by this bridge.

    A name Detectron2 registers itself (its built-in ``coco_2017_train``, ``coco_2017_val``, ...)
    keeps Detectron2's dataset unless ``replace``; the names so skipped are logged. A name that
    this project does not have raises ``KeyError`` listing those it has."""
    available = DatasetCatalog.list()
    wanted = list(available) if names is None else list(names)
    missing = [name for name in wanted if name not in DatasetCatalog]
    if missing:
        raise KeyError(
            f"this project has no dataset {', '.join(map(repr, missing))}; registered here: {', '.join(available)}. "
            "Register it with one of project.data's register_* functions first"
        )
    done, kept = [], []
    for name in wanted:
        if name not in _BRIDGED:
            if name in D2DatasetCatalog:
                if not replace:
                    kept.append(name)
                    continue
                D2DatasetCatalog.remove(name)
                D2MetadataCatalog.remove(name)
            D2DatasetCatalog.register(name, lambda name=name: _load(name))
            _copy_metadata(name)
            _BRIDGED.add(name)
        done.append(name)
    if kept:
        log = logger.info if names is None else logger.warning
        log(
            "Kept Detectron2's own registration of %s (pass replace=True to use this project's)",
            ", ".join(kept),
        )
    return done


class ProjectDatasetMapper:
    """This project's dataset mapper for Detectron2's loaders (see the module docstring).

    ``cfg`` is a Detectron2 ``CfgNode`` (converted with ``from_detectron2_cfg``) or this
    project's config; the mapper is ``build_mapper(cfg, is_train)``, available as ``.mapper``.
    Returns None for an image its bad-input policy skips (Detectron2's loaders then take
    another)."""

    def __init__(self, cfg: Any, is_train: bool = True, *, detectron2_instances: bool = True):
        self.mapper = build_mapper(project_config(cfg), is_train)
        self.detectron2_instances = detectron2_instances

    def __call__(self, dataset_dict: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        mapped = self.mapper(dataset_dict)
        if mapped is not None and self.detectron2_instances and "instances" in mapped:
            mapped["instances"] = to_detectron2_instances(mapped["instances"])
        return mapped

    def __repr__(self) -> str:
        return f"ProjectDatasetMapper({self.mapper!r})"


def project_train_loader(cfg: Any):
    """Detectron2's ``build_detection_train_loader(cfg)`` with this project's mapper; for a
    ``DefaultTrainer`` subclass's ``build_train_loader``."""
    return build_detection_train_loader(cfg, mapper=ProjectDatasetMapper(cfg, True))


def project_test_loader(cfg: Any, dataset_name: str):
    """Detectron2's ``build_detection_test_loader(cfg, dataset_name)`` with this project's mapper."""
    return build_detection_test_loader(cfg, dataset_name, mapper=ProjectDatasetMapper(cfg, False))


__all__ = [
    "ProjectDatasetMapper",
    "bridged_datasets",
    "project_test_loader",
    "project_train_loader",
    "register_datasets_with_detectron2",
]
