"""``build_backbone``: the backbone named by ``cfg.MODEL.BACKBONE.NAME``."""

from __future__ import annotations

from typing import Optional

from project.layers import ShapeSpec

from ..registry import BACKBONE_REGISTRY
from .backbone import Backbone


def build_backbone(cfg, input_shape: Optional[ShapeSpec] = None) -> Backbone:
    """Call the ``BACKBONE_REGISTRY`` builder named ``cfg.MODEL.BACKBONE.NAME`` with ``cfg`` and
    ``input_shape`` (default: as many channels as ``cfg.MODEL.PIXEL_MEAN`` has values)."""
    if input_shape is None:
        input_shape = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
    name = cfg.MODEL.BACKBONE.NAME
    if name not in BACKBONE_REGISTRY:
        registered = sorted(registered_name for registered_name, _ in BACKBONE_REGISTRY)
        raise KeyError(f"MODEL.BACKBONE.NAME={name!r} is not in the BACKBONE registry; registered: {registered}")
    backbone = BACKBONE_REGISTRY.get(name)(cfg, input_shape)
    if not isinstance(backbone, Backbone):
        raise TypeError(f"backbone builder {name!r} returned a {type(backbone).__name__}, not a Backbone")
    return backbone
