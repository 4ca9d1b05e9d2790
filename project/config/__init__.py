"""Configuration: the typed schema and its composition from the Hydra tree in ``configs/``."""

from .compose import config_dir, default_cfg, finalize, get_cfg, load_cfg, resolve_device
from .configurable import configurable, is_config
from .defaults import ProjectConfig
from .detectron2_yaml import load_detectron2_yaml
from .lazy import instantiate

__all__ = [
    "ProjectConfig",
    "config_dir",
    "configurable",
    "default_cfg",
    "finalize",
    "get_cfg",
    "instantiate",
    "is_config",
    "load_cfg",
    "load_detectron2_yaml",
    "resolve_device",
]
