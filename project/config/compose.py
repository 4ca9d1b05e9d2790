"""Composing the Hydra config tree (``configs/``, installed as ``project.configs``) onto the typed schema."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Optional, Sequence

import torch
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from .defaults import ProjectConfig

SCHEMA_NAME = "project_schema"
ConfigStore.instance().store(name=SCHEMA_NAME, node=ProjectConfig)


CONFIG_PACKAGE = "project.configs"


def config_dir() -> Path:
    """The Hydra config tree: ``$PROJECT_CONFIG_DIR`` if set, else the one shipped with the
    package (``project.configs``; the repository's ``configs/`` in an editable install)."""
    env = os.environ.get("PROJECT_CONFIG_DIR")
    return Path(env) if env else Path(str(importlib.resources.files(CONFIG_PACKAGE)))


def resolve_device(name: str) -> str:
    """Map ``"auto"`` to ``"cuda"`` where a GPU is available, else ``"cpu"``; other names pass."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def finalize(cfg: DictConfig) -> DictConfig:
    """Resolve interpolations and ``MODEL.DEVICE="auto"``, in place; returns ``cfg``."""
    OmegaConf.resolve(cfg)
    cfg.MODEL.DEVICE = resolve_device(cfg.MODEL.DEVICE)
    return cfg


def get_cfg(overrides: Optional[Sequence[str]] = None, config_name: str = "config") -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with Hydra-style ``overrides`` (``"model=..."``,
    ``"MODEL.ROI_HEADS.NUM_CLASSES=1"``) into a typed, struct-mode config.

    An unknown key or a value of the wrong type raises, naming the key.
    """
    directory = config_dir()
    if not directory.is_dir():
        raise FileNotFoundError(
            f"config directory {directory} does not exist; set PROJECT_CONFIG_DIR to the project's configs/ folder"
        )
    if GlobalHydra.instance().is_initialized():
        cfg = compose(config_name=config_name, overrides=list(overrides or []))
    else:
        with initialize_config_dir(config_dir=str(directory), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides or []))
    return finalize(cfg)


def default_cfg() -> DictConfig:
    """The schema's defaults alone (Detectron2's R50-FPN Mask R-CNN), typed and in struct mode."""
    cfg = OmegaConf.structured(ProjectConfig)
    return finalize(cfg)


def load_cfg(path: str | os.PathLike) -> DictConfig:
    """Read a saved ``config.yaml`` (as written beside training outputs) onto the schema."""
    cfg = OmegaConf.merge(OmegaConf.structured(ProjectConfig), OmegaConf.load(path))
    return finalize(cfg)
