"""Detectron2 YAML configs read into this project's typed config, without Detectron2.

A Detectron2 config file holds only what differs from Detectron2's defaults, and may inherit
from other files through ``_BASE_`` (a path relative to the file, or a list of them). This
module reads such a chain with PyYAML, resolves it the way Detectron2 does (a base first, the
file over it; mappings merge key by key, any other value replaces), decodes the string values
Detectron2 decodes (``"(640, 672)"`` is the tuple ``(640, 672)``), and lays the result over
Detectron2's defaults expressed in this project's schema::

    from project.config.detectron2_yaml import load_detectron2_yaml

    cfg, ignored = load_detectron2_yaml("configs/COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml")
    model = project.modeling.build_model(cfg)

Conversion rules:

- a key means the same thing in both configs (this project uses Detectron2's key names), so
  every key of the schema is copied as is; tuples become lists;
- keys the schema lacks (``MODEL.KEYPOINT_ON``, ``TEST.AUG.*``, ...) have no equivalent: they are
  returned, sorted, and named in one warning;
- ``VERSION`` (the Detectron2 config format) is checked, not copied: only version 2 is read;
- a key the file does not set takes Detectron2's default where that differs from this
  project's (``DETECTRON2_DEFAULTS_THAT_DIFFER``, e.g. ``MODEL.MASK_ON`` False), and this
  project's default for keys Detectron2 does not have (``MODEL.CHANNELS_LAST``,
  ``TEST.PRED_MASK_FORMAT``, ...); ``MODEL.DEVICE`` stays "auto" unless the file sets it;
- component names with this project's Detectron2 prefix (``ProjectGeneralizedRCNN``, see
  ``detectron2_component_name``) name this project's component itself (``GeneralizedRCNN``).

The same rules convert a Detectron2 ``CfgNode`` (``project.integrations.detectron2``).
"""

from __future__ import annotations

import ast
import functools
import logging
import os
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .compose import finalize
from .defaults import ProjectConfig

logger = logging.getLogger(__name__)

BASE_KEY = "_BASE_"
VERSION_KEY = "VERSION"
SUPPORTED_VERSION = 2

# Keys about how train_net.py runs (lower case in the schema): never part of a Detectron2
# config, which takes them from the command line.
LAUNCH_KEYS = ("eval_only", "resume", "num_gpus", "num_machines", "machine_rank", "dist_url")

# Detectron2's defaults (detectron2/config/defaults.py) for the keys both configs have, where
# they differ from ProjectConfig's: this project defaults to the R50-FPN Mask R-CNN, Detectron2
# to a C4 Faster R-CNN. MODEL.DEVICE is left out on purpose (this project's "auto" picks the
# GPU when there is one; Detectron2's "cuda" fails without).
DETECTRON2_DEFAULTS_THAT_DIFFER: Dict[str, Any] = {
    "MODEL.MASK_ON": False,
    "MODEL.BACKBONE.NAME": "build_resnet_backbone",
    "MODEL.RESNETS.OUT_FEATURES": ["res4"],
    "MODEL.FPN.IN_FEATURES": [],
    "MODEL.ANCHOR_GENERATOR.SIZES": [[32, 64, 128, 256, 512]],
    "MODEL.RPN.IN_FEATURES": ["res4"],
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": 12000,
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 6000,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": 2000,
    "MODEL.ROI_HEADS.NAME": "Res5ROIHeads",
    "MODEL.ROI_HEADS.IN_FEATURES": ["res4"],
    "MODEL.ROI_BOX_HEAD.NAME": "",
    "MODEL.ROI_BOX_HEAD.NUM_FC": 0,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.ROI_MASK_HEAD.NUM_CONV": 0,
    "SOLVER.BASE_LR": 0.001,
    "SOLVER.MAX_ITER": 40000,
    "SOLVER.STEPS": [30000],
    "DATALOADER.NUM_WORKERS": 4,
}

# Keys whose value names a registered component. In Detectron2's registries this project's
# components carry a prefix (see detectron2_component_name); in this project's, their own name.
COMPONENT_NAME_KEYS = (
    "MODEL.META_ARCHITECTURE",
    "MODEL.BACKBONE.NAME",
    "MODEL.PROPOSAL_GENERATOR.NAME",
    "MODEL.ROI_HEADS.NAME",
)
CLASS_PREFIX = "Project"
FUNCTION_PREFIX = "project_"


def detectron2_component_name(name: str) -> str:
    """The name this project's component ``name`` is registered under in Detectron2's
    registries: classes get ``"Project"`` in front (``GeneralizedRCNN`` ->
    ``ProjectGeneralizedRCNN``), builder functions ``"project_"`` (``build_resnet_fpn_backbone``
    -> ``project_build_resnet_fpn_backbone``). Detectron2 uses neither prefix, so no name clashes."""
    return (CLASS_PREFIX if name[:1].isupper() else FUNCTION_PREFIX) + name


def project_component_name(name: str) -> str:
    """The inverse of ``detectron2_component_name``; other names are returned unchanged."""
    for prefix in (CLASS_PREFIX, FUNCTION_PREFIX):
        rest = name[len(prefix) :]
        if name.startswith(prefix) and rest and detectron2_component_name(rest) == name:
            return rest
    return name


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"A": {"B": 1}}`` -> ``{"A.B": 1}``: every value that is not a mapping, by dotted key
    (an empty mapping sets nothing)."""
    flat: Dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


@functools.lru_cache(maxsize=1)
def schema_leaf_keys() -> Tuple[str, ...]:
    """Every dotted key of ``ProjectConfig`` that holds a value (a list, such as
    ``DATASETS.REGISTER``, is one value), in schema order."""

    def walk(node: DictConfig, prefix: str) -> Iterable[str]:
        for key in node.keys():
            child = node._get_node(key)
            if isinstance(child, DictConfig) and is_dataclass(OmegaConf.get_type(child)):
                yield from walk(child, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    return tuple(walk(OmegaConf.structured(ProjectConfig), ""))


def decode_value(value: Any) -> Any:
    """A string that is a Python literal becomes that literal (``"(640, 672)"`` -> a tuple,
    ``"1e-3"`` -> 0.001), as Detectron2 reads its config values; anything else is unchanged."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value


def as_plain(value: Any) -> Any:
    """Tuples (at any depth) become lists, the only sequence type the schema holds."""
    if isinstance(value, (list, tuple)):
        return [as_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: as_plain(v) for k, v in value.items()}
    return value


def _merge_into(base: Dict[str, Any], over: Mapping[str, Any], source: Path) -> None:
    """Lay ``over`` onto ``base`` in place: mappings merge key by key, other values replace."""
    for key, value in over.items():
        if isinstance(value, Mapping) and key in base:
            if not isinstance(base[key], dict):
                raise ValueError(f"{source}: key {key!r} is a mapping here but a value in its _BASE_ config")
            _merge_into(base[key], value, source)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value


def _base_paths(raw: Any, path: Path) -> List[Path]:
    names = raw if isinstance(raw, list) else [raw]
    paths = []
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"{path}: {BASE_KEY} must be a file name or a list of them, got {name!r}")
        if name.startswith(("http://", "https://")):
            raise ValueError(f"{path}: {BASE_KEY} {name!r} is a URL; download it beside the file and name it by path")
        base = Path(os.path.expanduser(name))
        paths.append(base if base.is_absolute() else path.parent / base)
    return paths


def _read_chain(path: Path, seen: Tuple[Path, ...]) -> Dict[str, Any]:
    resolved = path.resolve()
    if resolved in seen:
        chain = " -> ".join(str(p) for p in (*seen, resolved))
        raise ValueError(f"{BASE_KEY} cycle: {chain}")
    if not path.is_file():
        where = f" (a {BASE_KEY} of {seen[-1]})" if seen else ""
        raise FileNotFoundError(f"Detectron2 config {path}{where} does not exist")
    with open(path, encoding="utf-8") as f:
        loaded = yaml.safe_load(f) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a Detectron2 config is a mapping of keys, got {type(loaded).__name__}")
    merged: Dict[str, Any] = {}
    if BASE_KEY in loaded:
        for base in _base_paths(loaded.pop(BASE_KEY), path):
            _merge_into(merged, _read_chain(base, (*seen, resolved)), base)
    _merge_into(merged, loaded, path)
    return merged


def read_detectron2_yaml(path: str | os.PathLike) -> Dict[str, Any]:
    """The nested dict a Detectron2 config file and its ``_BASE_`` chain say, merged (bases
    first, in order, the file last) with ``_BASE_`` removed and values decoded (``decode_value``).
    Only what the files set is there: Detectron2's defaults are not."""
    merged = _read_chain(Path(path), ())

    def decode(node: Dict[str, Any]) -> Dict[str, Any]:
        return {k: decode(v) if isinstance(v, dict) else decode_value(v) for k, v in node.items()}

    return decode(merged)


def detectron2_defaults_base() -> DictConfig:
    """This project's schema holding Detectron2's defaults: ``ProjectConfig`` with
    ``DETECTRON2_DEFAULTS_THAT_DIFFER`` laid over it (typed, struct mode, not finalized)."""
    cfg = OmegaConf.structured(ProjectConfig)
    for key, value in DETECTRON2_DEFAULTS_THAT_DIFFER.items():
        OmegaConf.update(cfg, key, as_plain(value), merge=False)
    return cfg


def merge_detectron2_values(
    values: Mapping[str, Any], base: Optional[DictConfig] = None, source: str = "Detectron2 config"
) -> Tuple[DictConfig, List[str]]:
    """Lay Detectron2 config ``values`` (nested, as read from YAML or a ``CfgNode``) onto
    ``base`` (default: ``detectron2_defaults_base()``), by the rules in the module docstring.

    Returns the config (a new one; typed, struct mode, not finalized) and the sorted dotted
    keys with no equivalent here. A value this project's schema cannot hold (a string where
    a number belongs, say) raises ``ValueError`` naming the key and ``source``."""
    cfg = (base if base is not None else detectron2_defaults_base()).copy()
    known = set(schema_leaf_keys())
    unknown = []
    for key, value in flatten(values).items():
        if key == VERSION_KEY:
            if value != SUPPORTED_VERSION:
                raise ValueError(
                    f"{source}: VERSION {value!r} is an old Detectron2 config format; only version "
                    f"{SUPPORTED_VERSION} is read. Upgrade it with Detectron2 "
                    "(detectron2.config.compat.upgrade_config) and save it again"
                )
            continue
        if key not in known:
            unknown.append(key)
            continue
        value = as_plain(value)
        if key in COMPONENT_NAME_KEYS and isinstance(value, str):
            value = project_component_name(value)
        try:
            OmegaConf.update(cfg, key, value, merge=True)  # merging types list items (DATASETS.REGISTER)
        except OmegaConfBaseException as e:
            raise ValueError(f"{source}: {key}={value!r} does not fit this project's config: {e}") from e
    return cfg, sorted(set(unknown))


def warn_unknown_keys(unknown: List[str], source: str) -> None:
    """Log, in one warning, the keys of ``source`` this project ignores."""
    if unknown:
        logger.warning(
            "%d key(s) of %s have no equivalent in this project's config and are ignored: %s",
            len(unknown),
            source,
            ", ".join(unknown),
        )


def load_detectron2_yaml(path: str | os.PathLike) -> Tuple[DictConfig, List[str]]:
    """This project's config for the Detectron2 config file ``path`` (its ``_BASE_`` chain
    resolved; keys it leaves out at Detectron2's defaults) and the sorted keys it sets that
    have no equivalent here (also logged as one warning). The config is finalized
    (``MODEL.DEVICE`` "auto" resolved), typed and in struct mode, ready for ``build_model``."""
    cfg, unknown = merge_detectron2_values(read_detectron2_yaml(path), source=str(path))
    warn_unknown_keys(unknown, str(path))
    return finalize(cfg), unknown


__all__ = [
    "DETECTRON2_DEFAULTS_THAT_DIFFER",
    "LAUNCH_KEYS",
    "decode_value",
    "detectron2_component_name",
    "detectron2_defaults_base",
    "load_detectron2_yaml",
    "merge_detectron2_values",
    "project_component_name",
    "read_detectron2_yaml",
    "schema_leaf_keys",
    "warn_unknown_keys",
]
