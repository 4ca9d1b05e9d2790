"""The model: registries, backbones, proposal generators, ROI heads and meta-architectures.

Importing this package registers every built-in component by name.
"""

from .backbone import Backbone, build_backbone
from .meta_arch import GeneralizedRCNN, build_model
from .proposal_generator import build_proposal_generator
from .registry import (
    ANCHOR_GENERATOR_REGISTRY,
    BACKBONE_REGISTRY,
    META_ARCH_REGISTRY,
    PROPOSAL_GENERATOR_REGISTRY,
    ROI_BOX_HEAD_REGISTRY,
    ROI_HEADS_REGISTRY,
    ROI_MASK_HEAD_REGISTRY,
    RPN_HEAD_REGISTRY,
)
from .roi_heads import build_roi_heads

__all__ = [
    "ANCHOR_GENERATOR_REGISTRY",
    "BACKBONE_REGISTRY",
    "META_ARCH_REGISTRY",
    "PROPOSAL_GENERATOR_REGISTRY",
    "ROI_BOX_HEAD_REGISTRY",
    "ROI_HEADS_REGISTRY",
    "ROI_MASK_HEAD_REGISTRY",
    "RPN_HEAD_REGISTRY",
    "Backbone",
    "GeneralizedRCNN",
    "build_backbone",
    "build_model",
    "build_proposal_generator",
    "build_roi_heads",
]
