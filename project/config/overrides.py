"""Checking command-line overrides against the schema before Hydra composes them, so that an
unknown key is reported with the valid keys at its level (Hydra only says it is unknown)."""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from .compose import config_dir
from .defaults import ProjectConfig


class UnknownConfigKeyError(KeyError):
    """An override names a key the schema does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def config_groups(directory: Optional[Path] = None) -> set:
    """Names of the config groups (sub-folders of the config tree, e.g. ``model``)."""
    directory = directory or config_dir()
    return {path.name for path in directory.iterdir() if path.is_dir()} if directory.is_dir() else set()


def _describe_choices(node: DictConfig, missing: str, path: str) -> str:
    keys = sorted(str(k) for k in node.keys())
    close = difflib.get_close_matches(missing, keys, n=3)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    where = f"under {path}" if path else "at the top level"
    return f"Valid keys {where}: {', '.join(keys)}.{hint}"


def check_key(key: str) -> None:
    """Raise :class:`UnknownConfigKeyError` if the dotted ``key`` is not in the schema.

    Keys inside free-form mappings and lists (e.g. ``DATASETS.REGISTER.0.ARGS.json_file``)
    are not checked beyond the mapping or list itself."""
    node = OmegaConf.structured(ProjectConfig)
    parts = key.split(".")
    for depth, part in enumerate(parts):
        path = ".".join(parts[:depth])
        if not isinstance(node, DictConfig):
            if OmegaConf.is_list(node):
                return
            raise UnknownConfigKeyError(f"unknown config key '{key}': {path} is a value, it has no key '{part}'")
        if not dataclasses.is_dataclass(OmegaConf.get_type(node)):
            return
        if part not in node:
            raise UnknownConfigKeyError(f"unknown config key '{key}'. {_describe_choices(node, part, path)}")
        node = node._get_node(part)


def check_overrides(overrides: Sequence[str]) -> None:
    """Check the keys of Hydra ``overrides`` (``KEY=VALUE``, ``~KEY``); config-group choices
    (``model=...``, ``+experiment=...``), ``hydra.*`` settings and ``++`` force-adds are left
    to Hydra. Raises :class:`UnknownConfigKeyError` naming the key and the valid keys."""
    groups = config_groups()
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key.split(".")[0] in groups or key.split(".")[0] == "hydra" or override.is_force_add():
            continue
        check_key(key)
