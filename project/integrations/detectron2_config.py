"""Converting between Detectron2's ``CfgNode`` and this project's typed config.

The two use the same key names for what they share, so conversion copies keys (the rules are
``project.config.detectron2_yaml``'s). Detectron2 -> project: every key of the schema is
copied; the keys this project does not have are returned, and those set to something other
than Detectron2's default are named in one warning (a ``CfgNode`` from Detectron2's
``get_cfg()`` holds about 70 such keys at their defaults, which mean nothing here). Project
-> Detectron2: every key is written into a ``CfgNode`` holding Detectron2's defaults, the
keys only this project has added first by ``add_project_config``.
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional, Set, Tuple

from detectron2.config import CfgNode
from detectron2.config import get_cfg as d2_get_cfg
from omegaconf import DictConfig, OmegaConf

from ..config import finalize, resolve_device
from ..config.defaults import ProjectConfig
from ..config.detectron2_yaml import (
    LAUNCH_KEYS,
    as_plain,
    detectron2_component_name,
    flatten,
    merge_detectron2_values,
    schema_leaf_keys,
)

logger = logging.getLogger(__name__)

# Sets of ignored keys already named in a warning: converting one CfgNode for each component
# built from it warns once.
_WARNED: Set[Tuple[str, ...]] = set()


def _bridged_keys() -> List[str]:
    """The schema keys a Detectron2 config carries: all but the launch keys."""
    return [key for key in schema_leaf_keys() if key not in LAUNCH_KEYS]


def from_detectron2_cfg(cfg: CfgNode) -> Tuple[DictConfig, List[str]]:
    """This project's config (finalized, typed, struct mode) for Detectron2's ``cfg``, and the
    sorted keys of ``cfg`` this project has no equivalent for and that differ from Detectron2's
    defaults (named in one warning). Component names with the bridge prefix
    (``ProjectGeneralizedRCNN``) become this project's names (``GeneralizedRCNN``)."""
    converted, unknown = merge_detectron2_values(cfg, source="Detectron2 CfgNode")
    defaults = flatten(d2_get_cfg())
    given = flatten(cfg)
    meaningful = [key for key in unknown if key not in defaults or as_plain(given[key]) != as_plain(defaults[key])]
    if meaningful and tuple(meaningful) not in _WARNED:
        _WARNED.add(tuple(meaningful))
        logger.warning(
            "%d Detectron2 config key(s) set away from Detectron2's defaults have no equivalent in this "
            "project and are ignored: %s",
            len(meaningful),
            ", ".join(f"{key}={given[key]!r}" for key in meaningful),
        )
    return finalize(converted), meaningful


def _set(cfg: CfgNode, key: str, value: Any) -> None:
    """Set dotted ``key`` of ``cfg``, creating missing nodes; a tuple where the node held one."""
    *parents, leaf = key.split(".")
    node = cfg
    for name in parents:
        if name not in node:
            setattr(node, name, CfgNode())
        node = node[name]
    if isinstance(node.get(leaf), tuple) and isinstance(value, list):
        value = tuple(value)
    setattr(node, leaf, value)


def add_project_config(cfg: CfgNode) -> CfgNode:
    """Add to Detectron2's ``cfg``, in place, the keys this project has and Detectron2 lacks
    (``MODEL.CHANNELS_LAST``, ``TEST.PRED_MASK_FORMAT``, ``TEST.TILE.*``, ``DATASETS.REGISTER``,
    ``INPUT.LARGE_SCALE_JITTER.*``, ...), at this project's defaults; keys already there are
    kept. The launch keys of ``train_net.py`` (``eval_only``, ``num_gpus``, ...) are not added.
    Returns ``cfg``; a frozen ``cfg`` stays frozen."""
    defaults = OmegaConf.structured(ProjectConfig)
    frozen = cfg.is_frozen()
    cfg.defrost()
    try:
        present = flatten(cfg)
        for key in _bridged_keys():
            if key not in present:
                _set(cfg, key, _plain(defaults, key))
    finally:
        if frozen:
            cfg.freeze()
    return cfg


def _plain(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def to_detectron2_cfg(cfg: DictConfig, base: Optional[CfgNode] = None, project_model: bool = True) -> CfgNode:
    """Detectron2's ``CfgNode`` for this project's ``cfg``: ``base`` (default Detectron2's
    ``get_cfg()``), extended by ``add_project_config``, with every key of ``cfg`` written in.

    With ``project_model`` (default), ``MODEL.META_ARCHITECTURE`` names this project's model as
    registered in Detectron2 (``ProjectGeneralizedRCNN``; ``register_with_detectron2`` is
    called), so Detectron2's ``build_model``, ``DefaultPredictor`` and ``DefaultTrainer`` run
    this project's model; without, the config describes the same network for Detectron2's own
    implementation (component names are the same on both sides)."""
    out = (base if base is not None else d2_get_cfg()).clone()
    out.defrost()
    add_project_config(out)
    for key in _bridged_keys():
        _set(out, key, _plain(cfg, key))
    out.MODEL.DEVICE = resolve_device(out.MODEL.DEVICE)  # Detectron2 has no "auto"
    if project_model:
        from .detectron2_models import register_with_detectron2

        register_with_detectron2()
        out.MODEL.META_ARCHITECTURE = detectron2_component_name(cfg.MODEL.META_ARCHITECTURE)
    return out


__all__ = ["add_project_config", "from_detectron2_cfg", "to_detectron2_cfg"]
