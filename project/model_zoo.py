"""Named models, as Detectron2's ``model_zoo``: composed configs and their COCO checkpoints.

``get_config("mask_rcnn_R_101_FPN_3x")`` composes ``model=mask_rcnn_R_101_FPN``,
``schedule=3x`` and ``dataset=coco_2017`` from ``configs/``. Detectron2's names
(``"COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml"``) are accepted too.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

from omegaconf import DictConfig
from torch import nn

from .config import get_cfg

MODEL_ZOO_URL_PREFIX = "https://dl.fbaipublicfiles.com/detectron2/"

# Trained COCO checkpoints published by Detectron2, by model name.
_CHECKPOINTS = {
    "mask_rcnn_R_50_FPN_1x": "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x/137260431/model_final_a54504.pkl",
    "mask_rcnn_R_50_FPN_3x": "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x/137849600/model_final_f10217.pkl",
    "mask_rcnn_R_101_FPN_3x": "COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x/138205316/model_final_a3ec72.pkl",
}

_NAME = re.compile(r"^(?:COCO-InstanceSegmentation/)?(mask_rcnn_R_(?:50|101)_FPN)_(1x|3x)(?:\.yaml)?$")


def _parse(name: str) -> tuple[str, str]:
    match = _NAME.match(name)
    if not match:
        raise ValueError(
            f"unknown model {name!r}; expected one of {sorted(_CHECKPOINTS)} "
            "(optionally as 'COCO-InstanceSegmentation/<name>.yaml')"
        )
    return match.group(1), match.group(2)


def get_checkpoint_url(name: str) -> str:
    """The URL of the COCO-trained checkpoint Detectron2 publishes for ``name``."""
    model, schedule = _parse(name)
    key = f"{model}_{schedule}"
    if key not in _CHECKPOINTS:
        raise ValueError(f"Detectron2 publishes no trained checkpoint for {key}; available: {sorted(_CHECKPOINTS)}")
    return MODEL_ZOO_URL_PREFIX + _CHECKPOINTS[key]


def get_config(name: str, trained: bool = False, overrides: Optional[Sequence[str]] = None) -> DictConfig:
    """The composed config of model ``name`` (COCO, its schedule), device resolved to CUDA
    where available and CPU otherwise. With ``trained``, ``MODEL.WEIGHTS`` is the COCO
    checkpoint's URL; otherwise the ImageNet-pretrained backbone's."""
    model, schedule = _parse(name)
    extra = list(overrides or [])
    if trained:
        extra.append(f"MODEL.WEIGHTS={get_checkpoint_url(name)}")
    return get_cfg([f"model={model}", f"schedule={schedule}", "dataset=coco_2017", *extra])


def get(name: str, trained: bool = False, device: Optional[str] = None) -> nn.Module:
    """Build model ``name`` and, with ``trained``, load its COCO checkpoint (needs network or a
    cached copy). Returns it in eval mode."""
    from .checkpoint import DetectionCheckpointer
    from .modeling import build_model

    cfg = get_config(name, trained=trained)
    if device is not None:
        cfg.MODEL.DEVICE = device
    model = build_model(cfg)
    if trained:
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    return model.eval()
