"""Registering datasets named in the config (``cfg.DATASETS.REGISTER``), so that one Hydra
entry is enough to train on your own data::

    DATASETS:
      REGISTER:
        - NAME: cells_train
          FORMAT: mask_folder
          ARGS: {root: /data/cells/train}
          METADATA: {thing_classes: [nucleus]}
      TRAIN: [cells_train]

An entry's ``SPLIT`` keeps the "train" or "val" part of a folder (by a hash of each file name).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict

from omegaconf import DictConfig, OmegaConf

from ..catalog import DatasetCatalog
from .coco import register_coco_instances
from .instance_id_png import register_instance_id_png
from .labelme import register_labelme_instances
from .mask_folder import register_mask_folder_instances
from .split import select_split
from .via import register_via_instances

logger = logging.getLogger(__name__)

DATASET_FORMATS: Dict[str, Callable[..., None]] = {
    "coco": register_coco_instances,
    "mask_folder": register_mask_folder_instances,
    "instance_id_png": register_instance_id_png,
    "labelme": register_labelme_instances,
    "via": register_via_instances,
}


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else dict(value)


def register_datasets_from_config(cfg: DictConfig) -> None:
    """Register every ``cfg.DATASETS.REGISTER`` entry not registered yet: ``FORMAT`` picks the
    register function, which gets ``NAME``, ``METADATA`` and the keyword arguments ``ARGS``."""
    for index, entry in enumerate(cfg.DATASETS.get("REGISTER", None) or []):
        name = entry.NAME
        if name in DatasetCatalog:
            logger.debug("dataset '%s' is registered already", name)
            continue
        if entry.FORMAT not in DATASET_FORMATS:
            raise ValueError(
                f"DATASETS.REGISTER[{index}] ('{name}'): FORMAT must be one of {sorted(DATASET_FORMATS)}, "
                f"got {entry.FORMAT!r}"
            )
        register = DATASET_FORMATS[entry.FORMAT]
        try:
            register(name, _plain(entry.METADATA), **_plain(entry.ARGS))
        except TypeError as e:
            raise TypeError(
                f"DATASETS.REGISTER[{index}] ('{name}'): ARGS {sorted(entry.ARGS)} do not fit {register.__name__}: {e}"
            ) from None
        split = entry.get("SPLIT", None)
        if split is not None and split.PART != "all":
            _keep_split(name, split.PART, float(split.VAL_FRACTION))


def _keep_split(name: str, part: str, val_fraction: float) -> None:
    """Replace the registered loader of ``name`` by one returning only ``part`` of its dicts."""
    select_split([], part, val_fraction)  # check the settings now, not when the data is loaded
    load_all = DatasetCatalog[name]
    DatasetCatalog.remove(name)

    def load_part() -> list:
        dicts = load_all()
        kept = select_split(dicts, part, val_fraction)
        logger.info("dataset '%s': %d of %d images in its '%s' part", name, len(kept), len(dicts), part)
        return kept

    DatasetCatalog.register(name, load_part)
