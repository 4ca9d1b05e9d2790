"""``build_model``: the whole model named by ``MODEL.META_ARCHITECTURE``."""

from __future__ import annotations

import logging

import torch
from torch import nn

from ...config import resolve_device
from ..registry import META_ARCH_REGISTRY

logger = logging.getLogger(__name__)


def build_model(cfg) -> nn.Module:
    """Build the registered meta-architecture ``MODEL.META_ARCHITECTURE`` on ``MODEL.DEVICE``.

    Weights are freshly initialised; load trained ones with ``DetectionCheckpointer``.
    """
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    model.to(torch.device(resolve_device(cfg.MODEL.DEVICE)))
    logger.info("Built %s with %d parameters", cfg.MODEL.META_ARCHITECTURE, sum(p.numel() for p in model.parameters()))
    return model


__all__ = ["META_ARCH_REGISTRY", "build_model"]
