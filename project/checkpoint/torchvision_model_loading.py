"""Rename torchvision ResNet state dicts (``torchvision.models.resnet*``) to Detectron2 names.

``layer1`` .. ``layer4`` become ``res2`` .. ``res5``; a block's ``convK`` / ``bnK`` become
``convK`` / ``convK.norm``; ``downsample.0`` / ``downsample.1`` become ``shortcut`` /
``shortcut.norm``. Converted names are relative (no ``backbone.bottom_up.`` prefix) and are
attached to the model's names by suffix matching afterwards.

Loading traps for these weights (set the model config accordingly, nothing here can check it):
torchvision ResNets expect **RGB** input normalised with ``MODEL.PIXEL_MEAN = [123.675, 116.28,
103.53]`` and ``MODEL.PIXEL_STD = [58.395, 57.12, 57.375]`` (``INPUT.FORMAT = "RGB"``) and put
the stride in the 3x3 conv (``MODEL.RESNETS.STRIDE_IN_1X1 = False``). Their BatchNorm running
statistics are real and are loaded.
"""

from __future__ import annotations

import logging
import re
from typing import Callable, Dict, Iterable, Mapping, Sequence, Tuple, Union

import torch

logger = logging.getLogger(__name__)

# Rewrites applied in order to every name; later rules see the result of earlier ones.
_RENAME_STEPS: Sequence[Tuple[str, Union[str, Callable[[re.Match], str]]]] = (
    (r"^conv1\.", "stem.conv1."),
    (r"^bn1\.", "stem.conv1.norm."),
    (r"^layer([1-4])\.", lambda match: f"res{int(match.group(1)) + 1}."),
    (r"^(res\d\.\d+)\.bn(\d)\.", r"\1.conv\2.norm."),
    (r"^(res\d\.\d+)\.downsample\.0\.", r"\1.shortcut."),
    (r"^(res\d\.\d+)\.downsample\.1\.", r"\1.shortcut.norm."),
)
_BLOCK_KEY = re.compile(r"layer[1-4]\.\d+\.(conv|bn)\d\.weight")
_CLASSIFIER_KEY = re.compile(r"fc\.(weight|bias)")


def is_torchvision_resnet_state_dict(keys: Iterable[str]) -> bool:
    """Whether ``keys`` look like a torchvision ResNet's state dict (``layer1.0.conv1.weight``)."""
    keys = set(keys)
    return "conv1.weight" in keys and any(_BLOCK_KEY.fullmatch(key) for key in keys)


def _convert_name(name: str) -> str:
    for pattern, replacement in _RENAME_STEPS:
        name = re.sub(pattern, replacement, name)
    return name


def convert_torchvision_resnet_names(
    state_dict: Mapping[str, torch.Tensor],
) -> Dict[str, torch.Tensor]:
    """Rename a torchvision ResNet state dict to Detectron2 names.

    The ImageNet classifier ``fc.*`` and BatchNorm ``num_batches_tracked`` counters are dropped
    and logged; names outside the ResNet pattern are kept unchanged (they are reported as
    unused when loading).
    """
    classifier = sorted(key for key in state_dict if _CLASSIFIER_KEY.fullmatch(key))
    counters = [key for key in state_dict if key.endswith(".num_batches_tracked")]
    if classifier:
        logger.info("Skipped the torchvision ImageNet classifier: %s", ", ".join(classifier))
    if counters:
        logger.info("Dropped %d BatchNorm num_batches_tracked counters", len(counters))
    dropped = set(classifier) | set(counters)
    converted = {_convert_name(key): value for key, value in state_dict.items() if key not in dropped}
    logger.info("Renamed %d torchvision ResNet weights to Detectron2 names", len(converted))
    return converted
