"""Building the proposal generator named in the config."""

from __future__ import annotations

from typing import Dict

from torch import nn

from ...layers import ShapeSpec
from ..registry import PROPOSAL_GENERATOR_REGISTRY


def build_proposal_generator(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """The proposal generator named by ``cfg.MODEL.PROPOSAL_GENERATOR.NAME``, on the backbone
    outputs described by ``input_shape`` (feature name -> ShapeSpec)."""
    return PROPOSAL_GENERATOR_REGISTRY.get(cfg.MODEL.PROPOSAL_GENERATOR.NAME)(cfg, input_shape)
